"""The prepare step: a raw dataset root → per-split deterministic WebDataset shards + index JSON.

The dataset's adapter lists the clips and decodes each one into arrays (spectrograms, frames,
flow, feature sequences); this module parallelises that over clips and writes the shards. A clip
whose media cannot be decoded is skipped and listed, with its file and reason, in the index; the
per-clip check is ``mmbalance.validate.check_clip``, so ``validate`` lists the same problems.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from mmbalance.datasets import Clip, DatasetAdapter, get_dataset
from mmbalance.params import lookup
from mmbalance.validate import by_split, checked_clips, format_problem, skip_problem, sorted_problems, worker_pool


def recipe_from_params(params: dict, dataset: str) -> dict:
    """The adapter's decoding recipe: the shared ``prepare.audio`` settings and ``spec_dtype``
    plus the dataset's own block (without its root, the root's dependency and the split options)."""
    common, ds = lookup(params, "prepare"), lookup(params, f"datasets.{dataset}")
    return {**common["audio"], "spec_dtype": common["spec_dtype"],
            **{k: v for k, v in ds.items() if k not in ("root", "root_dep", "split_csv", "split")}}


def prepare(dataset: str, root: Path, out_dir: Path, recipe: dict, split_options: dict, workers: int, shard_max_count: int) -> dict:
    """Scan ``root`` with the dataset's adapter, extract every clip, write shards and the index."""
    # imported here, not at module level: the shard package pulls in webdataset → torch
    # (~1.4 s), which the extraction workers (mmbalance.validate.check_clip) never need
    from mmbalance.shards import write_index
    adapter = get_dataset(dataset)
    clips, skips = adapter.scan(root, **split_options)
    # the layout check comes first: every problem is listed before any long decoding starts
    print(f"{dataset}: {len(clips)} clips, {len(skips)} skipped at scan", flush=True)
    skipped = [skip_problem(s) for s in skips]
    for problem in skipped:
        print(f"  {format_problem(problem)}", flush=True)
    index = {"dataset": dataset, "classes": list(adapter.classes), "modalities": {}, "splits": {},
             "frames_per_clip": int(recipe.get("frames_per_clip", adapter.frames_per_clip)),
             "recipe": {k: v for k, v in sorted(recipe.items())}}
    if adapter.segments:  # event localisation: every clip is this many labelled segments
        index["segments"] = int(adapter.segments)
    splits = by_split(clips)
    ordered = [c for members in splits.values() for c in members]
    with worker_pool(workers) as pool:
        # one ordered stream over every split: the workers never wait at a split's end for the
        # parent to start the next one; each split takes its own clips off the front
        results = checked_clips(adapter.name, ordered, recipe, pool, dataset)
        for split, members in splits.items():
            index["splits"][split] = _write_split(adapter, split, islice(results, len(members)), out_dir,
                                                  shard_max_count, index, skipped)
    index["skipped"] = sorted_problems(skipped)
    write_index(out_dir / "index.json", index)
    return index


def _write_split(adapter: DatasetAdapter, split: str, results: Iterator[tuple[Clip, dict | None, dict | None]],
                 out_dir: Path, shard_max_count: int, index: dict, skipped: list) -> dict:
    """Shards of one split from its ``checked_clips`` results ``(clip, arrays, problem)``, sorted
    by clip id; returns its index entry and extends ``skipped``."""
    from mmbalance.shards import encode_sample, write_shards  # see prepare()

    per_class = {name: 0 for name in adapter.classes}

    def samples():
        # the same per-clip check as `validate`, so both list the same problems
        for clip, arrays, problem in results:
            if problem is not None:
                skipped.append(problem)
                continue
            per_class[adapter.classes[clip.label]] += 1
            _record_shapes(index["modalities"], arrays, adapter.kinds, adapter.dequantize)
            yield encode_sample(clip.clip_id, arrays, clip.label, adapter.targets(clip))

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
