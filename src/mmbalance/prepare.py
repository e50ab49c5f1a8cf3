"""The prepare step: a raw dataset root → per-split deterministic WebDataset shards + index JSON.

Per clip: audio → resample → tile/crop to the clip length → log-spectrogram [257, T];
video → the first frame of each 1/fps interval, resized → frames [T, H, W, 3] uint8.
A clip whose media cannot be decoded is skipped and listed, with its reason, in the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmbalance.datasets import Clip, get_dataset
from mmbalance.media.audio import MediaError, fit_length, load_audio, log_spectrogram
from mmbalance.media.video import read_frames
from mmbalance.shards import encode_sample, write_index, write_shards


@dataclass(frozen=True)
class Recipe:
    """How one clip becomes arrays (from the ``prepare`` and ``datasets.<name>`` params)."""

    sample_rate: int
    clip_seconds: float
    n_fft: int
    win_length: int
    hop_length: int
    window: str
    scaling: str
    normalize: bool
    frame_fps: float
    frame_size: int
    spec_dtype: str


def extract(clip: Clip, recipe: Recipe) -> dict[str, np.ndarray]:
    """Arrays of one clip keyed by modality: "audio" [F, T] spectrogram, "visual" [T, H, W, 3]."""
    wave = load_audio(clip.paths["audio"], recipe.sample_rate)
    wave = fit_length(wave, int(round(recipe.clip_seconds * recipe.sample_rate)))
    spec = log_spectrogram(wave, recipe.sample_rate, n_fft=recipe.n_fft, win_length=recipe.win_length,
                           hop_length=recipe.hop_length, window=recipe.window, scaling=recipe.scaling,
                           normalize=recipe.normalize)
    frames = read_frames(clip.paths["video"], fps=recipe.frame_fps, size=recipe.frame_size)
    return {"audio": spec.astype(recipe.spec_dtype), "visual": frames}


def _extract_one(args: tuple[Clip, Recipe]) -> tuple[Clip, dict | None, str | None]:
    clip, recipe = args
    try:
        return clip, extract(clip, recipe), None
    except MediaError as err:  # names the file and what is wrong
        return clip, None, str(err)


def _extracted(clips: list[Clip], recipe: Recipe, pool, desc: str):
    """(clip, arrays | None, error | None) in the order of ``clips``; parallel over clips when
    a worker pool is given (ordered ``imap``, so the output order never depends on timing)."""
    jobs = [(c, recipe) for c in clips]
    results = pool.imap(_extract_one, jobs, chunksize=8) if pool is not None else map(_extract_one, jobs)
    yield from tqdm(results, total=len(jobs), desc=desc, mininterval=2.0)


def prepare(dataset: str, root: Path, out_dir: Path, recipe: Recipe, split_options: dict, workers: int, shard_max_count: int) -> dict:
    """Scan ``root`` with the dataset's adapter, extract every clip, write shards and the index."""
    adapter = get_dataset(dataset)
    clips, skips = adapter.scan(root, **split_options)
    skipped = [{"clip_id": s.clip_id, "path": str(s.path), "reason": s.reason} for s in skips]
    index = {"dataset": dataset, "classes": list(adapter.classes), "modalities": {}, "splits": {}, "recipe": recipe.__dict__}
    pool = get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        _write_splits(adapter, clips, recipe, pool, out_dir, shard_max_count, index, skipped)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    index["skipped"] = sorted(skipped, key=lambda s: s["clip_id"])
    write_index(out_dir / "index.json", index)
    return index


def _write_splits(adapter, clips, recipe, pool, out_dir, shard_max_count, index, skipped) -> None:
    """Shards for each split in turn, sorted by clip id; updates ``index`` and ``skipped``."""
    dataset = adapter.name
    for split in ("train", "val", "test"):
        members = sorted((c for c in clips if c.split == split), key=lambda c: c.clip_id)
        if not members:
            continue
        per_class = {name: 0 for name in adapter.classes}

        def samples():
            for clip, arrays, error in _extracted(members, recipe, pool, f"{dataset}/{split}"):
                if error is not None:
                    skipped.append({"clip_id": clip.clip_id, "path": str(clip.paths), "reason": error})
                    continue
                per_class[adapter.classes[clip.label]] += 1
                _record_shapes(index["modalities"], arrays)
                yield encode_sample(clip.clip_id, arrays, clip.label)

        shards = write_shards(samples(), out_dir, split, shard_max_count)
        index["splits"][split] = {"count": sum(per_class.values()), "per_class": per_class, "shards": shards}


def _record_shapes(shapes: dict, arrays: dict[str, np.ndarray]) -> None:
    """Record each modality's array shape; a varying leading (frame) dimension is kept as a range."""
    for m, arr in arrays.items():
        entry = shapes.setdefault(m, {"shape": list(arr.shape), "dtype": str(arr.dtype), "frames": [arr.shape[0], arr.shape[0]]})
        if arr.ndim == 4:
            entry["frames"] = [min(entry["frames"][0], arr.shape[0]), max(entry["frames"][1], arr.shape[0])]
            entry["shape"] = [None, *arr.shape[1:]]
        else:
            entry.pop("frames", None)
