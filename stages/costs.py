"""Stage `costs`: compute and memory costs of a dataset's trained runs → costs.json.

For every model folder data/models/<dataset>/<run>/ given in --models (its first seed's model):
trainable parameters, forward FLOPs per sample (FlopCounterMode), training step time against
the reference run (Concat) timed side by side, and peak memory of a step; see
``mmbalance.evaluate.costs`` for the protocol.

Reads params: costs (reference, warmup_steps, rounds, steps_per_round, batch_size) and train
(optimizer, learning rate, batch size, device, threads, with ``train.by_dataset.<dataset>``);
with --run-params (the dataset's file from the run-params stage, its runs' params), each run's
own train settings (the optimizer it was trained with; every run is still timed on the same
batch). With --runs (the dataset's method-sources manifest) only the model folders of the runs
it lists are measured (folders another profile trained are skipped, logged).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mmbalance.evaluate.costs import CostSettings, dataset_costs
from mmbalance.evaluate.selection import add_model_args, listed_models
from mmbalance.params import load_params, lookup
from mmbalance.shards import read_index
from mmbalance.system import device_name
from mmbalance.train.run import for_dataset, run_train_settings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_model_args(ap)
    ap.add_argument("--out", type=Path, required=True, help="e.g. results/<dataset>/costs.json")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--run-params", type=Path, default=None,
                    help="data/run_params/datasets/<dataset>.yaml: the params files of the dataset's runs, for "
                         "the train settings each was trained with")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    try:
        settings = CostSettings.from_params(lookup(params, "costs"))
    except (KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"{args.params}: {e}") from None
    start = time.perf_counter()
    info = read_index(args.shards)
    dataset = args.dataset or info.get("dataset") or args.shards.name
    train_cfg = for_dataset(lookup(params, "train"), dataset)
    torch.set_num_threads(int(train_cfg.get("num_threads", 2)))
    models = listed_models(args.models, args.runs, log=lambda msg: print(msg, file=sys.stderr))
    run_train = _run_train(args.run_params, [m.name for m in models], dataset) if args.run_params else None
    res = dataset_costs(models, args.shards, info, train_cfg, settings, log=lambda msg: print(msg, file=sys.stderr),
                        run_train=run_train)
    out = {"dataset": dataset, **res, "device": device_name(), "threads": torch.get_num_threads(),
           "wall_s": round(time.perf_counter() - start, 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"{dataset}: costs of {len(res['runs'])} runs in {out['wall_s']:.1f} s")


def _run_train(path: Path, runs: list[str], dataset: str) -> dict[str, dict]:
    """Each run's train settings, resolved from its params (``path``: {run: its params file's
    body}) as the train stage resolves them."""
    bodies = load_params(path)
    out = {}
    for run in runs:
        if run not in bodies:
            raise SystemExit(f"{path}: no params of run {run!r} (the run-params stage lists the runs of "
                             f"benchmark.{dataset})")
        out[run] = run_train_settings(bodies[run], run, dataset)
    return out


if __name__ == "__main__":
    main()
