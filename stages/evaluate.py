"""Stage `evaluate`: missing-modality robustness of a dataset's trained models → robustness.json,
and each modality's Shapley value for every trained model → shapley.json.

For each run in params `robustness.runs` (a model folder data/models/<dataset>/<run>/ among
--models; every folder given when the list is empty), every seed's model is scored on the test
split with each modality's features zeroed per sample with each probability in
`robustness.drop_probs` (the OPM/OGM paper's Fig. 6 protocol).

With `robustness.joint` (fixed_probs, varied_probs) each two-modality model is also scored on the
paper's Fig. 6 grid: the first modality missing with each fixed probability and the second, at
the same time, with each varied probability.

With --shapley, every model folder given (every run, whatever `robustness.runs` says) gets the
Shapley value of each modality on the test split: exact, from the accuracies with each subset of
its modalities kept and the others' features set to 0 (the empty set: all of them masked); see
``mmbalance.evaluate.shapley``.

With --runs (the dataset's method-sources manifest) only the model folders of the runs it lists,
the profile's benchmark list, are scored: folders another profile trained (left on disk after a
profile switch) are skipped with a log line.

Reads params: robustness (drop_probs, joint, runs, seed, batch_size, num_threads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mmbalance.evaluate.robustness import EvalInputs, evaluate_runs
from mmbalance.evaluate.selection import add_model_args, listed_models
from mmbalance.evaluate.shapley import shapley_runs
from mmbalance.params import load_params, lookup
from mmbalance.system import device_name
from mmbalance.shards import read_index
from mmbalance.train.data import load_split


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_model_args(ap)
    ap.add_argument("--out", type=Path, required=True, help="e.g. results/<dataset>/robustness.json")
    ap.add_argument("--shapley", type=Path, default=None, help="e.g. results/<dataset>/shapley.json (modality Shapley values)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)

    cfg = lookup(load_params(args.params), "robustness")
    probs = [float(p) for p in cfg["drop_probs"]]
    if not probs or any(not 0.0 <= p <= 1.0 for p in probs):
        raise SystemExit(f"params robustness.drop_probs must be probabilities in [0, 1]; got {cfg['drop_probs']}")
    torch.set_num_threads(int(cfg.get("num_threads", 2)))
    start = time.perf_counter()
    info = read_index(args.shards)
    dataset = args.dataset or info.get("dataset") or args.shards.name
    # pooled once per encoder input size, shared by the robustness sweeps and the Shapley values
    data = EvalInputs(load_split(args.shards, "test", list(info["modalities"])), info)
    models = listed_models(args.models, args.runs, log=lambda msg: print(msg, file=sys.stderr))
    joint = cfg.get("joint") or None
    if joint is not None:
        joint = {k: [float(p) for p in joint[k]] for k in ("fixed_probs", "varied_probs")}
    res = evaluate_runs(models, list(cfg.get("runs") or []), info, data, probs, int(cfg.get("seed", 0)),
                        int(cfg.get("batch_size", 256)), log=lambda msg: print(msg, file=sys.stderr), joint=joint)
    out = {"dataset": dataset, "drop_probs": probs, "seed": int(cfg.get("seed", 0)), **res,
           **({"joint": joint} if joint else {}),
           "device": device_name(), "wall_s": round(time.perf_counter() - start, 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    for run, r in res["runs"].items():
        means = {m: [round(sum(s["drop"][m][i] for s in r["seeds"].values()) / len(r["seeds"]), 3)
                     for i in range(len(probs))] for m in r["modalities"]}
        print(f"{dataset}/{run}: {means}")
    if args.shapley is not None:
        write_shapley(args.shapley, dataset, models, info, data, int(cfg.get("batch_size", 256)))


def write_shapley(path: Path, dataset: str, models: list[Path], info: dict, data, batch_size: int) -> None:
    """Every run's per-seed Shapley values → ``path`` (JSON)."""
    start = time.perf_counter()
    res = shapley_runs(models, info, data, batch_size, log=lambda msg: print(msg, file=sys.stderr))
    out = {"dataset": dataset, **res, "device": device_name(), "wall_s": round(time.perf_counter() - start, 3)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    for run, r in res["runs"].items():
        means = {m: round(sum(s["shapley"][m] for s in r["seeds"].values()) / len(r["seeds"]), 3) for m in r["modalities"]}
        print(f"{dataset}/{run} Shapley: {means}")


if __name__ == "__main__":
    main()
