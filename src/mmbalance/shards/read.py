"""Reading shards back: a WebDataset pipeline split by node and worker."""

from __future__ import annotations

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


def decode_sample(raw: dict) -> dict:
    """Raw tar members → {"key", "label", <array name>: np.ndarray}."""
    out = {"key": raw["__key__"], "label": int(raw["cls"])}
    for name, value in raw.items():
        if name.endswith(".npy"):
            out[name[:-4]] = np.load(io.BytesIO(value), allow_pickle=False)
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
