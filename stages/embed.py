"""Stage `embed`: t-SNE of one trained run's test embeddings → <out> (JSON), IPRM Fig. 4.

The model of seed `embedding.model_seed` in --model (data/models/<dataset>/<run>/) encodes the test
split; each modality's features and their concatenation are mapped to 2-D with t-SNE
(`embedding.perplexity`, `embedding.seed`), and the mean distance of each sample to its class centre
is recorded (see ``mmbalance.embedding``). The report draws the panels.

Reads params: embedding (model_seed, perplexity, seed, batch_size, num_threads).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mmbalance.embedding import embed_run
from mmbalance.params import load_params, lookup
from mmbalance.shards import read_index
from mmbalance.system import device_name
from mmbalance.train.data import load_split


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shards", type=Path, required=True, help="data/shards/<dataset> (index.json + test shards)")
    ap.add_argument("--model", type=Path, required=True, help="data/models/<dataset>/<run> (seed<k>.pt files)")
    ap.add_argument("--out", type=Path, required=True, help="e.g. results/embedding/<dataset>/<run>.json")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)

    cfg = lookup(load_params(args.params), "embedding")
    torch.set_num_threads(int(cfg.get("num_threads", 1)))
    info = read_index(args.shards)
    data = load_split(args.shards, "test", list(info["modalities"]))
    res = embed_run(args.model, info, data, int(cfg.get("model_seed", 0)), float(cfg.get("perplexity", 30)),
                    int(cfg.get("seed", 0)), int(cfg.get("batch_size", 256)))
    out = {"dataset": info.get("dataset") or args.shards.name, "run": args.model.name, **res, "device": device_name()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, sort_keys=True) + "\n")
    print(f"{out['dataset']}/{out['run']}: class spread (t-SNE) {res['spread_2d']}, "
          f"(feature space, ratio) {res['spread_ratio']}")


if __name__ == "__main__":
    main()
