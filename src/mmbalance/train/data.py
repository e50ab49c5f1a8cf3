"""Training-time data: shard samples → batched tensors.

Samples hold a spectrogram [F, T] per audio-like modality and stored frames [T, H, W, C] per
visual-like modality. Frames are picked at load time: randomly per epoch for training, fixed
(evenly spaced centres) for evaluation, always from the sorted stored frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmbalance.shards import iter_samples, read_index, shard_urls

# ImageNet statistics: the papers normalise frames with them.
MEAN = torch.tensor([0.485, 0.456, 0.406])
STD = torch.tensor([0.229, 0.224, 0.225])


@dataclass
class SplitData:
    """One split held in memory. ``arrays[m]``: [N, 1, F, T] spectrograms or [N, Tmax, H, W, C]
    frames (padded); ``frame_counts[m]``: [N] stored frames per clip."""

    keys: list[str]
    labels: torch.Tensor
    arrays: dict[str, torch.Tensor]
    frame_counts: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.keys)


def load_split(shard_dir: Path, split: str, modalities: list[str]) -> SplitData:
    """Read every sample of ``split`` from its shards into memory."""
    keys, labels, per_mod = [], [], {m: [] for m in modalities}
    for sample in iter_samples(shard_urls(shard_dir, split)):
        keys.append(sample["key"])
        labels.append(sample["label"])
        for m in modalities:
            per_mod[m].append(sample[m])
    if not keys:
        raise ValueError(f"split {split!r} in {shard_dir} has no samples")
    arrays, counts = {}, {}
    for m, items in per_mod.items():
        if items[0].ndim == 2:  # spectrogram [F, T] → [N, 1, F, T]
            arrays[m] = torch.from_numpy(np.stack(items))[:, None]
        else:  # frames [T, H, W, C] → padded [N, Tmax, H, W, C]
            tmax = max(x.shape[0] for x in items)
            padded = np.zeros((len(items), tmax, *items[0].shape[1:]), dtype=items[0].dtype)
            for i, x in enumerate(items):
                padded[i, : x.shape[0]] = x
            arrays[m] = torch.from_numpy(padded)
            counts[m] = torch.tensor([x.shape[0] for x in items])
    return SplitData(keys, torch.tensor(labels), arrays, counts)


def dataset_info(shard_dir: Path) -> dict:
    """Classes, modalities and array shapes recorded by the prepare stage."""
    return read_index(shard_dir)


def frame_indices(counts: torch.Tensor, n: int, train: bool, gen: torch.Generator) -> torch.Tensor:
    """[B, n] indices into each clip's stored frames: random distinct (sorted) for training,
    evenly spaced segment centres for evaluation; clips with fewer than n frames repeat."""
    b = counts.shape[0]
    if train:
        rand = torch.rand(b, int(counts.max()), generator=gen)
        rand[torch.arange(rand.shape[1])[None, :] >= counts[:, None]] = 2.0  # never pick padding
        picks = rand.argsort(dim=1)[:, :n]
        picks = torch.where(torch.arange(n)[None, :] < counts[:, None], picks, picks[:, :1])
        return picks.sort(dim=1).values
    centres = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # [n] in (0, 1)
    return (centres[None, :] * counts[:, None]).floor().long().clamp(max=counts[:, None] - 1)


def make_batch(data: SplitData, idx: torch.Tensor, frames: int, train: bool, gen: torch.Generator) -> tuple[dict, torch.Tensor]:
    """Tensors for the samples ``idx``: {modality: input}, labels [B]."""
    inputs = {}
    for m, arr in data.arrays.items():
        x = arr[idx]
        if m in data.frame_counts:
            pick = frame_indices(data.frame_counts[m][idx], frames, train, gen)  # [B, n]
            x = x[torch.arange(len(idx))[:, None], pick]  # [B, n, H, W, C]
            x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)  # [B, n, C, H, W]
            if x.shape[2] == 3:
                x = (x - MEAN[:, None, None]) / STD[:, None, None]
            inputs[m] = x
        else:
            inputs[m] = x.float()
    return inputs, data.labels[idx]


def batches(data: SplitData, batch_size: int, frames: int, train: bool, gen: torch.Generator):
    """Yield (inputs, labels) over the split; shuffled when training."""
    order = torch.randperm(len(data), generator=gen) if train else torch.arange(len(data))
    for start in range(0, len(data), batch_size):
        yield make_batch(data, order[start : start + batch_size], frames, train, gen)
