"""Deterministic WebDataset shard writing.

Same input → same bytes: samples sorted by key (the clip id), fixed tar member mtime, owner and
mode, no compression. Each shard is written under a temporary name and renamed when complete, so
an interrupted run never leaves a truncated shard that looks finished.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Iterable

import numpy as np
import webdataset as wds

# 2000-01-01T00:00:00Z: any constant works; a real date keeps `tar tv` readable.
FIXED_MTIME = 946684800.0
# the largest piece a member is copied in (tarfile reads it from the sample's bytes, zero-copy
# when the member is read whole, and writes it): larger members are written in several pieces
_MEMBER_MAX = 64 << 20


def encode_sample(key: str, arrays: dict[str, np.ndarray], label: int,
                  targets: np.ndarray | None = None) -> dict[str, bytes | str]:
    """Serialise one sample: each array as ``<name>.npy``, the label as ``cls`` and per-segment
    labels (event localisation), if any, as ``targets.npy``."""
    sample: dict[str, bytes | str] = {"__key__": key, "cls": str(int(label)).encode("ascii")}
    if targets is not None:
        arrays = {**arrays, "targets": np.asarray(targets, dtype=np.int64)}
    for name, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
        sample[f"{name}.npy"] = buf.getvalue()
    return sample


def write_shards(samples: Iterable[dict], out_dir: Path, prefix: str, max_count: int) -> list[str]:
    """Write encoded samples (already in sorted key order) to ``<prefix>-NNNNN.tar`` files.

    Returns the shard file names. Keys must be unique and sorted: both are checked, since a
    duplicate or unsorted key would make the output depend on input order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    writer, tmp, count, last_key = None, None, 0, None
    for sample in samples:
        key = sample["__key__"]
        if last_key is not None and key <= last_key:
            raise ValueError(f"shard keys must be unique and sorted: {key!r} after {last_key!r}")
        last_key = key
        if writer is None or count >= max_count:
            _finish(writer, tmp)
            name = f"{prefix}-{len(names):05d}.tar"
            names.append(name)
            tmp = out_dir / f".{name}.tmp"
            writer, count = _open(tmp), 0
        writer.write(sample)
        count += 1
    _finish(writer, tmp)
    return names


def _open(path: Path) -> wds.TarWriter:
    stream = open(path, "wb")
    writer = wds.TarWriter(stream, user="mmbalance", group="mmbalance", mode=0o444, encoder=False, mtime=FIXED_MTIME)
    # TarWriter opens the tar in stream mode ("w|"), which re-buffers every member through 10 KiB
    # pieces: each byte copied ~3 times in Python and ~60 writes per 600 KB clip. The shard file
    # is a plain file, so a plain "w" tar on it writes the same bytes (same headers, padding and
    # end blocks) with one write per member; the stream-mode object has written nothing yet.
    writer.tarstream = tarfile.open(fileobj=stream, mode="w", copybufsize=_MEMBER_MAX)
    return writer


def _finish(writer: wds.TarWriter | None, tmp: Path | None) -> None:
    if writer is None or tmp is None:
        return
    writer.close()
    writer.stream.close()
    os.replace(tmp, tmp.with_name(tmp.name[1:-4]))  # ".x.tar.tmp" → "x.tar", atomic on one filesystem


def write_index(path: Path, index: dict) -> None:
    """Write the shard index JSON (sorted keys, stable formatting) atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
