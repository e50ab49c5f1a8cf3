"""DDP on CPU: the train and sweep stages relaunch themselves under torchrun with 2 gloo processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmbalance.shards import encode_sample, write_index, write_shards
from mmbalance.train.data import index_batches

ROOT = Path(__file__).parents[1]
COUNTS = {"train": 40, "val": 10, "test": 23}  # odd test size: ranks get 12 and 11 samples


def _write_split(out: Path, split: str, n: int, rng) -> list[str]:
    samples = (encode_sample(f"{split}{i:03d}", {"audio": rng.normal(size=(33, 40)).astype("float16"),
                                                 "visual": rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)}, i % 3)
               for i in range(n))
    return write_shards(samples, out, split, max_count=12)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Tiny 3-class audio-visual shards, several per split (so shards split across ranks)."""
    out, rng = tmp_path_factory.mktemp("ddp_shards"), np.random.default_rng(0)
    splits = {s: {"count": n, "per_class": {}, "shards": _write_split(out, s, n, rng)} for s, n in COUNTS.items()}
    write_index(out / "index.json", {
        "dataset": "tiny", "classes": ["a", "b", "c"], "frames_per_clip": 1, "splits": splits, "skipped": [],
        "modalities": {"audio": {"kind": "spectrogram", "shape": [33, 40], "dtype": "float16"},
                       "visual": {"kind": "frames", "shape": [None, 8, 8, 3], "dtype": "uint8"}}})
    return out


def _params(path: Path, loader: str) -> Path:
    p = {"profile": "mini", "seeds": [0],
         "model": {"fusion": "concat", "encoders": {"spectrogram": {"name": "tiny_cnn", "channels": [4, 8], "input_size": [16, 20]},
                                                     "frames": {"name": "tiny_cnn", "channels": [4, 8]}}},
         "train": {"epochs": 2, "batch_size": 8, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0001,
                   "lr_step": 0, "num_threads": 1, "device": "cpu", "precision": "fp32", "loader": loader,
                   "num_workers": 1 if loader == "stream" else 0, "nproc_per_node": 2},
         "methods": {"ogm_ge": {"alpha": 0.8, "form": "paper", "start_epoch": 0, "end_epoch": 50, "noise": True, "noise_on": "all"},
                     "gmm_al": {"warmup_epochs": 1, "fit_every": 1, "alpha": 1.0, "beta": 1.0, "gamma": 1.0, "gmm_weights": True,
                                "anneal": 0.96, "anneal_from": "adaptive", "reset_optimizer": True, "optimizer": None, "lr": None,
                                "gmm_seed": 0}}}
    path.write_text(yaml.safe_dump(p))
    return path


@pytest.mark.parametrize("method,loader", [("ogm_ge", "memory"), ("gmm_al", "stream")])
def test_two_gloo_processes_score_every_test_sample_once(shards, tmp_path, method, loader):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    env.pop("LOCAL_RANK", None)
    cmd = [sys.executable, str(ROOT / "stages" / "train.py"), "--dataset", "tiny", "--method", method, "--shards", str(shards),
           "--out", str(tmp_path / "out"), "--params", str(_params(tmp_path / "params.yaml", loader)),
           "--models", str(tmp_path / "models"), "--live", str(tmp_path / "live")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    seed = res["seeds"]["0"]
    assert res["runtime"]["processes"] == 2
    assert seed["eval_samples"] == {"val": COUNTS["val"], "test": COUNTS["test"]}  # gathered, each key once
    assert 0.0 <= seed["test"]["acc"] <= 1.0 and len(seed["test"]["per_class_acc"]["fused"]) == 3
    assert (tmp_path / "models" / "seed0.pt").exists() and (tmp_path / "live" / "seed0").is_dir()
    assert set(json.loads((tmp_path / "out" / "curves.json").read_text())) == {"0"}


def test_rank_batches_partition_each_epoch():
    """Memory loader: every rank runs the same number of steps and each sample is used once."""
    n, size, world = 23, 8, 2
    per_rank = [[idx.tolist() for idx in index_batches(n, size, True, torch.Generator().manual_seed(0), r, world)]
                for r in range(world)]
    assert len(per_rank[0]) == len(per_rank[1]) == 3
    seen = sorted(i for batches in per_rank for b in batches for i in b)
    assert seen == list(range(n))
    single = [idx.tolist() for idx in index_batches(n, size, True, torch.Generator().manual_seed(0))]
    assert [sorted(a + b) for a, b in zip(*per_rank)] == [sorted(b) for b in single]  # same global batches


def test_a_sweep_point_relaunches_under_torchrun_too(shards, tmp_path):
    """The sweep stage reads the point's train.nproc_per_node and runs as 2 gloo ranks; one
    results.json, with the sweep's param and value, is written."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    env.pop("LOCAL_RANK", None)
    cmd = [sys.executable, str(ROOT / "stages" / "sweep.py"), "--dataset", "tiny", "--run", "ogm_ge", "--param", "alpha",
           "--value", "0.5", "--shards", str(shards), "--out", str(tmp_path / "out"),
           "--params", str(_params(tmp_path / "params.yaml", "memory"))]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["runtime"]["processes"] == 2 and res["sweep"] == {"param": "alpha", "value": 0.5}
    assert res["seeds"]["0"]["eval_samples"] == {"val": COUNTS["val"], "test": COUNTS["test"]}
    assert proc.stdout.count("tiny/ogm_ge alpha=0.5: acc") == 1  # rank 0 alone reports


def test_rank_outside_a_process_group_is_torchruns_rank(monkeypatch):
    """After the group is shut down (end of a stage) a rank still knows it is not rank 0, so only
    rank 0 writes the stage's results; outside torchrun every process is rank 0."""
    from mmbalance.train import distributed

    monkeypatch.delenv("RANK", raising=False)
    assert distributed.rank() == 0 and distributed.is_main()
    monkeypatch.setenv("RANK", "1")
    assert distributed.rank() == 1 and not distributed.is_main()
