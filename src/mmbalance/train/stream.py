"""Streaming loader (``train.loader: stream``): batches read from the WebDataset shards by
torch DataLoader workers, for splits that do not fit in memory (the paper profile).

Shards are split by DDP rank and by loader worker (``mmbalance.shards.iter_samples``), so each
sample is read once per epoch across all processes. Batches are built with the in-memory path's
own functions (``batch_from_samples``: same spectrogram pooling, frame sampling and
normalisation as ``make_batch``), so both loaders feed the model identical kinds of tensors.
Training order: the shard list is shuffled per epoch (the same order on every rank before the
node split), then samples pass a per-worker shuffle buffer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mmbalance.shards import iter_samples, read_index, shard_urls
from mmbalance.train import distributed as dist
from mmbalance.train.data import batch_from_samples


@dataclass
class StreamSplit:
    """A split read from shards on demand; ``len`` and ``info`` as for ``SplitData``."""

    shard_dir: Path
    split: str
    modalities: list[str]
    pool_sizes: dict
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.info["splits"][self.split]["count"])

    def select(self, modalities: list[str]) -> "StreamSplit":
        """The same split reading only ``modalities`` (the model's)."""
        return StreamSplit(self.shard_dir, self.split, list(modalities), self.pool_sizes, self.info)


def stream_split(shard_dir: Path, split: str, modalities: list[str], pool_sizes: dict | None = None) -> StreamSplit:
    """A ``StreamSplit`` over ``shard_dir``; an empty split is an error naming the folder."""
    info = read_index(shard_dir)
    if not info["splits"].get(split, {}).get("count"):
        raise ValueError(f"split {split!r} in {shard_dir} has no samples")
    return StreamSplit(shard_dir, split, list(modalities), dict(pool_sizes or {}), info)


class _Batches(IterableDataset):
    """Yields ready (inputs, labels, keys) batches from this worker's share of the shards."""

    def __init__(self, data: StreamSplit, batch_size: int, train: bool, by_node: bool, seed: int, buffer: int) -> None:
        super().__init__()
        self.data, self.batch_size, self.train, self.by_node = data, batch_size, train, by_node
        self.seed, self.buffer = seed, buffer
        self.epoch = mp.Value("i", 0)  # shared with persistent workers, which keep their own copy of self

    def _rng_seed(self) -> int:
        worker = get_worker_info()
        wid = worker.id if worker is not None else 0
        return ((self.seed * 1009 + self.epoch.value) * 1009 + dist.rank()) * 1009 + wid

    def _samples(self):
        urls = shard_urls(self.data.shard_dir, self.data.split)
        if not self.train:
            yield from iter_samples(urls, by_node=self.by_node)
            return
        random.Random(self.seed * 1009 + self.epoch.value).shuffle(urls)  # same shard order on every rank
        rng, buf = random.Random(self._rng_seed()), []
        for sample in iter_samples(urls, by_node=self.by_node):
            buf.append(sample)
            if len(buf) >= self.buffer:
                yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf

    def __iter__(self):
        gen = torch.Generator().manual_seed(self._rng_seed())  # frame sampling of this worker
        chunk = []
        for sample in self._samples():
            chunk.append(sample)
            if len(chunk) == self.batch_size:
                yield self._batch(chunk, gen)
                chunk = []
        if chunk:
            yield self._batch(chunk, gen)

    def _batch(self, samples: list[dict], gen: torch.Generator):
        # raw inputs: converted on the device (finish_batch)
        return batch_from_samples(samples, self.data.modalities, self.data.info, self.data.pool_sizes, self.train, gen)


class StreamLoader:
    """DataLoaders of one split, made once and reused every epoch (persistent workers)."""

    def __init__(self, data: StreamSplit, cfg: dict, seed: int, pin_memory: bool) -> None:
        self.data, self.cfg, self.seed, self.pin = data, cfg, seed, pin_memory
        self.loaders: dict[tuple, tuple[_Batches, DataLoader]] = {}

    def batches(self, batch_size: int, train: bool, by_node: bool, epoch: int):
        """(inputs, labels, keys) batches of this rank (``by_node``) or of the whole split."""
        key = (batch_size, train, by_node)
        if key not in self.loaders:
            ds = _Batches(self.data, batch_size, train, by_node, self.seed, int(self.cfg.get("shuffle_buffer", 1000)))
            workers = int(self.cfg.get("num_workers", 0))
            loader = DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=self.pin,
                                persistent_workers=workers > 0 and bool(self.cfg.get("persistent_workers", True)),
                                prefetch_factor=int(self.cfg.get("prefetch_factor", 2)) if workers > 0 else None)
            self.loaders[key] = (ds, loader)
        ds, loader = self.loaders[key]
        ds.epoch.value = epoch
        yield from loader
