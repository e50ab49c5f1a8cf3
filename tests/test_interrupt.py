"""Kill-and-resume: the prepare and train stages, killed with SIGKILL in a subprocess and rerun,
end exactly as an uninterrupted run (byte-identical shards; equal test metrics on CPU).

The subprocess kills itself right after a chosen call (tests/_kill_at.py), so the kill lands at
the same point on a loaded machine as on an idle one."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mmbalance.datasets.mini import get_generator
from mmbalance.params import load_params, lookup, resolve_run
from mmbalance.train.run import run

ROOT = Path(__file__).parents[1]
LIMIT_S = 120.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A mini CREMA-D (24 clips) and shrunken params: 2 clips a shard, tiny model, 4 epochs, one seed."""
    base = tmp_path_factory.mktemp("interrupt")
    get_generator("cremad")(base / "raw", clips_per_class=4, seed=0, show_progress=False)
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["prepare"].update(workers=1, shard_max_count=2)
    p["datasets"]["cremad"]["frame_size"] = 16
    p["seeds"] = [0]
    p["train"].update(epochs=4, batch_size=8, num_threads=1)
    p["model"]["encoders"]["spectrogram"].update(channels=[4, 8], input_size=[16, 20])
    p["model"]["encoders"]["frames"].update(channels=[4, 8])
    (base / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return base


def _cmd(stage: str, base: Path, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--dataset", "cremad", "--params", str(base / "params.yaml"), *args]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _kill_after(target: str, n: int, cmd: list[str]) -> None:
    """Run ``cmd`` (a stage: python script args...) so that it is SIGKILLed right after the n-th call of ``target``."""
    killer = [cmd[0], str(ROOT / "tests" / "_kill_at.py"), target, str(n), *cmd[1:]]
    proc = subprocess.run(killer, capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == -signal.SIGKILL, f"not killed at {target} call {n}: {proc.stderr[-2000:]}"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def shards(setup) -> Path:
    """Shards of an uninterrupted prepare run."""
    out = setup / "shards"
    _run(_cmd("prepare", setup, "--root", str(setup / "raw"), "--out", str(out)))
    return out


def test_prepare_killed_mid_shard_then_rerun_is_byte_identical(setup, shards):
    out = setup / "shards_killed"
    cmd = _cmd("prepare", setup, "--root", str(setup / "raw"), "--out", str(out))
    # 2 clips a shard: the 3rd sample written is the first of shard 1, so shard 0 is complete and
    # shard 1 is a partly written temporary file
    _kill_after("webdataset:TarWriter.write", 3, cmd)
    assert not (out / "index.json").exists()
    finished = [p for p in out.iterdir() if p.suffix == ".tar"]
    assert [p.name for p in finished] and any(p.suffix == ".tmp" for p in out.iterdir())
    assert all(_digests(shards)[p.name] == _digests(out)[p.name] for p in finished)  # no truncated shard under a final name
    _run(cmd)
    assert _digests(out) == _digests(shards)


def _test_metrics(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    return {seed: (r["test"], r["best_epoch"], r["best_test_acc"]) for seed, r in results["seeds"].items()}


def _train_in_process(base: Path, shards: Path, out: Path) -> None:
    """The uninterrupted run, as stages/train.py runs it (in-process: one interpreter start less)."""
    p = load_params(base / "params.yaml")
    method, method_cfg, model_cfg = resolve_run(p, "ogm_ge")
    run(shards, out, "cremad", method, method_cfg, model_cfg, lookup(p, "train"), lookup(p, "seeds"), lookup(p, "profile"),
        run_name="ogm_ge")


def test_train_killed_after_an_epoch_resumes_to_the_same_metrics(setup, shards):
    full = setup / "train_full"
    _train_in_process(setup, shards, full)
    out, ckpts = setup / "train_killed", setup / "ckpt"
    cmd = _cmd("train", setup, "--method", "ogm_ge", "--shards", str(shards), "--out", str(out), "--checkpoints", str(ckpts))
    _kill_after("mmbalance.train.loop:_save_checkpoint", 1, cmd)  # right after the first epoch's checkpoint
    assert not (out / "results.json").exists()
    (ckpt,) = ckpts.glob("seed0-*.pt")
    assert torch.load(ckpt, weights_only=False)["epoch"] < 3  # killed before the last epoch
    _run(cmd)
    assert _test_metrics(out) == _test_metrics(full)
