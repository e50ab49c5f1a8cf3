"""A shrunken copy of the real pipeline run through DVC: repro, no-op repro, `dvc exp run -S`."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _shrink(dst: Path) -> None:
    """The real pipeline cut to CREMA-D: tiny data, five runs, one seed, two epochs (the other
    datasets' training pipelines are not copied; their adapters and training are tested on their
    own)."""
    p = yaml.safe_load((dst / "params.yaml").read_text())
    p["generate"] = {"cremad": {**p["generate"]["cremad"], "clips_per_class": 8, "show_progress": False}}
    p["datasets"] = {"cremad": p["datasets"]["cremad"]}
    p["benchmark"] = {"cremad": ["audio_only", "visual_only", "concat", "ogm_ge", "opm"]}
    p["seeds"] = [0]
    p["train"]["epochs"] = 2
    p["tune"].update(budget=2, runs={"cremad": ["concat", "ogm_ge"]})  # 2 runs × (2 trials + 1 seed)
    p["prepare"]["workers"] = 1
    p["embedding"]["runs"] = {"cremad": ["concat"]}  # the t-SNE stage on a run the cut pipeline trains
    for sweep in p["sweeps"].values():  # one point per swept param on CREMA-D (tests/test_sweeps.py draws two)
        sweep.update(values=sweep["values"][:1], datasets=["cremad"])
    (dst / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    pipeline = yaml.safe_load((dst / "dvc.yaml").read_text())
    stages = pipeline["stages"]
    stages["report"]["deps"] = [d for d in stages["report"]["deps"] if not d.startswith("data/shards/") or "/cremad/" in d]
    pipeline["plots"] = []
    (dst / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC repository holding the project's pipeline files and shrunken params."""
    dst = tmp_path_factory.mktemp("pipeline")
    for name in ("dvc.yaml", "params.yaml", "stages", "src", "reference", "pipelines/cremad/dvc.yaml"):
        src, target = ROOT / name, dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, target)
    _shrink(dst)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(dst / "src"), DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    _run(["git", "init", "-q"], dst, env)
    _run(["dvc", "init", "-q"], dst, env)
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-qm", "init"], dst, env)
    return dst, env


def test_repro_builds_report(repo):
    path, env = repo
    _run(["dvc", "repro"], path, env)
    report = (path / "reports" / "README.md").read_text()
    assert "## CREMA-D" in report
    for row in ("Audio-only", "Visual-only", "Concat", "OGM-GE"):
        assert f"| {row} | 1 |" in report
    index = json.loads((path / "data" / "shards" / "cremad" / "index.json").read_text())
    assert index["modalities"]["audio"]["shape"] == [257, 299]
    metrics = json.loads((path / "results" / "cremad" / "ogm_ge" / "results.json").read_text())
    assert 0.0 <= metrics["seeds"]["0"]["test"]["acc"] <= 1.0
    trials = json.loads((path / "results" / "tuned" / "cremad" / "ogm_ge" / "trials.json").read_text())
    assert trials["budget"] == 2 and len(trials["trials"]) == 2
    assert "Concat" in (path / "reports" / "tuned.md").read_text()


def test_second_repro_is_noop(repo):
    path, env = repo
    start = time.perf_counter()
    out = _run(["dvc", "repro"], path, env)
    assert "Running stage" not in out
    assert time.perf_counter() - start < 30


def test_exp_run_set_param(repo):
    path, env = repo
    _run(["git", "add", "-A"], path, env)
    _run(["git", "commit", "-qm", "results"], path, env)
    out = _run(["dvc", "exp", "run", "-S", "method=ogm_ge"], path, env)
    assert "Running stage 'experiment'" in out
    # only what depends on `method` re-runs
    # (a training stage is named by its file: 'pipelines/cremad/dvc.yaml:train-cremad@…')
    assert "Running stage 'pipelines/cremad/dvc.yaml:train-" not in out and "Running stage 'prepare@" not in out
    assert "Stage 'pipelines/cremad/dvc.yaml:train-cremad@cremad-concat' didn't change" in out
    rows = json.loads(_run(["dvc", "exp", "show", "--json"], path, env))
    found = json.dumps(rows)
    assert '"method": "ogm_ge"' in found
    assert "experiment/metrics.json" in found
