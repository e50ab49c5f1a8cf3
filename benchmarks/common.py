"""Shared pieces of the throughput benchmarks: params, the synthetic full-size data, the machine
description, timing and the result record each benchmark returns.

The benchmarks are scripts, not tests: they time work side by side in one process and report
ratios, which stay meaningful on a busy machine where absolute numbers do not.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from mmbalance.params import load_params, lookup, split_options
from mmbalance.profiles import deep_merge

DATASET = "cremad"


@dataclass
class Measurement:
    """One reported number: a value, the ratio the goal is about, and whether it is met.

    ``goal`` is a bound on ``ratio``: ``(">=", 3.0)`` or ``("<=", 1.05)``; None = information only.
    """

    bench: str
    name: str
    value: float
    unit: str
    ratio: float | None = None
    ratio_label: str = ""
    goal: tuple[str, float] | None = None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        """True/False against the goal; None when there is no goal."""
        if self.goal is None or self.ratio is None:
            return None
        op, bound = self.goal
        return self.ratio >= bound if op == ">=" else self.ratio <= bound

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def bench_params(params_path: Path, profile_path: Path | None) -> dict:
    """params.yaml with the profile's overrides merged in (as ``make profile`` would write it)."""
    params = load_params(params_path)
    if profile_path is not None:
        params = deep_merge(params, yaml.safe_load(profile_path.read_text()) or {})
    return params


def prepare_recipe(params: dict) -> dict:
    """The adapter's decoding recipe, as stages/prepare.py composes it."""
    from mmbalance.prepare import recipe_from_params

    return recipe_from_params(params, DATASET)


def scan_options(params: dict) -> dict:
    """``adapter.scan`` keyword arguments (stratified split from params, no split file)."""
    return split_options(params, DATASET, "")


def generate_data(params: dict, root: Path, clips_per_class: int, workers: int) -> dict:
    """Write the profile's CREMA-D geometry with ``clips_per_class`` clips per class under
    ``root``; reuse a previous set written with the same settings (``bench_data.yaml``)."""
    from mmbalance.datasets.mini import get_generator

    cfg = {**lookup(params, f"generate.{DATASET}"), "clips_per_class": clips_per_class,
           "workers": workers, "show_progress": False}
    stamp = root / "bench_data.yaml"
    if stamp.is_file() and yaml.safe_load(stamp.read_text()) == cfg:
        return cfg
    get_generator(DATASET)(root, **cfg)
    stamp.write_text(yaml.safe_dump(cfg, sort_keys=True))
    return cfg


def machine() -> dict:
    """CPU model, cores (total and usable), load, Python/torch versions, GPU name if any."""
    import torch

    from mmbalance.system import cpu_model

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
    }


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def interleaved(runners: dict, repeats: int, self_timed: bool = False) -> dict[str, list[float]]:
    """Wall seconds of each runner over ``repeats`` rounds; the order rotates every round so a
    slow spell of a shared machine does not fall on one runner only. ``self_timed``: each
    runner returns the seconds it measured itself (e.g. a child process timing its own work)."""
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(float(runners[name]()) if self_timed else timed(runners[name])[0])
    return times


def median(values) -> float:
    return float(statistics.median(values))


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num[r] / den[r] (pairs measured close in time)."""
    return median([a / b for a, b in zip(num, den, strict=True)])


def clean_dir(path: Path) -> Path:
    """An empty folder at ``path`` (removed first if present)."""
    import shutil

    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def run_standalone(run, doc: str, work_help: str, repeats: int) -> None:
    """Command line of a P1/P2 script run on its own: ``run(raw, work, params, repeats)``, one line per measurement."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", type=Path, required=True, help="CREMA-D-layout folder (from run.py or generate)")
    ap.add_argument("--work", type=Path, required=True, help=work_help)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--profile", type=Path, default=Path("profiles/fullsize.yaml"))
    ap.add_argument("--repeats", type=int, default=repeats)
    args = ap.parse_args()
    for m in run(args.raw, args.work, bench_params(args.params, args.profile), args.repeats):
        print(m.as_dict())
