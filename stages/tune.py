"""Stage `tune`: equal-budget, validation-only search for one run, then the selected
configuration trained with every seed → results.json, metrics.json, curves.json, predictions/,
DVCLive logs with --live (as the train stage) + trials.json.

Reads params: profile, seeds, train, model, methods.<run>, tune.budget, tune.seed,
tune.trial_seeds, tune.space (see ``mmbalance.tune``).
"""

import argparse
from pathlib import Path

from mmbalance.params import load_params
from mmbalance.tune import tune_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--run", required=True, help="run name: a method or a variant block under params methods")
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="results folder of the tuned run")
    ap.add_argument("--live", type=Path, default=None, help="DVCLive logs of the retrained seeds (for dvc plots)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    record = tune_run(args.shards, args.out, args.dataset, args.run, load_params(args.params), live=args.live)
    best = record["trials"][record["selected"]]
    print(f"{args.dataset}/{args.run}: trial {record['selected']} of {record['budget']} selected "
          f"(validation acc {best['score']:.4f}): {best['params']}")


if __name__ == "__main__":
    main()
