"""Compute and memory costs of each trained run of a dataset, measured on one batch of its shards.

Per run (its configuration is the one saved with its models, ``data/models/<ds>/<run>/seed<k>.pt``):

- ``params``: trainable parameters of the model, the method's own modules included;
- ``flops_per_sample``: FLOPs of the test-time forward (``method.predict(model(inputs))``) of one
  batch, counted by ``torch.utils.flop_counter.FlopCounterMode`` (a matmul of [B, i] by [i, o]
  counts 2·B·i·o; ops without a formula, e.g. elementwise ones, count 0), divided by the batch
  size. Counted with autograd enabled, so attention runs its composite path, which the counter
  sees, rather than the fused inference kernel, which it would not;
- ``step_ms`` / ``step_ratio``: wall time of one training step of the one loop
  (``Trainer.train_epoch`` over a training split of exactly one batch: batch assembly from
  memory, the method's forward, loss, backward, ``after_backward``, finiteness check, optimizer
  step), measured side by side with the reference run (Concat): both are built, warmed up, then
  timed in alternating rounds (odd rounds in reverse order, so each round's two sides run next to
  each other). ``step_ms`` / ``reference_step_ms`` are each side's median step. ``step_ratios``
  are the per-round ratios (the run's median step in the round over the reference's);
  ``step_ratio`` is their median and ``step_ratio_ci`` its 95 % distribution-free confidence
  interval (order statistics, ``scipy.stats.quantile_test``; None with fewer than 6 rounds).
  Pairing within a round cancels the machine's speed changes, which on a shared 2-core machine
  move a step by tens of per cent within seconds; comparing medians taken over the whole
  measurement does not (docs/reports.md);
- ``peak_bytes``: peak tensor memory of one training step after warm-up. On a GPU
  ``torch.cuda.max_memory_allocated`` above what was allocated before the run was built; on the
  CPU the parameters, buffers and optimizer state the run holds (each storage once) plus the
  peak of the net bytes torch's CPU allocator hands out during the step (gradients, batch,
  activations, temporaries), from ``torch.profiler``'s memory events in time order; the
  process's other memory (the data set, Python objects) is not counted.

Methods are put in the state of their last epoch before timing: trained weights and method state
from the checkpoint, ``ctx.epoch`` = the last epoch and its ``on_epoch_start`` hook called once
(outside the timing), so warm-up phases do not stand in for the method's real step. Epoch-level
work (refits, probes at epoch ends) is not part of a step; the training wall time covers it.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from mmbalance.evaluate.predictions import reference_run
from mmbalance.evaluate.robustness import load_trained, seed_checkpoints
from mmbalance.train.data import SplitData, segments_of
from mmbalance.train.loop import Trainer
from mmbalance.train.run import seed_everything

MEMORY_CPU = ("parameters, buffers and optimizer state held, plus the peak of the bytes allocated during one training "
              "step (gradients, batch, activations, temporaries) from torch.profiler's memory events")
MEMORY_CUDA = "torch.cuda.max_memory_allocated during one training step, above the memory allocated before the run was built"


@dataclass(frozen=True)
class CostSettings:
    """``costs`` params: reference run, warm-up steps, timed rounds and steps per round (per side)."""

    reference: str = "concat"
    warmup_steps: int = 2
    rounds: int = 16
    steps_per_round: int = 1
    batch_size: int | None = None  # None: train.batch_size

    @classmethod
    def from_params(cls, block: Mapping | None) -> "CostSettings":
        """From the params ``costs`` block (missing keys keep their defaults)."""
        block = dict(block or {})
        unknown = set(block) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"params costs: unknown keys {sorted(unknown)}; choices: {sorted(cls.__dataclass_fields__)}")
        out = cls(**block)
        if min(out.rounds, out.steps_per_round) < 1 or out.warmup_steps < 0:
            raise ValueError(f"params costs: need rounds ≥ 1, steps_per_round ≥ 1, warmup_steps ≥ 0; got {block}")
        return out


def training_inputs(shard_dir: Path, info: dict, model_file: Path, n: int) -> SplitData:
    """The first ``n`` test samples of the shards, spectrograms pooled as the training stage pools
    them for the model saved in ``model_file`` (so a step sees the training input shapes)."""
    from mmbalance.train.data import load_split
    from mmbalance.train.run import pool_sizes

    model_cfg = torch.load(model_file, map_location="cpu", weights_only=False).get("model_cfg")
    if model_cfg is None:
        raise ValueError(f"{model_file}: not a model saved by the train stage (no 'model_cfg')")
    return first_samples(load_split(shard_dir, "test", list(info["modalities"]), pool_sizes(info, model_cfg)), n)


def trainable_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def count_flops(fn, *args) -> int:
    """Total FLOPs ``FlopCounterMode`` counts while ``fn(*args)`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def forward_flops_per_sample(model, method, inputs: dict, batch: int) -> float:
    """FLOPs of the test-time forward of one batch of ``batch`` samples, divided by ``batch``
    (eval mode, autograd on: see the module docstring)."""
    model.eval()
    with torch.enable_grad():
        total = count_flops(lambda x: method.predict(model(x)), inputs)
    return total / batch


def first_samples(data: SplitData, n: int, modalities: Iterable[str] | None = None) -> SplitData:
    """The split's first ``n`` samples (all of them when it has fewer), only ``modalities``
    (default: all)."""
    idx = torch.arange(min(n, len(data)))
    mods = set(data.arrays if modalities is None else modalities)
    return replace(data, keys=[data.keys[i] for i in idx.tolist()], labels=data.labels[idx],
                   arrays={m: a[idx] for m, a in data.arrays.items() if m in mods},
                   lengths={m: v[idx] for m, v in data.lengths.items() if m in mods})


def step_trainer(path: Path, info: dict, batch: SplitData, train_cfg: dict) -> Trainer:
    """A Trainer whose training split is the one batch, for the run saved at ``path``, in the
    state of its last epoch (weights, method state, ``ctx.epoch``, ``on_epoch_start``)."""
    seed_everything(0)
    method, model, ckpt = load_trained(path, info)
    data = first_samples(batch, len(batch), method.ctx.modalities)
    cfg = {**train_cfg, "batch_size": len(batch)}
    trainer = Trainer(model, method, {"train": data, "val": data}, cfg, 0, ckpt["method"])
    last = int(ckpt["epochs"]) - 1
    method.ctx.epoch, method.ctx.logs = last, {}
    method.on_epoch_start(last, trainer)
    return trainer


def _sync(trainer: Trainer) -> None:
    if trainer.rt.cuda:
        torch.cuda.synchronize(trainer.rt.device)


def timed_step(trainer: Trainer) -> float:
    """Seconds of one training step (one epoch of the one-batch split)."""
    _sync(trainer)
    start = time.perf_counter()
    trainer.train_epoch()
    _sync(trainer)
    return time.perf_counter() - start


def interleaved_step_times(trainers: Mapping[str, Trainer], settings: CostSettings) -> dict[str, list[float]]:
    """Warm every trainer up, then time them in alternating rounds (``steps_per_round`` steps
    each; odd rounds in reverse order, so a drift of the machine's speed hits all alike)."""
    for t in trainers.values():
        for _ in range(settings.warmup_steps):
            t.train_epoch()
    names = list(trainers)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(settings.rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            times[n] += [timed_step(trainers[n]) for _ in range(settings.steps_per_round)]
    return times


def held_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors a run holds between steps: parameters, buffers, gradients and
    optimizer state (each storage counted once)."""
    tensors = [*model.parameters(), *model.buffers(), *(p.grad for p in model.parameters() if p.grad is not None)]
    tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def step_allocation_peak(step) -> int:
    """Peak of the net CPU bytes allocated while ``step()`` runs, from the profiler's memory
    events (every allocation and free of torch's CPU allocator, in time order)."""
    cpu = torch.profiler.ProfilerActivity.CPU
    # Kineto (the profiler's back end) otherwise prints profiler_start / profiler_stop lines and,
    # on a CPU-only machine, "ERROR ... gpuGetDeviceCount failed" for every run measured; read
    # when the profiler first starts, so setting it here is in time. A user's own level is kept.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with torch.profiler.profile(activities=[cpu], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def peak_step_memory(trainer: Trainer, base: int = 0) -> tuple[int, str]:
    """(peak bytes of one training step, how it was measured); ``base``: CUDA bytes allocated
    before the run was built."""
    if trainer.rt.cuda:
        _sync(trainer)
        torch.cuda.reset_peak_memory_stats(trainer.rt.device)
        trainer.train_epoch()
        _sync(trainer)
        return int(torch.cuda.max_memory_allocated(trainer.rt.device)) - base, MEMORY_CUDA
    # gradients freed first: the profiler reports no free of a block allocated before it started
    trainer.optimizer.zero_grad(set_to_none=True)
    held = held_bytes(trainer.model, trainer.optimizer)
    return held + step_allocation_peak(trainer.train_epoch), MEMORY_CPU


def _cuda_allocated(train_cfg: dict) -> int:
    from mmbalance.train import runtime

    rt = runtime.resolve(train_cfg)
    return int(torch.cuda.memory_allocated(rt.device)) if rt.cuda else 0


def run_costs(path: Path, info: dict, batch: SplitData, train_cfg: dict, settings: CostSettings,
              reference: Path | None, reference_cfg: dict | None = None) -> dict:
    """Costs of the run saved at ``path``, trained with ``train_cfg`` (its optimizer); its steps
    timed beside the model at ``reference`` with ``reference_cfg`` (default ``train_cfg``; None
    reference: the run is the reference, timed alone, ratio 1)."""
    base = _cuda_allocated(train_cfg)
    trainer = step_trainer(path, info, batch, train_cfg)
    model, method = trainer.model, trainer.method
    inputs, labels = next(trainer.batches("train"))
    clips = len(labels) // max(1, segments_of(info))  # event localisation: S label rows per clip
    out = {"params": trainable_parameters(model), "modalities": list(model.modalities),
           "flops_per_sample": forward_flops_per_sample(model, method, inputs, clips), "batch_size": clips}
    for _ in range(max(settings.warmup_steps, 1)):  # optimizer state exists before memory is measured
        trainer.train_epoch()
    # memory before the reference is built: on a GPU its tensors would count as the run's
    out["peak_bytes"], out["memory"] = peak_step_memory(trainer, base)
    pair = {"run": trainer} if reference is None else {
        "reference": step_trainer(reference, info, batch, reference_cfg or train_cfg), "run": trainer}
    times = interleaved_step_times(pair, settings)
    out["step_ms"] = 1000.0 * statistics.median(times["run"])
    out["reference_step_ms"] = 1000.0 * statistics.median(times.get("reference", times["run"]))
    if reference is None:
        out["step_ratio"] = 1.0
        return out
    out["step_ratios"] = round_ratios(times["run"], times["reference"], settings.steps_per_round)
    out["step_ratio"], out["step_ratio_ci"] = median_ratio(out["step_ratios"])
    return out


def round_ratios(run: list[float], reference: list[float], steps_per_round: int) -> list[float]:
    """Per timed round: the run's median step over the reference's median step of that round
    (``interleaved_step_times`` lists each side's rounds one after another)."""
    k = steps_per_round
    return [statistics.median(run[i:i + k]) / statistics.median(reference[i:i + k]) for i in range(0, len(run), k)]


def median_ratio(ratios: list[float], confidence: float = 0.95) -> tuple[float, list[float] | None]:
    """(median of the per-round ``ratios``, its ``confidence`` interval [low, high]): two of the
    sorted ratios chosen by the binomial distribution of how many fall below the median (16
    ratios: the 4th and the 13th, 97.9 % coverage), so no assumption about the noise's shape.
    None when too few ratios reach ``confidence`` (fewer than 6 for 95 %)."""
    from scipy.stats import quantile_test  # costs stage only; scipy.stats takes ~0.5 s to import

    mid = statistics.median(ratios)
    ci = quantile_test(ratios, q=mid, p=0.5).confidence_interval(confidence)
    bounded = all(math.isfinite(v) for v in (ci.low, ci.high))
    return mid, [float(ci.low), float(ci.high)] if bounded else None


def dataset_costs(model_dirs: Iterable[Path], shard_dir: Path, info: dict, train_cfg: dict, settings: CostSettings,
                  log=print, run_train: Mapping[str, dict] | None = None) -> dict:
    """Costs of every run folder in ``model_dirs`` (each folder's first seed's model; a folder
    without one is listed in ``missing`` and logged), timed against ``settings.reference``.

    ``run_train`` maps a run to the ``train`` settings it was trained with (the Swin runs' AdamW,
    say), so each step runs that run's optimizer; a run not in it uses ``train_cfg``. Every run
    is timed on the same batch (``settings.batch_size`` or ``train_cfg``'s), whatever its own
    batch size: the step ratios compare equal work.

    Returns ``{"reference", "settings", "runs": {run: costs}, "missing"}``; without the reference
    run the ratios are None."""
    dirs = {Path(d).name: Path(d) for d in model_dirs}
    first = {name: seed_checkpoints(d)[0][1] for name, d in sorted(dirs.items()) if seed_checkpoints(d)}
    missing = sorted(set(dirs) - set(first))
    for name in missing:
        log(f"costs: no seed<k>.pt model files in {dirs[name]}; skipped")
    reference = reference_run(settings.reference, first)
    ref = first.get(reference)
    if ref is None:
        log(f"costs: no reference run {settings.reference!r} among {sorted(first)}; step ratios left empty")
    runs: dict = {}
    if not first:
        return {"reference": reference, "settings": dict(settings.__dict__), "runs": runs, "missing": missing}
    batch = training_inputs(shard_dir, info, ref or next(iter(first.values())), int(settings.batch_size or train_cfg["batch_size"]))
    cfg = {name: dict((run_train or {}).get(name) or train_cfg) for name in first}
    for name, path in first.items():
        start = time.perf_counter()
        runs[name] = run_costs(path, info, batch, cfg[name], settings, None if name == reference else ref,
                               cfg.get(reference))
        runs[name]["optimizer"] = cfg[name].get("optimizer")
        if ref is None:
            runs[name].update(step_ratio=None, reference_step_ms=None)
        runs[name]["wall_s"] = round(time.perf_counter() - start, 3)
        log(f"costs: {name}: {runs[name]['params']} params, {runs[name]['flops_per_sample']:.3g} FLOPs/sample, "
            f"step ×{runs[name]['step_ratio'] or float('nan'):.2f}, peak {runs[name]['peak_bytes'] / 2**20:.1f} MiB")
    return {"reference": reference, "settings": {**settings.__dict__, "batch_size": len(batch)},
            "runs": runs, "missing": missing}

