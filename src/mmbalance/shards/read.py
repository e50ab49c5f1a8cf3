"""Reading shards back: a WebDataset pipeline split by node and worker."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import webdataset as wds


def read_index(shard_dir: Path) -> dict:
    """The index JSON written next to the shards."""
    return json.loads((shard_dir / "index.json").read_text())


def shard_urls(shard_dir: Path, split: str) -> list[str]:
    """Sorted shard paths of one split, as listed in the index."""
    index = read_index(shard_dir)
    return [str(shard_dir / name) for name in index["splits"][split]["shards"]]


@functools.lru_cache(maxsize=1024)
def _npy_header(head: bytes) -> tuple[tuple, bool, np.dtype, int] | None:
    """(shape, fortran_order, dtype, data offset) of a ``.npy`` header (magic + header dict), or
    None for a header version numpy parses itself. Cached: a split's arrays share a few headers,
    and parsing one (a Python literal) costs more than viewing the array."""
    fh = io.BytesIO(head)
    version = np.lib.format.read_magic(fh)
    if version not in ((1, 0), (2, 0)):
        return None
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(fh)
    if dtype.hasobject:
        raise ValueError("a shard array holds Python objects; shards store plain numeric arrays")
    return shape, fortran, dtype, fh.tell()


def _header_bytes(value: bytes) -> bytes:
    """The magic string and header of a ``.npy`` member (its length is stored after the magic)."""
    if value[6:7] == b"\x01":  # version 1.0: 2-byte little-endian length
        return value[: 10 + int.from_bytes(value[8:10], "little")]
    return value[: 12 + int.from_bytes(value[8:12], "little")]


def _npy(value: bytes) -> np.ndarray:
    """A ``.npy`` member's array as a read-only view of its bytes: ``np.load`` would copy every
    array once more, and each consumer (padding, stacking, frame picking) copies it anyway."""
    header = _npy_header(_header_bytes(value))
    if header is None:
        return np.load(io.BytesIO(value), allow_pickle=False)
    shape, fortran, dtype, offset = header
    arr = np.frombuffer(value, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)), offset=offset)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def decode_sample(raw: dict) -> dict:
    """Raw tar members → {"key", "label", <array name>: np.ndarray (read-only)}; a localisation
    sample's per-segment labels are the array ``targets``."""
    out = {"key": raw["__key__"], "label": int(raw["cls"])}
    for name, value in raw.items():
        if name.endswith(".npy"):
            out[name[:-4]] = _npy(value)
    return out


def iter_samples(urls: list[str], by_node: bool = True) -> Iterator[dict]:
    """Decoded samples in shard order. Shards are split across DDP nodes and loader workers
    (webdataset's splitters), so each sample is read exactly once per epoch overall;
    ``by_node=False`` gives every DDP rank all shards (still split across its loader workers)."""
    dataset = wds.WebDataset(
        urls,
        shardshuffle=False,
        nodesplitter=wds.split_by_node if by_node else None,
        workersplitter=wds.split_by_worker,
        empty_check=False,
    )
    for raw in dataset:
        yield decode_sample(raw)
