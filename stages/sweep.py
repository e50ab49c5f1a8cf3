"""Stage `sweep`: one hyper-parameter sensitivity point, one run trained with every seed at one
value of one of its params → results.json (with ``sweep: {param, value}``), metrics.json,
curves.json, predictions/, DVCLive logs with --live (as the train stage).

Reads params (from ``--params``: in the pipeline the run's file data/run_params/<run>.yaml,
split from params.yaml by the run-params stage): profile, seeds, train, model, methods.<run>. ``--param`` is set like a
tune.space key (train.<key> / model.<key> set those blocks, other keys the run's method block);
the points dvc.yaml generates are listed in params ``sweeps`` (see ``mmbalance.sweeps``).

With ``train.nproc_per_node`` > 1 (the point's train settings) this script re-executes itself
under ``torchrun --standalone`` as the train stage does; launched by torchrun it runs as one rank.
"""

import argparse
import os
from pathlib import Path

from mmbalance.params import load_params
from mmbalance.sweeps import parse_value, point_config, run_point
from mmbalance.train.distributed import relaunch_under_torchrun


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--run", required=True, help="run name: a method or a variant block under params methods")
    ap.add_argument("--param", required=True, help="the swept key, e.g. alpha, q_base or train.lr")
    ap.add_argument("--value", required=True, help="its value at this point (parsed as YAML: 0.1, 4, true)")
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="results folder of the point")
    ap.add_argument("--live", type=Path, default=None, help="DVCLive logs of every seed (for dvc plots)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    value, params = parse_value(args.value), load_params(args.params)
    train_cfg = point_config(params, args.dataset, args.run, args.param, value)[3]
    relaunch_under_torchrun(__file__, int(train_cfg.get("nproc_per_node", 1)))
    res = run_point(args.shards, args.out, args.dataset, args.run, args.param, value, params, live=args.live)
    if int(os.environ.get("RANK", 0)) == 0:
        acc = res["summary"]["acc"]
        print(f"{args.dataset}/{args.run} {args.param}={args.value}: acc {acc['mean']:.4f} ± {acc['std']:.4f}")


if __name__ == "__main__":
    main()
