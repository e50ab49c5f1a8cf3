"""The prepare step: a raw dataset root → per-split deterministic WebDataset shards + index JSON.

The dataset's adapter lists the clips and decodes each one into arrays (spectrograms, frames,
flow, feature sequences); this module parallelises that over clips and writes the shards. A clip
whose media cannot be decoded is skipped and listed, with its reason, in the index.
"""

from __future__ import annotations

from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmbalance.datasets import Clip, DatasetAdapter, get_dataset
from mmbalance.datasets.base import SPLITS
from mmbalance.media import MediaError
from mmbalance.validate import format_skip


def _extract_one(args: tuple[str, Clip, dict]) -> tuple[Clip, dict | None, str | None]:
    dataset, clip, recipe = args
    try:
        return clip, get_dataset(dataset).extract(clip, recipe), None
    except MediaError as err:  # names the file and what is wrong
        return clip, None, str(err)


def _extracted(dataset: str, clips: list[Clip], recipe: dict, pool, desc: str):
    """(clip, arrays | None, error | None) in the order of ``clips``; parallel over clips when
    a worker pool is given (ordered ``imap``, so the output order never depends on timing)."""
    jobs = [(dataset, c, recipe) for c in clips]
    results = pool.imap(_extract_one, jobs, chunksize=8) if pool is not None else map(_extract_one, jobs)
    yield from tqdm(results, total=len(jobs), desc=desc, mininterval=2.0)


def prepare(dataset: str, root: Path, out_dir: Path, recipe: dict, split_options: dict, workers: int, shard_max_count: int) -> dict:
    """Scan ``root`` with the dataset's adapter, extract every clip, write shards and the index."""
    # imported here, not at module level: spawned extraction workers import this module for
    # _extract_one, and the shard package pulls in webdataset → torch (~1.4 s per worker)
    from mmbalance.shards import write_index
    adapter = get_dataset(dataset)
    clips, skips = adapter.scan(root, **split_options)
    # the layout check comes first: every problem is listed before any long decoding starts
    print(f"{dataset}: {len(clips)} clips, {len(skips)} skipped at scan", flush=True)
    for skip in skips:
        print(f"  {format_skip(skip)}", flush=True)
    skipped = [{"clip_id": s.clip_id, "path": str(s.path), "reason": s.reason} for s in skips]
    index = {"dataset": dataset, "classes": list(adapter.classes), "modalities": {}, "splits": {},
             "frames_per_clip": int(recipe.get("frames_per_clip", adapter.frames_per_clip)),
             "recipe": {k: v for k, v in sorted(recipe.items())}}
    pool = get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for split in SPLITS:
            members = sorted((c for c in clips if c.split == split), key=lambda c: c.clip_id)
            if members:
                index["splits"][split] = _write_split(adapter, split, members, recipe, pool, out_dir, shard_max_count, index, skipped)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    index["skipped"] = sorted(skipped, key=lambda s: (s["clip_id"], s["path"]))
    write_index(out_dir / "index.json", index)
    return index


def _write_split(adapter: DatasetAdapter, split: str, members: list[Clip], recipe: dict, pool, out_dir: Path,
                 shard_max_count: int, index: dict, skipped: list) -> dict:
    """Shards of one split, sorted by clip id; returns its index entry and extends ``skipped``."""
    from mmbalance.shards import encode_sample, write_shards  # see prepare()

    per_class = {name: 0 for name in adapter.classes}

    def samples():
        for clip, arrays, error in _extracted(adapter.name, members, recipe, pool, f"{adapter.name}/{split}"):
            if error is not None:
                skipped.append({"clip_id": clip.clip_id, "path": ", ".join(str(p) for p in clip.paths.values()), "reason": error})
                continue
            per_class[adapter.classes[clip.label]] += 1
            _record_shapes(index["modalities"], arrays, adapter.kinds, adapter.dequantize)
            yield encode_sample(clip.clip_id, arrays, clip.label)

    shards = write_shards(samples(), out_dir, split, shard_max_count)
    return {"count": sum(per_class.values()), "per_class": per_class, "shards": shards}


def _record_shapes(shapes: dict, arrays: dict[str, np.ndarray], kinds: dict[str, str], dequantize: dict) -> None:
    """Record each modality's kind, dtype and shape (and its de-quantisation, if stored as codes);
    a varying leading dimension (frames, sequence length) is stored as ``None`` with its [min, max]
    under ``length``."""
    for m, arr in arrays.items():
        entry = shapes.setdefault(m, {"kind": kinds[m], "dtype": str(arr.dtype), "shape": list(arr.shape)})
        if m in dequantize:
            entry["dequantize"] = dict(dequantize[m])
        if kinds[m] in ("frames", "sequence"):
            lo, hi = entry.get("length", [arr.shape[0], arr.shape[0]])
            entry["length"] = [min(lo, arr.shape[0]), max(hi, arr.shape[0])]
            entry["shape"] = [None, *arr.shape[1:]]
