"""Training-time data: shard samples → batched tensors.

Each modality has a kind (recorded by the prepare step in the shard index):
- "spectrogram" [F, T] → [B, 1, F, T] float;
- "frames" [T, H, W, C] uint8, all stored frames of a clip → ``frames_per_clip`` of them picked at
  load time (random per epoch for training, fixed evenly spaced for evaluation, always in the
  stored, sorted order) → [B, n, C, H, W] float (ImageNet-normalised RGB, or de-quantised with the
  index's ``dequantize`` offset/scale, e.g. optical flow);
- "sequence" [L, D] → ``SequenceBatch`` (x [B, Lmax, D], mask [B, Lmax]).

Labels are [B] clip labels; for event localisation (a shard index with ``segments`` S) each clip
carries S segment labels (``targets``), and a batch's labels are the [B·S] segment labels in
clip-major order: the localisation models' rows are segments, so every loss, method and metric
reads one row per label.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmbalance.models import SequenceBatch
from mmbalance.shards import iter_samples, read_index, shard_urls

# ImageNet statistics: the papers normalise RGB frames with them.
MEAN = torch.tensor([0.485, 0.456, 0.406])
STD = torch.tensor([0.229, 0.224, 0.225])


@dataclass
class SplitData:
    """One split held in memory. ``arrays[m]``: [N, 1, F, T] spectrograms, [N, Tmax, H, W, C]
    padded frames or [N, Lmax, D] padded sequences; ``lengths[m]``: [N] stored frames / steps;
    ``labels``: [N], or [N, S] segment labels (event localisation)."""

    keys: list[str]
    labels: torch.Tensor
    arrays: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    info: dict

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, modalities: list[str]) -> "SplitData":
        """A view of the split holding only ``modalities`` (a model's); the tensors are shared."""
        return replace(self, arrays={m: self.arrays[m] for m in modalities},
                       lengths={m: v for m, v in self.lengths.items() if m in modalities})


def _pad(items: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack arrays of varying leading length into [N, Lmax, ...] (zero padded) and lengths [N]."""
    lmax = max(x.shape[0] for x in items)
    out = np.zeros((len(items), lmax, *items[0].shape[1:]), dtype=items[0].dtype)
    for i, x in enumerate(items):
        out[i, : x.shape[0]] = x
    return torch.from_numpy(out), torch.tensor([x.shape[0] for x in items])


def load_split(shard_dir: Path, split: str, modalities: list[str], pool_sizes: dict | None = None) -> SplitData:
    """Read every sample of ``split`` from its shards into memory.

    ``pool_sizes`` maps a spectrogram modality to the [F', T'] its encoder average-pools to first
    (``input_size``): pooling once here, not every step, gives the encoder the same input (its
    adaptive pool is then the identity) and keeps a 257×1004 split small in memory.
    Every DDP rank holds the whole split (the loop picks each rank's samples by index).
    """
    info = read_index(shard_dir)
    data = split_from_samples(iter_samples(shard_urls(shard_dir, split), by_node=False), modalities, info, pool_sizes)
    if not data.keys:
        raise ValueError(f"split {split!r} in {shard_dir} has no samples")
    return data


def split_from_samples(samples, modalities: list[str], info: dict, pool_sizes: dict | None = None) -> SplitData:
    """Decoded shard samples (``iter_samples``) → a ``SplitData``: the in-memory split, or one
    streamed batch (the streaming loader builds its batches with the same functions)."""
    keys, labels, per_mod = [], [], {m: [] for m in modalities}
    for sample in samples:
        keys.append(sample["key"])
        labels.append(sample_label(sample))
        for m in modalities:
            per_mod[m].append(sample[m])
    arrays, lengths = {}, {}
    if not keys:
        return SplitData(keys, torch.tensor(labels, dtype=torch.long), arrays, lengths, info)
    for m, items in per_mod.items():
        if info["modalities"][m]["kind"] == "spectrogram":
            arrays[m] = pool_spectrograms(items, (pool_sizes or {}).get(m))
        else:
            arrays[m], lengths[m] = _pad(items)
    return SplitData(keys, torch.tensor(np.array(labels)), arrays, lengths, info)


def segments_of(info: dict) -> int:
    """Labelled segments per clip of an event-localisation split (the shard index's
    ``segments``); 0 for clip classification."""
    return int(info.get("segments") or 0)


def sample_label(sample: dict):
    """A decoded sample's target: its per-segment labels [S] when it has them (event
    localisation), else its clip label."""
    targets = sample.get("targets")
    return sample["label"] if targets is None else targets


def pool_spectrograms(items: list[np.ndarray], size) -> torch.Tensor:
    """N [F, T] spectrograms → [N, 1, F, T] in their stored dtype (``size`` empty), or float32
    [N, 1, *size] average-pooled in chunks of 256. The in-memory splits, the streamed batches and
    the evaluate stage's test inputs are all pooled by this one function, so that every path
    feeds the encoders the same values."""
    if not size:
        return torch.from_numpy(np.stack(items))[:, None]
    chunks = [F.adaptive_avg_pool2d(torch.from_numpy(np.stack(items[i : i + 256]))[:, None].float(), tuple(size))
              for i in range(0, len(items), 256)]
    return torch.cat(chunks)


def frame_indices(counts: torch.Tensor, n: int, train: bool, gen: torch.Generator) -> torch.Tensor:
    """[B, n] indices into each clip's stored frames: random distinct (sorted) for training,
    evenly spaced segment centres for evaluation; clips with fewer than n frames repeat."""
    b = counts.shape[0]
    if train:
        rand = torch.rand(b, int(counts.max()), generator=gen)
        rand[torch.arange(rand.shape[1])[None, :] >= counts[:, None]] = 2.0  # never pick padding
        picks = rand.argsort(dim=1)[:, :n]
        if picks.shape[1] < n:
            picks = torch.cat([picks, picks[:, :1].expand(b, n - picks.shape[1])], dim=1)
        picks = torch.where(torch.arange(n)[None, :] < counts[:, None], picks, picks[:, :1])
        return picks.sort(dim=1).values
    centres = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # [n] in (0, 1)
    return (centres[None, :] * counts[:, None]).floor().long().clamp(max=counts[:, None] - 1)


def _frames_input(data: SplitData, m: str, idx: torch.Tensor, train: bool, gen: torch.Generator) -> torch.Tensor:
    """Picked frames as stored: [B, n, H, W, C] uint8 (``finish_batch`` makes them float)."""
    n = int(data.info.get("frames_per_clip", 1))
    pick = frame_indices(data.lengths[m][idx], n, train, gen)  # [B, n]
    arr = data.arrays[m]  # [N, T, H, W, C]
    # whole frames gathered as rows of [N * T, H, W, C] (``_rows``: by numpy on CPU, where torch's
    # advanced indexing copies uint8 element by element, ~40x slower for a batch of 224² frames)
    rows = (idx[:, None] * arr.shape[1] + pick).reshape(-1)  # [B * n]
    return _rows(arr.flatten(0, 1), rows).reshape(*pick.shape, *arr.shape[2:])  # [B, n, H, W, C]


def _rows(arr: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``arr[idx]`` (whole rows along dim 0). On CPU numpy's ``take`` copies rows ~25x faster than
    torch's advanced indexing of fp16 / uint8 data, which the loader pays every batch."""
    if arr.device.type != "cpu" or arr.dtype == torch.bfloat16:  # numpy has no bfloat16
        return arr[idx]
    return torch.from_numpy(arr.numpy().take(idx.numpy(), axis=0))


def _sequence_input(x: torch.Tensor, lengths: torch.Tensor) -> SequenceBatch:
    """Padded sequences [B, L, D] (L = the batch's longest) and lengths [B] → float x and mask."""
    return SequenceBatch(x.float(), torch.arange(x.shape[1])[None, :] < lengths[:, None])


def _finish_frames(x: torch.Tensor, entry: dict) -> torch.Tensor:
    """[B, n, H, W, C] uint8 → [B, n, C, H, W] float: ImageNet-normalised RGB, or de-quantised
    with the index's ``dequantize`` offset/scale (e.g. optical flow)."""
    x = x.permute(0, 1, 4, 2, 3).float()  # [B, n, C, H, W]
    deq = entry.get("dequantize")
    if deq is not None:
        return (x - float(deq["offset"])) * float(deq["scale"])
    x = x.div_(255.0)
    if x.shape[2] == 3:
        mean, std = MEAN.to(x.device), STD.to(x.device)
        x = (x - mean[:, None, None]) / std[:, None, None]
    return x


def finish_batch(inputs: dict, info: dict) -> dict:
    """Model inputs from ``make_batch(..., raw=True)`` output, on whatever device it now sits:
    frames converted and normalised, spectrograms to float. Converting after the move sends
    uint8 frames / fp16 spectrograms to a GPU (2-4x fewer bytes) and normalises them there."""
    out = {}
    for m, x in inputs.items():
        kind = info["modalities"][m]["kind"]
        if kind == "frames":
            out[m] = _finish_frames(x, info["modalities"][m])
        elif kind == "spectrogram":
            out[m] = x.float()
        else:
            out[m] = x
    return out


def make_batch(data: SplitData, idx: torch.Tensor, train: bool, gen: torch.Generator,
               raw: bool = False) -> tuple[dict, torch.Tensor]:
    """Model inputs for the samples ``idx``: ({modality: input}, labels [B]).

    ``raw=True`` leaves frames uint8 [B, n, H, W, C] and spectrograms in their stored dtype, for
    ``finish_batch`` to convert after the batch has moved to its device.
    """
    inputs = {}
    for m, arr in data.arrays.items():
        kind = data.info["modalities"][m]["kind"]
        if kind == "frames":
            inputs[m] = _frames_input(data, m, idx, train, gen)
        elif kind == "sequence":
            lengths = data.lengths[m][idx]
            inputs[m] = _sequence_input(_rows(arr[:, : int(lengths.max())], idx), lengths)
        else:
            inputs[m] = _rows(arr, idx)
    # [B], or [B, S] segment labels → [B·S] (clip-major, the localisation models' row order)
    return (inputs if raw else finish_batch(inputs, data.info)), data.labels[idx].reshape(-1)


def _picked_frames(items: list[np.ndarray], n: int, train: bool, gen: torch.Generator) -> torch.Tensor:
    """[B, n, H, W, C] uint8: each clip's picked frames (``frame_indices``) copied once, straight
    from its stored [T, H, W, C] array into the batch, without padding the batch's frames first."""
    pick = frame_indices(torch.tensor([x.shape[0] for x in items]), n, train, gen).numpy()  # [B, n]
    out = np.empty((len(items), n, *items[0].shape[1:]), dtype=items[0].dtype)
    for row, x, p in zip(out, items, pick, strict=True):
        np.take(x, p, axis=0, out=row)
    return torch.from_numpy(out)


def batch_from_samples(samples: list[dict], modalities: list[str], info: dict, pool_sizes: dict | None,
                       train: bool, gen: torch.Generator) -> tuple[dict, torch.Tensor, list[str]]:
    """One streamed batch of decoded shard samples → (raw inputs, labels [B], keys): the tensors
    ``make_batch(split_from_samples(samples), arange(B), raw=True)`` gives, drawing the same
    frame picks from ``gen`` in the same (modality) order, but copying each kept value once."""
    inputs = {}
    for m in modalities:
        items, kind = [s[m] for s in samples], info["modalities"][m]["kind"]
        if kind == "frames":
            inputs[m] = _picked_frames(items, int(info.get("frames_per_clip", 1)), train, gen)
        elif kind == "spectrogram":
            inputs[m] = pool_spectrograms(items, (pool_sizes or {}).get(m))
        else:  # padded to the batch's longest sequence, as make_batch cuts it
            inputs[m] = _sequence_input(*_pad(items))
    labels = torch.tensor(np.array([sample_label(s) for s in samples])).reshape(-1)  # [B] or [B·S]
    return inputs, labels, [s["key"] for s in samples]


def batches(data: SplitData, batch_size: int, train: bool, gen: torch.Generator):
    """Yield (inputs, labels) over the split; shuffled when training."""
    for idx in index_batches(len(data), batch_size, train, gen):
        yield make_batch(data, idx, train, gen)


def index_batches(n: int, batch_size: int, train: bool, order_gen: torch.Generator, rank: int = 0, world: int = 1,
                  pad: bool = True):
    """Sample indices [b] of each step. One permutation (``order_gen``, the same on every rank) is
    cut into global batches of ``batch_size``; DDP rank r takes every world-th sample of each
    global batch, so every rank runs the same number of steps and each sample is used once per
    epoch. A last global batch smaller than ``world`` leaves some rank empty: with ``pad`` it
    repeats the batch's first sample (training keeps its ranks in step), else it is skipped."""
    order = torch.randperm(n, generator=order_gen) if train else torch.arange(n)
    for start in range(0, n, batch_size):
        chunk = order[start : start + batch_size]
        mine = chunk[rank::world] if world > 1 else chunk
        if len(mine) == 0:
            if not pad:
                continue
            mine = chunk[:1]
        yield mine
