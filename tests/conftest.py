"""Shared fixtures: tiny in-memory splits shaped like the prepared shards, for CPU step tests."""

from pathlib import Path

import pytest
import torch

from mmbalance.train.data import SplitData

MODEL_CFG = {
    "fusion": "concat",
    "encoders": {
        "audio": {"name": "tiny_cnn", "channels": [4, 8], "input_size": [16, 20]},
        "visual": {"name": "tiny_cnn", "channels": [4, 8]},
    },
}
IN_CHANNELS = {"audio": 1, "visual": 3}
INFO = {
    "frames_per_clip": 1,
    "modalities": {"audio": {"kind": "spectrogram", "shape": [33, 40]}, "visual": {"kind": "frames", "shape": [None, 16, 16, 3]}},
}


def tiny_split(n: int = 12, seed: int = 0) -> SplitData:
    """``n`` clips of 6 classes: spectrograms [n, 1, 33, 40] and 2 stored frames [n, 2, 16, 16, 3]."""
    gen = torch.Generator().manual_seed(seed)
    arrays = {"audio": torch.randn(n, 1, 33, 40, generator=gen),
              "visual": torch.randint(0, 255, (n, 2, 16, 16, 3), generator=gen, dtype=torch.uint8)}
    return SplitData([f"c{i:03d}" for i in range(n)], torch.arange(n) % 6, arrays, {"visual": torch.full((n,), 2)}, INFO)


@pytest.fixture
def batch():
    """Inputs shaped like a loader batch (spectrogram [B,1,F,T], frames [B,n,3,H,W]) and labels."""
    gen = torch.Generator().manual_seed(0)
    inputs = {"audio": torch.randn(8, 1, 33, 40, generator=gen), "visual": torch.randn(8, 1, 3, 16, 16, generator=gen)}
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    return inputs, labels

# Tests run many tiny models: one thread avoids oversubscribing a small shared CPU.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def resolved_stages() -> dict:
    """The stages of dvc.yaml and pipelines/<dataset>/dvc.yaml as DVC resolves them (foreach /
    matrix expanded): name → cmd, dependency paths (params dependencies apart), declared params
    keys and the dvc.yaml defining it (names are unique across the files)."""
    from dvc.repo import Repo

    with Repo(str(Path(__file__).resolve().parents[1])) as repo:
        out = {}
        for s in repo.index.stages:
            keys = [k for p in s.deps if hasattr(p, "params") for k in (p.params or [])]
            assert s.name not in out, f"stage {s.name} is defined twice"
            out[s.name] = {"cmd": s.cmd, "deps": [d.def_path for d in s.deps if not hasattr(d, "params")], "params": keys,
                           "dvcfile": s.dvcfile.relpath}
        return out


def save_concat_run(parent: Path, seed: int = 0):
    """A Concat model (``MODEL_CFG``, 6 classes) saved as the train stage saves one, in
    ``parent/concat/seed<seed>.pt``; returns (info, model, folder)."""
    import torch

    from mmbalance.train.run import build_run

    info = {**INFO, "classes": [f"c{i}" for i in range(6)]}
    torch.manual_seed(0)
    _, model = build_run(info, "concat", {}, MODEL_CFG, 2)
    folder = parent / "concat"
    folder.mkdir()
    torch.save({"state": model.state_dict(), "method": "concat", "method_cfg": {}, "model_cfg": MODEL_CFG,
                "epochs": 2, "seed": seed}, folder / f"seed{seed}.pt")
    return info, model, folder
