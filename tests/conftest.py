"""Shared fixtures: tiny in-memory splits shaped like the prepared shards, for CPU step tests, and
a tiny git + DVC copy of the pipeline for the DVC queue tests."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance.shards import encode_sample, write_index, write_shards
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


def write_av_shards(out: Path, counts: dict[str, int], spec_shape: tuple[int, int], frame_size: int,
                    stored_frames: int = 3, max_count: int = 16) -> Path:
    """Random 3-class audio-visual shards and their index under ``out``: ``counts`` clips per
    split, fp16 spectrograms of ``spec_shape``, ``stored_frames`` uint8 frames of ``frame_size``²
    per clip (the model sees 2), several shards per split."""
    rng, splits = np.random.default_rng(0), {}
    for split, n in counts.items():
        samples = (encode_sample(f"{split}{i:03d}", {"audio": rng.normal(size=spec_shape).astype("float16"),
                                                     "visual": rng.integers(0, 255, (stored_frames, frame_size, frame_size, 3),
                                                                            dtype=np.uint8)}, i % 3)
                   for i in range(n))
        splits[split] = {"count": n, "per_class": {}, "shards": write_shards(samples, out, split, max_count=max_count)}
    modalities = {"audio": {"kind": "spectrogram", "shape": list(spec_shape), "dtype": "float16"},
                  "visual": {"kind": "frames", "shape": [None, frame_size, frame_size, 3], "dtype": "uint8"}}
    write_index(out / "index.json", {"dataset": "tiny", "classes": ["a", "b", "c"], "frames_per_clip": 2, "splits": splits,
                                     "skipped": [], "modalities": modalities})
    return out


@pytest.fixture
def batch():
    """Inputs shaped like a loader batch (spectrogram [B,1,F,T], frames [B,n,3,H,W]) and labels."""
    gen = torch.Generator().manual_seed(0)
    inputs = {"audio": torch.randn(8, 1, 33, 40, generator=gen), "visual": torch.randn(8, 1, 3, 16, 16, generator=gen)}
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    return inputs, labels

# Tests run many tiny models: one thread avoids oversubscribing a small shared CPU.
torch.set_num_threads(1)


ROOT = Path(__file__).resolve().parents[1]


def resolve_stages(root: Path) -> dict:
    """The stages of ``root``'s dvc.yaml and pipelines/<dataset>/dvc.yaml as DVC resolves them
    (foreach / matrix expanded): name → cmd, dependency paths (params dependencies apart),
    declared params keys and the dvc.yaml defining it (names are unique across the files)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        out = {}
        for s in repo.index.stages:
            keys = [k for p in s.deps if hasattr(p, "params") for k in (p.params or [])]
            assert s.name not in out, f"stage {s.name} is defined twice"
            out[s.name] = {"cmd": s.cmd, "deps": [d.def_path for d in s.deps if not hasattr(d, "params")], "params": keys,
                           "dvcfile": s.dvcfile.relpath}
        return out


@pytest.fixture(scope="session")
def resolved_stages() -> dict:
    """The repository's stages (default params.yaml), resolved by DVC: see :func:`resolve_stages`."""
    return resolve_stages(ROOT)


@pytest.fixture(scope="session")
def full_params() -> dict:
    """The full profile's params: params.yaml merged with profiles/full.yaml (every paper row's run)."""
    import yaml

    from mmbalance.profiles import deep_merge

    return deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                      yaml.safe_load((ROOT / "profiles" / "full.yaml").read_text()))


@pytest.fixture(scope="session")
def full_profile_root(tmp_path_factory, full_params) -> Path:
    """A DVC repository holding the pipeline's dvc.yaml files and the full profile's params.yaml
    (params.yaml merged with profiles/full.yaml): the stages the default trains none of (tuning,
    sweeps, most methods) are there, so pipeline-structure tests cover every kind of stage."""
    import yaml
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("full_profile")
    Repo.init(str(root), no_scm=True)
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    for f in (ROOT / "pipelines").glob("*/dvc.yaml"):
        (root / "pipelines" / f.parent.name).mkdir(parents=True)
        shutil.copy(f, root / "pipelines" / f.parent.name / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(full_params, sort_keys=False))
    return root


@pytest.fixture(scope="session")
def full_profile(full_params, full_profile_root) -> tuple[dict, dict]:
    """(params, resolved stages: :func:`resolve_stages`) of the full profile."""
    return full_params, resolve_stages(full_profile_root)


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


def tiny_queue_repo(dst: Path, keep: tuple[str, ...], files: tuple[str, ...] = (),
                    edit: Callable[[dict], None] | None = None) -> dict:
    """A git + DVC repository in ``dst``: the pipeline's ``keep`` stages of dvc.yaml (plus
    ``files``, e.g. a dataset's pipeline file) on tiny CREMA-D data, one seed, one epoch,
    ``edit`` applied to the params; its data prepared and committed (queued experiments start
    from the last commit). Returns the environment to run dvc and the project's modules in."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    for name in ("dvc.yaml", "params.yaml", "stages", "src", *files):
        src, target = root / name, dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, target)
    p = yaml.safe_load((dst / "params.yaml").read_text())
    p["generate"] = {"cremad": {**p["generate"]["cremad"], "clips_per_class": 6, "show_progress": False, "workers": 1}}
    p["datasets"] = {"cremad": {**p["datasets"]["cremad"], "frame_size": 16}}
    p["datasets"]["cremad"]["split"].update(val_fraction=0.25, test_fraction=0.25)
    p["seeds"] = [0]
    p["train"].update(epochs=1, batch_size=8, seed_workers=1)
    p["model"]["encoders"]["spectrogram"].update(channels=[4, 8], input_size=[16, 20])
    p["model"]["encoders"]["frames"].update(channels=[4, 8])
    p["prepare"]["workers"] = 1
    if edit is not None:
        edit(p)
    (dst / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    pipeline = yaml.safe_load((dst / "dvc.yaml").read_text())
    (dst / "dvc.yaml").write_text(yaml.safe_dump({"stages": {k: v for k, v in pipeline["stages"].items() if k in keep}},
                                                 sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
               PYTHONPATH=str(dst / "src"), DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"],
                ["dvc", "repro", "-q", "prepare", "method-sources", "run-params"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "base"]):
        proc = subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return env
