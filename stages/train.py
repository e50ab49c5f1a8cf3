"""Stage `train`: one method on one dataset's shards, every seed → metrics.json, curves.json (+ DVCLive logs with --live).

Reads params (from ``--params``: in the pipeline the run's own file, data/run_params/<run>.yaml,
which the run-params stage splits from params.yaml): profile, seeds, train, model, methods.<run>. ``train.by_dataset.<dataset>`` and
``model.by_dataset.<dataset>`` override those blocks for one dataset (the paper profile's
per-dataset settings); a variant's ``train_scale`` then scales the run's train settings.

With ``train.nproc_per_node`` > 1 this script re-executes itself under
``torchrun --standalone --nproc_per_node N`` (DDP on one node); launched by torchrun already
(e.g. several nodes: ``torchrun --nnodes ... stages/train.py ...``) it runs as one rank.
"""

import argparse
from pathlib import Path

from mmbalance.params import load_params, lookup
from mmbalance.train.distributed import is_main, relaunch_under_torchrun
from mmbalance.train.run import run, run_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--method", required=True, help="run name: a method or a variant block under params methods")
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="results folder (metrics, curves)")
    ap.add_argument("--checkpoints", type=Path, default=None, help="per-epoch checkpoints (resume after a kill)")
    ap.add_argument("--models", type=Path, default=None, help="selected weights per seed, for evaluation stages")
    ap.add_argument("--live", type=Path, default=None, help="DVCLive logs of every seed (for dvc plots)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    p = load_params(args.params)
    method, method_cfg, model_cfg, train_cfg = run_settings(p, args.method, args.dataset)
    relaunch_under_torchrun(__file__, int(train_cfg.get("nproc_per_node", 1)))
    res = run(args.shards, args.out, args.dataset, method, method_cfg, model_cfg, train_cfg,
              lookup(p, "seeds"), lookup(p, "profile"),
              args.checkpoints, args.models, run_name=args.method, live=args.live)
    if is_main():
        summary = {k: round(v["mean"], 4) for k, v in res["summary"].items()}
        print(f"{args.dataset}/{args.method}: {summary}")


if __name__ == "__main__":
    main()
