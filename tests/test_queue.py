"""Queued experiments: `dvc exp run --queue` twice, `dvc queue start -j 2`, both appear in `dvc exp show`.

A copy of the real pipeline cut to generate → prepare → experiment on tiny CREMA-D data.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_queue_repo

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("dvc", path=str(Path(sys.executable).parent)) is None,
                                                   reason="dvc is not installed in this environment")]
METHODS = ("concat", "audio_only")


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _wait_for_queue(path: Path, env: dict, deadline: float) -> str:
    """Poll `dvc queue status` until no experiment is queued or running."""
    while time.time() < deadline:
        status = _run(["dvc", "queue", "status"], path, env)
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(2)
    raise AssertionError(f"queued experiments still running after the deadline:\n{status}")


def test_queue_runs_two_experiments_in_parallel(tmp_path):
    keep = ("dataset-sources", "stage-params", "generate", "prepare", "run-params", "method-sources", "experiment")
    env = tiny_queue_repo(tmp_path, keep, edit=lambda p: p.update(dataset="cremad", method="concat"))
    for method in METHODS:
        _run(["dvc", "exp", "run", "--queue", "-S", f"method={method}"], tmp_path, env)
    try:
        _run(["dvc", "queue", "start", "-j", "2"], tmp_path, env)
        status = _wait_for_queue(tmp_path, env, time.time() + 240)
    finally:
        subprocess.run(["dvc", "queue", "stop"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert "Failed" not in status, status
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], tmp_path, env))
    ran = {}
    for exp in _experiments(shown):
        data = exp.get("data") or {}
        method = ((data.get("params") or {}).get("params.yaml", {}).get("data") or {}).get("method")
        ran[method] = (data.get("metrics") or {}).get("experiment/metrics.json", {}).get("data", {}).get("acc")
    for method in METHODS:
        assert ran.get(method) is not None, f"no experiment with method={method} and metrics in dvc exp show: {ran}"


def _experiments(rows: list) -> list[dict]:
    """The experiment revisions (not the baseline commit) of `dvc exp show --json`."""
    return [rev for row in rows for exp in (row.get("experiments") or []) for rev in (exp.get("revs") or [])]


def test_datasets_on_the_queue_then_collected(tmp_path):
    """`python -m mmbalance.queue run --wait`: a dataset's training pipeline as a queued
    experiment, then collected (lock, results, models from the shared cache): `dvc status` finds
    its stages up to date and nothing of its re-runs. (Experiments side by side: the test above.)"""
    keep = ("dataset-sources", "stage-params", "generate", "prepare", "run-params", "method-sources")
    env = tiny_queue_repo(tmp_path, keep, ("pipelines/cremad/dvc.yaml",),
                          edit=lambda p: p.update(benchmark={"cremad": ["concat", "audio_only"]}))
    try:
        out = _run([sys.executable, "-m", "mmbalance.queue", "run", "-j", "1", "--wait"], tmp_path, env)
    finally:
        subprocess.run(["dvc", "queue", "stop"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert "collected 2 training stages of 1 datasets: cremad" in out, out
    for run in ("concat", "audio_only"):
        assert json.loads((tmp_path / "results" / "cremad" / run / "results.json").read_text())["run"] == run
        assert (tmp_path / "results" / "cremad" / run / "predictions" / "seed0.npz").exists()
        assert (tmp_path / "data" / "models" / "cremad" / run / "seed0.pt").exists()  # from the DVC cache
    status = _run(["dvc", "status", "pipelines/cremad/dvc.yaml"], tmp_path, env)
    assert "up to date" in status, status
    assert "Running stage" not in _run(["dvc", "repro"], tmp_path, env)
