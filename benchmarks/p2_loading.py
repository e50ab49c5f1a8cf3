"""P2: training-time loading, samples/s: the project's shards vs the reference per-file folders.

Both sides produce the same batches for one epoch over the training split, in one process:
spectrogram [B, 1, 257, 299] float and ``frames_per_clip`` frames [B, n, 3, S, S] float,
ImageNet-normalised, S = ``datasets.cremad.frame_size``.

- **project**: what one epoch of a training run waits for with the in-memory loader: the run
  reads the split's shards into memory once (``mmbalance.train.data.load_split``, timed on its
  own and shared by the run's ``train.epochs`` epochs), then each epoch makes its batches
  (random frame pick per clip) up to the hand-off to the training device, where the float
  conversion and ImageNet normalisation run; for information also a one-epoch run (load +
  batches). The streaming loader re-reads the shards every epoch, and, for information, the
  batches finished on the CPU;
- **per-file** (the repositories' ``Dataset.__getitem__``): one ``Audio-299/<clip>.pkl`` unpickled
  per sample, the clip's frame folder listed (sorted), random frames opened with PIL, resized to
  S x S, ``ToTensor`` + ``Normalize``; a ``DataLoader`` (no worker processes, as the project
  side has none) batches them. The folders are the P1 per-file extractor's output.

Usage: python benchmarks/p2_loading.py --raw build/bench/raw --work build/bench/p1
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np

from common import (DATASET, Measurement, interleaved, median, paired_ratio, prepare_recipe, run_standalone,
                    scan_options)


class PerFileDataset:
    """The reference repositories' CREMA-D dataset over per-file folders (see module docstring)."""

    def __init__(self, root: Path, clips: list, frame_size: int, frames_per_clip: int) -> None:
        from torchvision import transforms

        self.root, self.clips, self.n = root, clips, frames_per_clip
        self.transform = transforms.Compose([
            transforms.Resize((frame_size, frame_size)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        clip = self.clips[i]
        with open(self.root / "Audio-299" / f"{clip.clip_id}.pkl", "rb") as fh:
            spec = torch.from_numpy(np.asarray(pickle.load(fh), dtype=np.float32))[None]  # [1, F, T]
        folder = self.root / "Image-01-FPS" / clip.clip_id
        names = sorted(os.listdir(folder))
        picks = sorted(random.sample(range(len(names)), min(self.n, len(names))))
        frames = [self.transform(Image.open(folder / names[k]).convert("RGB")) for k in picks]
        return spec, torch.stack(frames), clip.label  # [1, F, T], [n, 3, S, S], int


def loaded_split(shards: Path):
    """The training split read into memory once (``load_split``), as a training run does."""
    from mmbalance.train.data import load_split

    return load_split(shards, "train", ["audio", "visual"])


def batches_epoch(data, batch_size: int, seed: int, on_device: bool = True) -> int:
    """One training epoch of batches from an already-loaded split (what each epoch after the
    run's one ``load_split`` waits for); returns the samples seen.

    ``on_device``: stop where the Trainer hands a batch to the training device (uint8 frames,
    stored spectrograms: ``make_batch(raw=True)``); the float conversion and ImageNet
    normalisation then run on the GPU (``finish_batch``). Without it the batch is finished on
    the CPU, as a CPU-only run does.
    """
    import torch

    from mmbalance.train.data import index_batches, make_batch

    gen, seen = torch.Generator().manual_seed(seed), 0
    for idx in index_batches(len(data), batch_size, True, gen):
        seen += len(make_batch(data, idx, True, gen, raw=on_device)[1])
    return seen


def project_epoch(shards: Path, batch_size: int, seed: int, on_device: bool = False) -> int:
    """A one-epoch run: load_split + one training epoch of batches; returns the samples seen."""
    return batches_epoch(loaded_split(shards), batch_size, seed, on_device)


def per_epoch_of_run(load: list[float], batches: list[float], epochs: int) -> list[float]:
    """Seconds per epoch of an ``epochs``-epoch run, per round: the one load shared by the epochs."""
    return [a / epochs + b for a, b in zip(load, batches, strict=True)]


def stream_epoch(shards: Path, batch_size: int, seed: int) -> int:
    """One training epoch of the streaming loader (``train.loader: stream``, the paper profile's):
    the shards read again, shuffled through a buffer, raw batches handed to the device."""
    from mmbalance.train.stream import StreamLoader, stream_split

    loader = StreamLoader(stream_split(shards, "train", ["audio", "visual"]), {"num_workers": 0}, seed, False)
    return sum(len(labels) for _, labels, _ in loader.batches(batch_size, True, False, 0))


def per_file_epoch(dataset: PerFileDataset, batch_size: int, seed: int) -> int:
    """One shuffled epoch through a DataLoader over the per-file dataset; returns samples seen."""
    import torch

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(seed))
    return sum(len(labels) for _, _, labels in loader)


def ensure_inputs(raw: Path, work: Path, params: dict) -> None:
    """Shards and per-file folders of P1 under ``work`` (made here when P2 runs on its own)."""
    from p1_prepare import reference_extract

    from mmbalance.datasets import get_dataset
    from mmbalance.prepare import prepare

    recipe = prepare_recipe(params)
    if not (work / "shards" / "index.json").is_file():
        prepare(DATASET, raw, work / "shards", recipe, scan_options(params), 1, int(params["prepare"]["shard_max_count"]))
    if not (work / "per_file" / "Audio-299").is_dir():
        clips, _ = get_dataset(DATASET).scan(raw, **scan_options(params))
        reference_extract(clips, work / "per_file", recipe)


def run(raw: Path, work: Path, params: dict, repeats: int) -> list[Measurement]:
    """Time both loaders over the same training clips, interleaved."""
    import torch

    from mmbalance.datasets import get_dataset

    ensure_inputs(raw, work, params)
    torch.set_num_threads(int(params["train"].get("num_threads", 1)))
    clips, _ = get_dataset(DATASET).scan(raw, **scan_options(params))
    train = [c for c in clips if c.split == "train"]
    recipe, batch = prepare_recipe(params), int(params["train"]["batch_size"])
    per_file = PerFileDataset(work / "per_file", train, int(recipe["frame_size"]), get_dataset(DATASET).frames_per_clip)
    epochs = int(params["train"]["epochs"])
    preloaded = loaded_split(work / "shards")
    runners = {"project": lambda: project_epoch(work / "shards", batch, 0, on_device=True),
               "project_load": lambda: loaded_split(work / "shards"),
               "project_batches": lambda: batches_epoch(preloaded, batch, 0),
               "stream": lambda: stream_epoch(work / "shards", batch, 0),
               "project_cpu": lambda: project_epoch(work / "shards", batch, 0),
               "per_file": lambda: per_file_epoch(per_file, batch, 0)}
    t = interleaved(runners, repeats)
    t["project_run"] = per_epoch_of_run(t.pop("project_load"), t.pop("project_batches"), epochs)
    rate = {k: len(train) / median(v) for k, v in t.items()}
    note = f"per-file: {rate['per_file']:.0f} samples/s; {len(train)} training clips, batch {batch}, frames {recipe['frame_size']}², median of {repeats}"
    return [Measurement("P2", f"in-memory loader, one epoch of a {epochs}-epoch run (the split loaded once per run, "
                        f"its load time shared by the epochs; batches up to the device hand-off) vs per-file folders (DataLoader)",
                        rate["project_run"], "samples/s", paired_ratio(t["per_file"], t["project_run"]), "speed-up",
                        (">=", 5.0), note + f"; {epochs} = train.epochs; float conversion and normalisation run on the training device"),
            Measurement("P2", "the same for a one-epoch run (load_split + batches every epoch)",
                        rate["project"], "samples/s", paired_ratio(t["per_file"], t["project"]), "speed-up",
                        None, "the load is then the epoch's main cost"),
            Measurement("P2", "streaming loader (shards re-read every epoch, no worker processes) vs per-file folders",
                        rate["stream"], "samples/s", paired_ratio(t["per_file"], t["stream"]), "speed-up", (">=", 5.0),
                        "the paper profile's loader; raw batches handed to the device"),
            Measurement("P2", "the same with the batches finished on the CPU (a CPU-only run)",
                        rate["project_cpu"], "samples/s", paired_ratio(t["per_file"], t["project_cpu"]), "speed-up",
                        None, "uint8 → float and ImageNet normalisation of 224² frames on the CPU, which the per-file side also does")]


if __name__ == "__main__":
    run_standalone(run, __doc__, "P1's scratch folder (shards/, per_file/)", 5)
