"""Training throughput of the paper-profile model on one GPU: fp32 vs bf16 autocast + channels-last.

ResNet-18 audio (1×257×299 spectrogram) and visual (one 224×224 frame) encoders, concat head,
batch 64, random in-memory data (no shards needed). Prints samples/s per setting.

    python benchmarks/gpu_step.py --samples 1280 --epochs 3
"""

import argparse
import time

import torch

from mmbalance.train.data import SplitData
from mmbalance.train.loop import Trainer
from mmbalance.train.run import build_run

INFO = {"classes": list("abcdef"), "frames_per_clip": 1, "dataset": "synthetic",
        "modalities": {"audio": {"kind": "spectrogram", "shape": [257, 299]}, "visual": {"kind": "frames", "shape": [None, 224, 224, 3]}}}
MODEL = {"fusion": "concat", "encoders": {"spectrogram": {"name": "resnet18"}, "frames": {"name": "resnet18"}}}


def synthetic(n: int) -> SplitData:
    """``n`` random clips shaped like paper-scale CREMA-D (fp16 spectrograms, uint8 frames)."""
    arrays = {"audio": torch.randn(n, 1, 257, 299).half(), "visual": torch.randint(0, 255, (n, 1, 224, 224, 3), dtype=torch.uint8)}
    return SplitData([f"c{i:05d}" for i in range(n)], torch.arange(n) % 6, arrays, {"visual": torch.ones(n, dtype=torch.long)}, INFO)


def throughput(split: SplitData, precision: str, epochs: int, method: str) -> float:
    """Samples/s of ``train_epoch`` after one warm-up epoch."""
    cfg = {"epochs": epochs, "batch_size": 64, "optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "weight_decay": 1e-4,
           "device": "cuda", "precision": precision}
    torch.manual_seed(0)
    m, model = build_run(INFO, method, {"alpha": 0.8} if method == "ogm_ge" else {}, MODEL, epochs)
    trainer = Trainer(model, m, {"train": split}, cfg, 0, method)
    trainer.train_epoch()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs - 1):
        trainer.train_epoch()
    torch.cuda.synchronize()
    return (epochs - 1) * len(split) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=1280)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--method", default="concat")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    split = synthetic(args.samples)
    for precision in ("fp32", "bf16"):
        print(f"{torch.cuda.get_device_name()} {args.method} {precision}: {throughput(split, precision, args.epochs, args.method):.0f} samples/s")


if __name__ == "__main__":
    main()
