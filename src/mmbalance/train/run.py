"""One training stage: a method on a dataset's shards over several seeds → results JSON."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from dvclive import Live

from mmbalance.methods import MethodContext, build_method
from mmbalance.models import build_model
from mmbalance.shards import read_index as dataset_info
from mmbalance.train.data import load_split
from mmbalance.train.loop import fit


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU results are then bit-for-bit repeatable)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def in_channels_of(info: dict) -> dict[str, int]:
    """Input channels per modality from the shard index: 1 for a spectrogram, C for frames,
    the feature size D for a sequence."""
    return {m: 1 if s["kind"] == "spectrogram" else int(s["shape"][-1]) for m, s in info["modalities"].items()}


def train_seed(shard_dir: Path, splits, method_name: str, method_cfg: dict, model_cfg: dict, train_cfg: dict, seed: int, live=None) -> dict:
    """Build model and method for one seed and fit them."""
    info = dataset_info(shard_dir)
    available = list(info["modalities"])
    seed_everything(seed)
    ctx = MethodContext(modalities=available, num_classes=len(info["classes"]), epochs=int(train_cfg["epochs"]))
    method = build_method(method_name, method_cfg, ctx)
    mods = method.modalities(available)
    ctx.modalities = mods
    kinds = {m: s["kind"] for m, s in info["modalities"].items()}
    model = build_model(model_cfg, mods, in_channels_of(info), len(info["classes"]), model_cfg.get("fusion", "concat"), kinds)
    model.method_modules.update(method.modules(model.feature_dims, len(info["classes"])))
    data = {name: _select(split, mods) for name, split in splits.items()}
    return fit(model, method, data, train_cfg, seed, method_name, live)


def _select(split, mods):
    """A view of a split holding only the model's modalities."""
    return replace(split, arrays={m: split.arrays[m] for m in mods}, lengths={m: c for m, c in split.lengths.items() if m in mods})


def run(shard_dir: Path, out_dir: Path, dataset: str, method_name: str, method_cfg: dict, model_cfg: dict, train_cfg: dict, seeds: list[int], profile: str) -> dict:
    """Train every seed, log curves with DVCLive under ``out_dir/live/seed<k>``, write metrics.json."""
    torch.set_num_threads(int(train_cfg.get("num_threads", 2)))
    info = dataset_info(shard_dir)
    mods = list(info["modalities"])
    splits = {s: load_split(shard_dir, s, mods) for s in ("train", "val", "test") if s in info["splits"]}
    results = {"dataset": dataset, "method": method_name, "fusion": model_cfg.get("fusion", "concat"), "profile": profile,
               "modalities": mods, "selection": "best validation accuracy" if "val" in splits else "last-best test accuracy", "seeds": {}}
    for seed in seeds:
        with Live(dir=str(out_dir / "live" / f"seed{seed}"), save_dvc_exp=False, dvcyaml=None, report=None) as live:
            res = train_seed(shard_dir, splits, method_name, method_cfg, model_cfg, train_cfg, seed, live)
            live.summary = {"test": res["test"], "best_epoch": res["best_epoch"], "best_test_acc": res["best_test_acc"]}
        results["seeds"][str(seed)] = {k: v for k, v in res.items() if k != "history"}
    results["summary"] = summarise(results["seeds"])
    # results.json: everything, per seed (the report's input); metrics.json: the flat numeric
    # summary that `dvc metrics show` / `dvc exp show` display.
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    flat = {k: round(v[stat], 6) for k, v in results["summary"].items() for stat in ("mean",)}
    flat.update({f"{k}_std": round(v["std"], 6) for k, v in results["summary"].items()})
    (out_dir / "metrics.json").write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n")
    return results


def summarise(seeds: dict) -> dict:
    """Mean and sample std over seeds of each test metric (flat keys, for ``dvc metrics show``)."""
    rows = [r["test"] for r in seeds.values()]
    flat = [{**{k: v for k, v in r.items() if k != "probe_acc"}, **{f"probe_acc_{m}": v for m, v in r["probe_acc"].items()}} for r in rows]
    out = {}
    for key in flat[0]:
        vals = np.array([f[key] for f in flat])
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out
