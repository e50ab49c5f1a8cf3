"""One training stage: a method on a dataset's shards over several seeds → results JSON."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmbalance.evaluate import curves as run_curves
from mmbalance.evaluate.predictions import from_trainer, save_predictions
from mmbalance.methods import MethodContext, build_method
from mmbalance.system import device_name
from mmbalance.models import build_model
from mmbalance.models.model import encoder_config
from mmbalance.params import lookup, resolve_run, scale_train
from mmbalance.shards import read_index as dataset_info
from mmbalance.profiles import deep_merge
from mmbalance.train import distributed as dist
from mmbalance.train import runtime
from mmbalance.train.data import load_split, segments_of
from mmbalance.train.loop import fit
from mmbalance.train.stream import stream_split

LOADERS = ("memory", "stream")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU results are then bit-for-bit repeatable)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def in_channels_of(info: dict) -> dict[str, int]:
    """Input channels per modality from the shard index: 1 for a spectrogram, C for frames,
    the feature size D for a sequence."""
    return {m: 1 if s["kind"] == "spectrogram" else int(s["shape"][-1]) for m, s in info["modalities"].items()}


def pool_sizes(info: dict, model_cfg: dict) -> dict:
    """The ``input_size`` each spectrogram encoder pools its input to (pooled once at load). For
    event localisation (``segments`` S in the index) the encoder reads one segment at a time, so
    its [F', T'] is one segment's size and the clip is pooled to [F', S·T']."""
    segments = max(1, segments_of(info))
    sizes = {m: encoder_config(model_cfg, m, s["kind"]).get("input_size") for m, s in info["modalities"].items()
             if s["kind"] == "spectrogram"}
    return {m: [size[0], size[1] * segments] if size and segments > 1 else size for m, size in sizes.items()}


def build_run(info: dict, method_name: str, method_cfg: dict, model_cfg: dict, epochs: int):
    """Method and model for a dataset described by its shard index (model on the method's modalities)."""
    available = list(info["modalities"])
    ctx = MethodContext(modalities=available, num_classes=len(info["classes"]), epochs=epochs, dataset=info.get("dataset"))
    method = build_method(method_name, method_cfg, ctx)
    mods = method.modalities(available)
    ctx.modalities = mods
    kinds = {m: s["kind"] for m, s in info["modalities"].items()}
    model = build_model(model_cfg, mods, in_channels_of(info), len(info["classes"]), model_cfg.get("fusion", "concat"), kinds)
    model.method_modules.update(method.modules(model.feature_dims, len(info["classes"])))
    method.bind(model)
    return method, model


def fingerprint(*parts) -> str:
    """A short hash of the configuration a checkpoint belongs to (stale checkpoints are ignored)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# train settings that change how a run is executed, not its numbers: left out of the checkpoint
# key, so that e.g. training the seeds one by one instead of side by side resumes the same checkpoints
EXECUTION_ONLY = ("seed_workers", "prefetch", "check_finite")


def checkpoint_key(info: dict, stamp: list, method_name: str, method_cfg: dict, model_cfg: dict, train_cfg: dict) -> str:
    """The fingerprint a run's checkpoints are saved under: dataset index, shard stamps, method,
    model and train settings (without ``EXECUTION_ONLY``)."""
    train = {k: v for k, v in train_cfg.items() if k not in EXECUTION_ONLY}
    return fingerprint(info, stamp, method_name, method_cfg, model_cfg, train)


def shard_stamp(shard_dir: Path, info: dict) -> list[tuple[str, int, int]]:
    """(name, size, mtime_ns) of every shard the index lists: part of a checkpoint's key, because
    regenerated data can keep the index unchanged (same clips, classes and counts, other pixels).
    Rewritten shards invalidate checkpoints even when their bytes are equal (a retrain, never a
    resume on other data); a killed run resumes on the very same files."""
    names = sorted(n for split in info["splits"].values() for n in split["shards"])
    return [(n, (st := (Path(shard_dir) / n).stat()).st_size, st.st_mtime_ns) for n in names]


def train_seed(info: dict, splits, method_name: str, method_cfg: dict, model_cfg: dict, train_cfg: dict, seed: int,
               live=None, checkpoint: Path | None = None) -> dict:
    """Build model and method for one seed and fit them (resuming from ``checkpoint`` if valid)."""
    seed_everything(seed)
    method, model = build_run(info, method_name, method_cfg, model_cfg, int(train_cfg["epochs"]))
    data = {name: split.select(method.ctx.modalities) for name, split in splits.items()}
    return fit(model, method, data, train_cfg, seed, method_name, live, checkpoint)


def for_dataset(block: dict, dataset: str) -> dict:
    """A params block (``train`` or ``model``) with its ``by_dataset.<dataset>`` overrides deep-merged
    in and the ``by_dataset`` table removed: one profile holds every dataset's paper settings."""
    block = dict(block)
    per = block.pop("by_dataset", None) or {}
    return deep_merge(block, per.get(dataset) or {})


def run_settings(params: dict, run: str, dataset: str) -> tuple[str, dict, dict, dict]:
    """(method, method params, model params, train params) of ``run`` on ``dataset``, as every
    stage that trains it resolves them: the run's block and the dataset's ``by_dataset``
    overrides of ``model``, and ``run_train_settings``."""
    method, method_cfg, model_cfg = resolve_run(params, run)
    return method, method_cfg, for_dataset(model_cfg, dataset), run_train_settings(params, run, dataset)


def run_train_settings(params: dict, run: str, dataset: str) -> dict:
    """The ``train`` settings ``run`` trains with on ``dataset``: the dataset's ``by_dataset``
    overrides, then the run's ``train_scale`` factors and ``train`` values."""
    return scale_train(params, run, for_dataset(lookup(params, "train"), dataset))


def load_splits(shard_dir: Path, info: dict, model_cfg: dict, train_cfg: dict) -> dict:
    """The dataset's splits: in memory (``train.loader: memory``, the default) or streamed from
    the shards by DataLoader workers (``stream``)."""
    loader = str(train_cfg.get("loader", "memory"))
    if loader not in LOADERS:
        raise ValueError(f"train.loader {loader!r} unknown; choices: {', '.join(LOADERS)}")
    read = load_split if loader == "memory" else stream_split
    mods, sizes = list(info["modalities"]), pool_sizes(info, model_cfg)
    return {s: read(shard_dir, s, mods, sizes) for s in ("train", "val", "test") if s in info["splits"]}


def _checkpoint_path(folder: Path | None, seed: int, key: str, prune: bool = True) -> Path | None:
    """``<folder>/seed<k>-<config hash>.pt``; checkpoints of other configurations are removed
    (by rank 0 alone: ``prune``)."""
    if folder is None:
        return None
    path = folder / f"seed{seed}-{key}.pt"
    if not prune:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"seed{seed}-*.pt"):
        if old != path:
            old.unlink()
    return path


def run(shard_dir: Path, out_dir: Path, dataset: str, method_name: str, method_cfg: dict, model_cfg: dict, train_cfg: dict,
        seeds: list[int], profile: str, checkpoints: Path | None = None, models: Path | None = None,
        run_name: str | None = None, live: Path | None = None) -> dict:
    """Train every seed; results.json, metrics.json and every seed's per-epoch curves
    (curves.json) in ``out_dir``; the selected epoch's per-sample test predictions in
    ``out_dir/predictions/seed<k>.npz``; DVCLive logs under ``live/seed<k>`` (for ``dvc plots``);
    per-epoch checkpoints in ``checkpoints``; selected weights in ``models/seed<k>.pt``.

    Under ``torchrun`` every process runs this; rank 0 alone writes files."""
    torch.set_num_threads(int(train_cfg.get("num_threads", 2)))
    dist.init(runtime.resolve(train_cfg).device)
    try:
        return _run(shard_dir, out_dir, dataset, method_name, method_cfg, model_cfg, train_cfg, seeds, profile,
                    checkpoints, models, run_name, live)
    finally:
        dist.shutdown()


def _run(shard_dir, out_dir, dataset, method_name, method_cfg, model_cfg, train_cfg, seeds, profile, checkpoints, models,
         run_name, live) -> dict:
    info = dataset_info(shard_dir)
    mods = list(info["modalities"])
    splits = load_splits(shard_dir, info, model_cfg, train_cfg)
    main, rt = dist.is_main(), runtime.resolve(train_cfg)
    results = {"dataset": dataset, "run": run_name or method_name, "method": method_name, "fusion": model_cfg.get("fusion", "concat"), "profile": profile,
               "device": device_name(), "modalities": mods,
               **({"backbone": model_cfg["backbone"]} if model_cfg.get("backbone", "late") != "late" else {}),
               **({"frames": int(model_cfg["frames"])} if model_cfg.get("frames") else {}),
               "runtime": {"device": rt.device.type, "bf16": rt.bf16, "processes": dist.world_size(), "loader": train_cfg.get("loader", "memory")},
               "selection": "best validation accuracy" if "val" in splits else "last-best test accuracy", "seeds": {}}
    # stale checkpoints (other config or other shard files) are not resumed
    key = checkpoint_key(info, shard_stamp(shard_dir, info), method_name, method_cfg, model_cfg, train_cfg)
    job = _SeedJob(info, splits, method_name, method_cfg, model_cfg, train_cfg, out_dir, checkpoints, models, key, main, live)
    workers = seed_workers(train_cfg, rt, len(seeds))
    if workers > 1:
        # Seeds are independent runs: train them in forked processes that share the loaded splits
        # (copy-on-write). Each seeds its own RNGs, so the numbers equal a sequential run's.
        global _JOB
        _JOB = job
        _import_before_fork(live is not None)
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            per_seed = pool.map(_run_job_seed, seeds)
        _JOB = None
    else:
        per_seed = [job.run_seed(seed) for seed in seeds]
    curves = {str(seed): res.pop("curves") for seed, res in zip(seeds, per_seed)}
    results["seeds"] = {str(seed): res for seed, res in zip(seeds, per_seed)}
    if main:
        write_results(out_dir, results)
        run_curves.write(out_dir / "curves.json", curves)
    return results


def seed_workers(train_cfg: dict, rt, n_seeds: int) -> int:
    """Processes training seeds side by side (``train.seed_workers``, default 1): only for a
    single-process CPU run with the in-memory loader (a GPU or DDP run uses its devices instead)."""
    n = min(int(train_cfg.get("seed_workers", 1)), n_seeds)
    if n > 1 and (rt.cuda or dist.world_size() > 1 or str(train_cfg.get("loader", "memory")) != "memory"):
        return 1
    return max(n, 1)


@dataclass
class _SeedJob:
    """Everything one seed's training needs; ``run_seed`` trains it and writes its files."""

    info: dict
    splits: dict
    method_name: str
    method_cfg: dict
    model_cfg: dict
    train_cfg: dict
    out_dir: Path
    checkpoints: Path | None
    models: Path | None
    key: str
    main: bool
    live: Path | None = None

    def run_seed(self, seed: int) -> dict:
        """Train one seed (DVCLive curves, checkpoint, selected weights); its results entry, with
        its per-epoch ``curves``."""
        with _live(self.live / f"seed{seed}" if self.live is not None else None, self.main) as live:
            res = train_seed(self.info, self.splits, self.method_name, self.method_cfg, self.model_cfg, self.train_cfg,
                             seed, live, _checkpoint_path(self.checkpoints, seed, self.key, prune=self.main))
            if live is not None:
                live.summary = {"test": res["test"], "best_epoch": res["best_epoch"], "best_test_acc": res["best_test_acc"]}
        if self.main and res.get("predictions") is not None:
            save_predictions(self.out_dir / "predictions" / f"seed{seed}.npz", from_trainer(res["predictions"]))
        if self.models is not None and self.main:
            self.models.mkdir(parents=True, exist_ok=True)
            torch.save({"state": res["best_state"]["model"], "method_state": res["best_state"]["method"], "method": self.method_name,
                        "method_cfg": self.method_cfg, "model_cfg": self.model_cfg, "epochs": int(self.train_cfg["epochs"]), "seed": seed},
                       self.models / f"seed{seed}.pt")
        out = {k: v for k, v in res.items() if k not in ("history", "best_state", "predictions")}
        return {**out, "curves": run_curves.from_history(res["history"])}


_JOB: _SeedJob | None = None  # the job forked seed workers run (set only around the pool)


# what the seed workers would import after the fork: torch._dynamo (``Optimizer.__init__``, ~1.1 s),
# scikit-learn's metrics (the per-epoch scores, ~1 s) and, when they log to DVCLive, DVCLive and
# the DVC repository and Git modules its ``Live()`` opens the repository with (importing these
# once instead of in each of 3 workers saved ~0.7 s of CPU per stage, docs/performance.md)
_FORK_IMPORTS = ("torch._dynamo", "sklearn.metrics", "sklearn.preprocessing")
_LIVE_IMPORTS = ("dvclive", "dvc.repo", "dvc.scm", "dvc.repo.experiments.refs", "dvc.repo.datasets", "dulwich.porcelain")


def _import_before_fork(live: bool) -> None:
    """Import ``_FORK_IMPORTS`` (and, for DVCLive logging, ``_LIVE_IMPORTS``) once in the parent,
    so that the forked seed workers inherit them instead of each importing them on its own; the
    numbers do not change."""
    import importlib

    for name in _FORK_IMPORTS + (_LIVE_IMPORTS if live else ()):
        importlib.import_module(name)


def _run_job_seed(seed: int) -> dict:
    torch.set_num_threads(int(_JOB.train_cfg.get("num_threads", 2)))
    return _JOB.run_seed(seed)


def _live(folder: Path | None, main: bool):
    """DVCLive on rank 0 (when given a folder); the other ranks log nothing."""
    if not main or folder is None:
        return contextlib.nullcontext()
    return _live_class()(dir=str(folder), save_dvc_exp=False, dvcyaml=None, report=None, resume=False)


# DVCLive's step signal for the VS Code extension: every Live in the repository writes it after each
# step, and Live.end() removes it last, after an exists() check
_STEP_SIGNAL = "DVCLIVE_STEP_COMPLETED"


@functools.cache
def _live_class():
    """``dvclive.Live`` whose ``end`` tolerates the step signal file vanishing between DVCLive's
    exists() check and its removal: seed workers training side by side share that one file, so
    the second to finish would otherwise fail after all its logs are written."""
    from dvclive import Live  # imported here: building a model or a run needs no logger

    class SeedLive(Live):
        def end(self):
            try:
                super().end()
            except FileNotFoundError as err:  # the removal is the last thing end() does
                if Path(err.filename or "").name != _STEP_SIGNAL:
                    raise

    return SeedLive


def write_results(out_dir: Path, results: dict) -> None:
    """results.json: everything, per seed (the report's input); metrics.json: the flat numeric
    summary (mean and ``_std`` over seeds) that ``dvc metrics show`` / ``dvc exp show`` display."""
    results["summary"] = summarise(results["seeds"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    flat = {k: round(v["mean"], 6) for k, v in results["summary"].items()}
    flat.update({f"{k}_std": round(v["std"], 6) for k, v in results["summary"].items()})
    (out_dir / "metrics.json").write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n")


def summarise(seeds: dict) -> dict:
    """Mean and sample std over seeds of each test metric (flat keys, for ``dvc metrics show``)."""
    rows = [r["test"] for r in seeds.values()]
    flat = [{**{k: v for k, v in r.items() if k not in ("probe_acc", "per_class_acc")}, **{f"probe_acc_{m}": v for m, v in r["probe_acc"].items()}} for r in rows]
    out = {}
    for key in flat[0]:
        vals = np.array([f[key] for f in flat])
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out
