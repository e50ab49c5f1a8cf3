"""Training throughput of the paper-profile model on one GPU, where the step's time goes, and the
epoch time it gives on paper-sized CREMA-D: fp32 vs bf16 autocast (+ channels-last, which the
runtime applies on CUDA), optionally with compiled encoders (``train.compile``).

ResNet-18 audio (1×257×299 spectrogram) and visual (1 of 3 stored 224×224 frames) encoders,
concat head (or ``--method``), batch 64, SGD; random in-memory data shaped like the shards
(fp16 spectrograms, uint8 frames), so no dataset is needed. Batches go through the real
Trainer: assembled on the host by its prefetch thread (``train.prefetch``), moved to the GPU
and converted there. Per setting:

- samples/s over the timed epochs (after one warm-up epoch, reported on its own: it holds
  cuDNN's autotuning and, with ``--compile``, the compilation);
- compute-only samples/s: the same number of steps on one batch already on the GPU (no host
  work, no copies), so ``1 - rate / compute-only rate`` is the share of the step the GPU waits
  for data (the data-wait column);
- GPU utilisation: NVML's (``torch.cuda.utilization``, or ``nvidia-smi``) sampled every 0.1 s
  over the timed epochs, n/a where neither is available;
- host synchronisations per step: the operations CUDA's sync debug mode
  (``torch.cuda.set_sync_debug_mode("warn")``) flags in the loop's and the method's step, from
  the difference between 2k and k steps on one device-resident batch (the epoch's own end-of-epoch
  reads cancel out); 0 is the goal (docs/performance.md, "Host reads in the step").

The epoch time is ``--epoch-samples`` (6,698: CREMA-D's training split in the papers) divided by
the measured rate; the IPRM paper reports 55 s per epoch for concat on an RTX 4090.

    python benchmarks/gpu_step.py --samples 2560 --epochs 3 --compile --out reports/performance_gpu.md
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from mmbalance.system import device_name
from mmbalance.train.data import SplitData
from mmbalance.train.loop import Trainer
from mmbalance.train.run import build_run

FRAMES = 3  # stored 1-fps frames of a 3-s clip; the model sees frames_per_clip of them
INFO = {"classes": list("abcdef"), "frames_per_clip": 1, "dataset": "synthetic",
        "modalities": {"audio": {"kind": "spectrogram", "shape": [257, 299]},
                       "visual": {"kind": "frames", "shape": [None, 224, 224, 3]}}}
MODEL = {"fusion": "concat", "encoders": {"spectrogram": {"name": "resnet18"}, "frames": {"name": "resnet18"}}}


@dataclass
class Measurement:
    """One setting's numbers."""

    method: str
    precision: str
    compiled: bool
    rate: float  # samples/s through the Trainer
    compute_rate: float  # samples/s on one device-resident batch
    warmup_s: float  # the first epoch (autotuning, compilation)
    utilisation: float | None  # mean GPU utilisation over the timed epochs, %
    syncs_per_step: float | None = None  # host synchronisations CUDA flags per step (None off CUDA)

    @property
    def data_wait(self) -> float:
        """Share of the step the GPU is not busy with the step's own work."""
        return max(0.0, 1.0 - self.rate / self.compute_rate)


def synthetic(n: int, info: dict = INFO, frames: int = FRAMES) -> SplitData:
    """``n`` random clips shaped like ``info``'s shards (fp16 spectrograms, uint8 frames)."""
    spec = info["modalities"]["audio"]["shape"]
    size = info["modalities"]["visual"]["shape"][1]
    arrays = {"audio": torch.randn(n, 1, *spec).half(),
              "visual": torch.randint(0, 255, (n, frames, size, size, 3), dtype=torch.uint8)}
    lengths = {"visual": torch.full((n,), frames, dtype=torch.long)}
    return SplitData([f"c{i:05d}" for i in range(n)], torch.arange(n) % len(info["classes"]), arrays, lengths, info)


def trainer_for(split: SplitData, precision: str, method: str, device: str, compiled: bool,
                model_cfg: dict = MODEL, info: dict = INFO, epochs: int = 3) -> Trainer:
    """The real Trainer over ``split`` with the paper profile's step settings."""
    cfg = {"epochs": epochs, "batch_size": 64, "optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "weight_decay": 1e-4,
           "device": device, "precision": precision, "compile": compiled}
    torch.manual_seed(0)
    m, model = build_run(info, method, {"alpha": 0.8} if method == "ogm_ge" else {}, model_cfg, epochs)
    return Trainer(model, m, {"train": split}, cfg, 0, method)


def _sync(trainer: Trainer) -> None:
    if trainer.rt.cuda:
        torch.cuda.synchronize()


def timed_epochs(trainer: Trainer, epochs: int) -> float:
    """Seconds for ``epochs`` calls of ``train_epoch``."""
    _sync(trainer)
    start = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch()
    _sync(trainer)
    return time.perf_counter() - start


def compute_only_seconds(trainer: Trainer, steps: int) -> float:
    """Seconds for ``steps`` training steps on one batch already on the device: the step's own
    work, no batch assembly and no host-to-device copy."""
    batch = next(iter(trainer._train_batches()))
    original = trainer._train_batches
    trainer._train_batches = lambda: (batch for _ in range(steps))
    try:
        return timed_epochs(trainer, 1)
    finally:
        trainer._train_batches = original


def flagged_syncs(trainer: Trainer, steps: int) -> int:
    """Synchronising operations CUDA's sync debug mode warns about in one epoch of ``steps`` steps
    on one device-resident batch."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            compute_only_seconds(trainer, steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def syncs_per_step(trainer: Trainer, steps: int = 4) -> float | None:
    """Host synchronisations per training step: flagged in 2·``steps`` steps minus in ``steps``
    steps (the once-per-epoch reads cancel), per step; None off CUDA or when the count fails (the
    reason printed, the measurement kept)."""
    if not trainer.rt.cuda:
        return None
    try:
        return (flagged_syncs(trainer, 2 * steps) - flagged_syncs(trainer, steps)) / steps
    except (RuntimeError, AttributeError) as err:
        print(f"gpu_step: host synchronisations not counted: {err}", file=sys.stderr, flush=True)
        return None


class UtilisationSampler:
    """Mean GPU utilisation (%) sampled every ``period`` seconds in a thread; None without NVML
    and without nvidia-smi."""

    def __init__(self, period: float = 0.1) -> None:
        self.period, self.samples, self.stop = period, [], threading.Event()
        self.read = _utilisation_reader()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UtilisationSampler:
        if self.read is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        while not self.stop.wait(self.period):
            value = self.read()
            if value is not None:
                self.samples.append(value)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def _utilisation_reader():
    """A function returning the current GPU's utilisation in %, or None when nothing can read it."""
    if not torch.cuda.is_available():
        return None
    try:
        torch.cuda.utilization()
        return lambda: float(torch.cuda.utilization())
    except Exception:  # no pynvml: fall back to nvidia-smi
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    index = str(torch.cuda.current_device())

    def read():
        out = subprocess.run([smi, "-i", index, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5)
        return float(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None

    return read


def measure(split: SplitData, precision: str, epochs: int, method: str, device: str = "cuda", compiled: bool = False,
            model_cfg: dict = MODEL, info: dict = INFO) -> Measurement:
    """One setting: a warm-up epoch, ``epochs - 1`` timed epochs under the utilisation sampler,
    then as many compute-only steps as the timed epochs took."""
    trainer = trainer_for(split, precision, method, device, compiled, model_cfg, info, epochs)
    warmup = timed_epochs(trainer, 1)
    with UtilisationSampler() as sampler:
        seconds = timed_epochs(trainer, epochs - 1)
    steps = (epochs - 1) * -(-len(split) // int(trainer.cfg["batch_size"]))
    compute = compute_only_seconds(trainer, steps)
    n = (epochs - 1) * len(split)
    return Measurement(method, precision, compiled, n / seconds, n / compute, warmup, sampler.mean, syncs_per_step(trainer))


def report(rows: list[Measurement], args) -> str:
    """Markdown: the machine, then per setting samples/s, the data-wait share, GPU utilisation,
    the warm-up epoch and the implied CREMA-D epoch time."""
    util = lambda u: f"{u:.0f} %" if u is not None else "n/a"  # noqa: E731
    syncs = lambda n: f"{n:g}" if n is not None else "n/a"  # noqa: E731
    lines = ["# GPU training throughput (paper profile)", "",
             f"Generated by `python benchmarks/gpu_step.py` on {device_name()} "
             f"(torch {torch.__version__}, {platform.python_version()}); random data at paper shapes, "
             f"{args.samples} samples per epoch, {args.epochs - 1} timed epoch(s) after one warm-up epoch "
             "(its time, with cuDNN's autotuning and any compilation, in its own column). Data wait: "
             "1 − samples/s ÷ compute-only samples/s (the same steps on one batch already on the GPU). Host syncs: "
             "the operations per step that CUDA's sync debug mode flags (loop and method).", "",
             "| method | precision | encoders | samples/s | compute-only samples/s | data wait | GPU utilisation "
             "| host syncs/step | warm-up epoch | epoch time at {:,} samples |".format(args.epoch_samples),
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.method} | {r.precision} | {'compiled' if r.compiled else 'eager'} | {r.rate:.0f} | {r.compute_rate:.0f} "
              f"| {100 * r.data_wait:.0f} % | {util(r.utilisation)} | {syncs(r.syncs_per_step)} | {r.warmup_s:.1f} s "
              f"| {args.epoch_samples / r.rate:.1f} s |" for r in rows]
    lines += ["", "Reference: the IPRM paper reports 55 s per epoch for concat on CREMA-D on an RTX 4090."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1280, help="random clips held in memory")
    ap.add_argument("--epochs", type=int, default=3, help="epochs, the first one a warm-up")
    ap.add_argument("--method", nargs="+", default=["concat"])
    ap.add_argument("--compile", action="store_true", help="also measure with compiled encoders (train.compile)")
    ap.add_argument("--epoch-samples", type=int, default=6698, help="training clips of the epoch to extrapolate to")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_step: no CUDA GPU visible (this benchmark measures the paper profile on a GPU)")
    torch.backends.cudnn.benchmark = True
    split = synthetic(args.samples)
    rows = []
    for method in args.method:
        for compiled in (False, True) if args.compile else (False,):
            for precision in ("fp32", "bf16"):
                r = measure(split, precision, args.epochs, method, compiled=compiled)
                rows.append(r)
                print(f"{device_name()} {method} {precision} {'compiled' if compiled else 'eager'}: "
                      f"{r.rate:.0f} samples/s (compute-only {r.compute_rate:.0f}, data wait {100 * r.data_wait:.0f} %, "
                      f"GPU {r.utilisation if r.utilisation is not None else 'n/a'} %, host syncs/step {r.syncs_per_step}), "
                      f"warm-up {r.warmup_s:.1f} s", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(rows, args))


if __name__ == "__main__":
    main()
