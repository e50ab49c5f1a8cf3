"""P3: training step time of each method divided by concat's, through the real Trainer and hooks.

Same data (P1's shards, frames resized to the mini model's ``--frame-size`` 32; the training split
tiled to ``--steps`` batches), the params' model and ``train`` blocks, one batch size, CPU with
``train.num_threads`` threads. Per method and round: a fresh model and method (seed 0), one
untimed warm-up epoch in the method's active phase (after its warm-up / start epoch: GMM-AL
adaptive, OGM modulating), then timed epochs (whole hook periods, at least 32 steps) exactly as ``fit`` runs them (``on_epoch_start``,
``train_epoch``, ``on_epoch_end``; evaluation excluded, it is the same for every method). A method
whose epoch hooks do work every k epochs is timed over k epochs, so that work is amortised as in a
run: GMM-AL's GMM fit (every ``fit_every`` epoch; with ``gap_source: pass`` also its gap pass over the training split),
G-Blending's loss measurements on train and val (every ``super_epoch`` epochs). The tiled
training split keeps the real ratio of per-epoch hook work to steps (both scale with its size);
val is a ninth of it, as in CREMA-D.

Usage: python benchmarks/p3_step_time.py --work build/bench/p1
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from common import Measurement, bench_params, median, paired_ratio

# method run → goal on its step time / concat's (None: reported without a goal)
GOALS: dict[str, float | None] = {
    "ogm": 1.05, "opm": 1.05, "iprm": 1.10, "arl": 1.15, "gmm_al": 1.10, "g_blending": 1.5,
    "ogm_ge": None, "opm_ogm": None, "agm": None,
}


def shrink_frames(split, size: int):
    """Frames resized (area) to size x size: the mini model's input, whatever size P1 stored."""
    import torch.nn.functional as F

    arrays = dict(split.arrays)
    x = arrays["visual"]  # [N, T, H, W, C] uint8
    n, t, h, w, c = x.shape
    if (h, w) != (size, size):
        y = F.interpolate(x.reshape(n * t, h, w, c).permute(0, 3, 1, 2).float(), size=(size, size), mode="area")
        arrays["visual"] = y.round().clamp(0, 255).to(x.dtype).permute(0, 2, 3, 1).reshape(n, t, size, size, c)
    return replace(split, arrays=arrays)


def tiled(split, size: int):
    """The split's samples repeated (in order) to exactly ``size`` samples."""
    import torch

    idx = torch.arange(size) % len(split)
    return replace(split, keys=[split.keys[i] for i in idx.tolist()], labels=split.labels[idx],
                   arrays={m: a[idx] for m, a in split.arrays.items()},
                   lengths={m: c[idx] for m, c in split.lengths.items()})


def active_epoch(cfg: dict) -> int:
    """First epoch in which the method does its work (warm-up / start / modulation epochs)."""
    keys = ("warmup_epochs", "start_epoch", "modulation_starts")
    return max([int(cfg[k]) for k in keys if cfg.get(k) is not None] + [0])


def hook_period(cfg: dict) -> int:
    """Epochs between the method's periodic epoch-hook work (1 if it has none)."""
    return max(1, int(cfg.get("super_epoch") or cfg.get("fit_every") or 1))


def time_method(run: str, params: dict, info: dict, splits: dict, min_steps: int = 32) -> float:
    """Seconds per training step of ``run`` (hook work amortised over its period), timed over
    whole periods and at least ``min_steps`` steps: a mini step is ~40 ms, and a few steps alone
    let one scheduler hiccup decide a 5 % goal."""
    from mmbalance.params import resolve_run
    from mmbalance.train.loop import Trainer
    from mmbalance.train.run import build_run, seed_everything

    name, cfg, model_cfg = resolve_run(params, run)
    start, period = active_epoch(cfg), hook_period(cfg)
    seed_everything(0)
    method, model = build_run(info, name, cfg, model_cfg, start + period + 2)
    trainer = Trainer(model, method, splits, dict(params["train"]), 0, run)

    def epoch(e: int) -> None:
        method.ctx.epoch, method.ctx.logs = e, {}
        method.on_epoch_start(e, trainer)
        trainer.train_epoch()
        method.on_epoch_end(e, trainer)

    per_epoch = -(-len(splits["train"]) // int(params["train"]["batch_size"]))
    epochs = period * max(1, -(-min_steps // (period * per_epoch)))  # whole periods, ≥ min_steps steps
    epoch(start)  # warm-up: first-call costs, optimizer state, one-off set-up (GMM-AL's reset)
    t0 = time.perf_counter()
    for e in range(start + 1, start + 1 + epochs):
        epoch(e)
    return (time.perf_counter() - t0) / (epochs * per_epoch)


def run(work: Path, params: dict, repeats: int, steps: int, methods: list[str], frame_size: int) -> list[Measurement]:
    """Rounds of (concat, method) pairs; each ratio is the median over rounds of the method's
    time over its paired concat time."""
    import torch

    from mmbalance.shards import read_index
    from mmbalance.train.data import load_split
    from mmbalance.train.run import pool_sizes

    torch.set_num_threads(int(params["train"].get("num_threads", 1)))
    shards = work / "shards"
    info = read_index(shards)
    sizes = pool_sizes(info, params["model"])
    batch = int(params["train"]["batch_size"])
    mods = list(info["modalities"])
    train = tiled(shrink_frames(load_split(shards, "train", mods, sizes), frame_size), steps * batch)
    val = tiled(shrink_frames(load_split(shards, "val", mods, sizes), frame_size), max(1, steps * batch // 9))
    splits = {"train": train, "val": val}
    # Each method is timed right next to a concat timing of its own (order alternating by round):
    # a pair is ~4 s apart, where one concat per round left up to ~20 s between the two sides of a
    # ratio and a 5 % goal at the mercy of the machine's drift.
    times: dict[str, list[float]] = {r: [] for r in methods}
    refs: dict[str, list[float]] = {r: [] for r in methods}  # the concat timing paired with each
    for r in range(repeats):
        for run_name in methods:
            pair = ("concat", run_name) if r % 2 == 0 else (run_name, "concat")
            got = {name: time_method(name, params, info, splits) for name in pair}
            times[run_name].append(got[run_name])
            refs[run_name].append(got["concat"])
    base = median([t for ts in refs.values() for t in ts])
    out = [Measurement("P3", "concat", base * 1000, "ms/step", 1.0, "× concat", None,
                       f"batch {batch}, {steps} steps/epoch, {torch.get_num_threads()} thread(s), "
                       f"frames {frame_size}², median of {repeats} rounds; each method paired with "
                       f"an adjacent concat timing")]
    for run_name in methods:
        goal = GOALS.get(run_name)
        cfg = params["methods"].get(run_name) or {}
        note = f"hook work amortised over {hook_period(cfg)} epochs" if hook_period(cfg) > 1 else ""
        out.append(Measurement("P3", run_name, median(times[run_name]) * 1000, "ms/step",
                               paired_ratio(times[run_name], refs[run_name]), "× concat",
                               None if goal is None else ("<=", goal), note))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="P1's scratch folder (holds shards/)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--profile", type=Path, default=Path("profiles/fullsize.yaml"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="training steps per epoch")
    ap.add_argument("--methods", nargs="+", default=list(GOALS))
    ap.add_argument("--frame-size", type=int, default=32, help="frames resized to this (the mini model's 32)")
    args = ap.parse_args()
    params = bench_params(args.params, args.profile)
    for m in run(args.work, params, args.repeats, args.steps, args.methods, args.frame_size):
        print(m.as_dict())


if __name__ == "__main__":
    main()
