"""Stage `train`: one method on one dataset's shards, every seed → metrics.json + DVCLive curves.

Reads params: profile, seeds, train, model, methods.<run>.
"""

import argparse
from pathlib import Path

from mmbalance.params import load_params, lookup, resolve_run
from mmbalance.train.run import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--method", required=True, help="run name: a method or a variant block under params methods")
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="results folder (metrics, curves)")
    ap.add_argument("--checkpoints", type=Path, default=None, help="per-epoch checkpoints (resume after a kill)")
    ap.add_argument("--models", type=Path, default=None, help="selected weights per seed, for evaluation stages")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    p = load_params(args.params)
    method, method_cfg, model_cfg = resolve_run(p, args.method)
    res = run(args.shards, args.out, args.dataset, method, method_cfg, model_cfg, lookup(p, "train"),
              lookup(p, "seeds"), lookup(p, "profile"),
              args.checkpoints, args.models, run_name=args.method)
    summary = {k: round(v["mean"], 4) for k, v in res["summary"].items()}
    print(f"{args.dataset}/{args.method}: {summary}")


if __name__ == "__main__":
    main()
