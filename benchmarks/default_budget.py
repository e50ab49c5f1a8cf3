"""Where a default ``make repro`` spends its training time, and what smaller mini encoders save.

Two parts, both on this repository:

- ``--table``: the training time of every run of ``params.yaml``'s ``benchmark`` lists, read from
  the committed ``results/<dataset>/<run>/results.json`` (each seed's ``wall_s``; the seeds of a
  stage train side by side, so the stage waits for its slowest seed). Adds the per-stage start-up
  floor (``--floor-s``: interpreter, imports, loading the split, DVC's bookkeeping; measured in
  docs/performance.md) and prints one markdown row per dataset. Nothing is trained.
- ``--compare DATASET ...``: trains the given runs (default Concat) with the params' encoders
  and with smaller ones (``SMALL``: the spectrogram pooled to 32×37 instead of 64×75, 8/16/32
  channels instead of 16/32/64), back to back on the prepared shards (``data/shards/<dataset>``),
  every seed, through the real stage script into ``--work``; prints each stage's wall time, the
  ratio and the test accuracy and probe accuracies, so that a smaller mini model can be judged
  on speed and on whether the imbalance still shows.

Usage:
  python benchmarks/default_budget.py --table
  python benchmarks/default_budget.py --compare cremad kinetics_sounds --runs concat visual_only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# smaller mini encoders: ~4× fewer spectrogram pixels, half the channels (~8× fewer multiply-adds)
SMALL = {"spectrogram": {"input_size": [32, 37], "channels": [8, 16, 32]}, "frames": {"channels": [8, 16, 32]}}
FLOOR_S = 6.5  # a training stage with nothing left to train (docs/performance.md: VGGSound's 14 forced, idle machine)


def stage_seconds(results: Path) -> tuple[float, str]:
    """(training wall of the stage: its slowest seed, the machine it ran on) from results.json."""
    res = json.loads(results.read_text())
    return max(float(s["wall_s"]) for s in res["seeds"].values()), str(res.get("device", "?"))


def training_table(params: dict, floor_s: float) -> str:
    """Markdown: per dataset, runs, training hours (from the committed results), the floor's
    hours and the machines that trained the results; then the total."""
    rows = ["| dataset | runs | training | per stage | + floor | machines |", "|---|---:|---:|---:|---:|---|"]
    total_train = total_runs = 0.0
    for ds, runs in params["benchmark"].items():
        times = [stage_seconds(ROOT / "results" / ds / run / "results.json") for run in runs]
        train = sum(t for t, _ in times)
        hosts = sorted({h for _, h in times})
        rows.append(f"| {ds} | {len(runs)} | {train / 60:.0f} min | {train / len(runs):.0f} s | "
                    f"{(train + floor_s * len(runs)) / 60:.0f} min | {', '.join(hosts)} |")
        total_train += train
        total_runs += len(runs)
    rows.append(f"| **all** | {total_runs:.0f} | {total_train / 3600:.2f} h | {total_train / total_runs:.0f} s | "
                f"{(total_train + floor_s * total_runs) / 3600:.2f} h | |")
    return "\n".join(rows)


def small_params(src: Path, dst: Path) -> Path:
    """A copy of a run's params file with the ``SMALL`` encoders."""
    p = yaml.safe_load(src.read_text())
    for kind, over in SMALL.items():
        p["model"]["encoders"][kind].update(over)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(yaml.safe_dump(p, sort_keys=False))
    return dst


def train_stage(dataset: str, run: str, params: Path, out: Path) -> tuple[float, dict]:
    """(wall seconds, metrics.json) of the stage script training every seed of ``run``."""
    cmd = [sys.executable, str(ROOT / "stages" / "train.py"), "--dataset", dataset, "--method", run,
           "--shards", str(ROOT / "data" / "shards" / dataset), "--out", str(out), "--params", str(params)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return wall, json.loads((out / "metrics.json").read_text())


def compare(datasets: list[str], runs: list[str], work: Path) -> str:
    """Markdown: each run trained with the params' encoders, then with ``SMALL``, side by side."""
    rows = ["| dataset | run | stage (params' encoders) | stage (small) | ratio | accuracy | probes |",
            "|---|---|---:|---:|---:|---|---|"]
    for ds in datasets:
        for run in runs:
            src = ROOT / "data" / "run_params" / f"{run}.yaml"
            base_s, base = train_stage(ds, run, src, work / ds / run / "params")
            small_s, small = train_stage(ds, run, small_params(src, work / "small" / f"{run}.yaml"), work / ds / run / "small")
            probes = " ".join(f"{k[10:]} {base[k]:.1%} → {small[k]:.1%}" for k in sorted(base)
                              if k.startswith("probe_acc_") and not k.endswith("_std"))
            rows.append(f"| {ds} | {run} | {base_s:.1f} s | {small_s:.1f} s | {small_s / base_s:.2f} | "
                        f"{base['acc']:.1%} → {small['acc']:.1%} | {probes} |")
            print(rows[-1], flush=True)
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", action="store_true", help="training time per dataset from the committed results")
    ap.add_argument("--floor-s", type=float, default=FLOOR_S, help="start-up and DVC seconds per training stage")
    ap.add_argument("--compare", nargs="*", default=[], metavar="DATASET", help="train side by side on these datasets")
    ap.add_argument("--runs", nargs="+", default=["concat"], help="runs to compare (default: concat)")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "budget", help="outputs of --compare")
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.table:
        print(training_table(params, args.floor_s))
    if args.compare:
        print(compare(args.compare, args.runs, args.work))


if __name__ == "__main__":
    main()
