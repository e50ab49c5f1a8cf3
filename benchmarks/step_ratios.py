"""How much the costs stage's step-time ratio moves between repeated measurements.

Measures the step ratio (× the reference run, Concat) of a dataset's trained runs ``--repeats``
times under each protocol, back to back on this machine, with the models the default
``dvc repro`` left in ``data/models/<dataset>/`` and its shards; prints, per run, every
measurement and their spread (highest − lowest):

- ``4 × 3, ratio of medians``: the run's median step over the reference's median step,
  each over the whole measurement (the costs stage's protocol before per-round pairing);
- ``16 × 1, median of round ratios``: the costs stage's protocol (params.yaml ``costs``), with
  its 95 % interval; ``32 × 1`` the same with twice the rounds.

All protocols time steps the same way (``mmbalance.evaluate.costs``); only the number of rounds,
the steps per round and the estimate differ, and they take turns. Each run's pair of trainers is
built once and serves every measurement, so all but the first see well warmed-up steps; the
costs stage builds them fresh, and its rounds' ratios spread more (docs/reports.md). Nothing is
written.

Usage:
  python benchmarks/step_ratios.py --dataset cremad --runs arl gmm_al iprm ogm_ge opm --repeats 6
  python benchmarks/step_ratios.py --dataset ucf101_three --runs opm --repeats 6
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from mmbalance.evaluate import costs as C
from mmbalance.params import load_params, lookup
from mmbalance.shards import read_index
from mmbalance.train.run import for_dataset

PROTOCOLS = {  # name: (rounds, steps per round, estimate)
    "4 × 3, ratio of medians": (4, 3, "medians"),
    "16 × 1, median of round ratios": (16, 1, "rounds"),
    "32 × 1, median of round ratios": (32, 1, "rounds"),  # twice the timing, for comparison
}


def measure(trainers: dict, rounds: int, steps: int, estimate: str) -> tuple[float, list[float] | None]:
    """One measurement of the run's step ratio against the reference: (ratio, 95 % interval or None)."""
    times = C.interleaved_step_times(trainers, C.CostSettings(warmup_steps=2, rounds=rounds, steps_per_round=steps))
    if estimate == "medians":
        return statistics.median(times["run"]) / statistics.median(times["reference"]), None
    return C.median_ratio(C.round_ratios(times["run"], times["reference"], steps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cremad")
    ap.add_argument("--runs", nargs="+", default=["arl", "gmm_al", "iprm", "ogm_ge", "opm"])
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()

    shards, models = Path("data/shards") / args.dataset, Path("data/models") / args.dataset
    info = read_index(shards)
    train_cfg = for_dataset(lookup(load_params(args.params), "train"), args.dataset)
    torch.set_num_threads(int(train_cfg.get("num_threads", 2)))
    first = {run: C.seed_checkpoints(models / run)[0][1] for run in ["concat", *args.runs]}
    batch = C.training_inputs(shards, info, first["concat"], int(train_cfg["batch_size"]))
    print(f"| run | protocol | {' | '.join(f'#{i + 1}' for i in range(args.repeats))} | spread |")
    print(f"|---|---|{'---:|' * (args.repeats + 1)}")
    for run in args.runs:
        trainers = {"reference": C.step_trainer(first["concat"], info, batch, train_cfg),
                    "run": C.step_trainer(first[run], info, batch, train_cfg)}
        got: dict[str, list] = {name: [] for name in PROTOCOLS}
        for _ in range(args.repeats):  # the protocols take turns, so both see the same machine
            for name, protocol in PROTOCOLS.items():
                got[name].append(measure(trainers, *protocol))
        for name, results in got.items():
            cells = [f"{r:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") for r, ci in results]
            ratios = [r for r, _ in results]
            print(f"| {run} | {name} | {' | '.join(cells)} | {max(ratios) - min(ratios):.3f} |", flush=True)


if __name__ == "__main__":
    main()
