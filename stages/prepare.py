"""Stage `prepare`: raw dataset root → deterministic WebDataset shards and index.json.

Reads params: prepare, datasets.<dataset>.
"""

import argparse
from pathlib import Path

from mmbalance.datasets.listing import check_root_dep
from mmbalance.params import load_params, lookup, split_options
from mmbalance.prepare import prepare, recipe_from_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--root", type=Path, required=True, help="the dataset folder in its native layout")
    ap.add_argument("--root-dep", type=Path, default=None,
                    help="the stage's DVC dependency for the raw data: --root itself, or the generate stage's listing of it")
    ap.add_argument("--out", type=Path, required=True, help="shard folder to write")
    ap.add_argument("--split-csv", default="", help="optional CSV clip_id,split ('' = stratified split from params)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    if args.root_dep is not None:
        try:
            check_root_dep(args.root, args.root_dep)
        except ValueError as e:  # a params mistake, said in one line
            raise SystemExit(f"prepare {args.dataset}: {e}") from None
    params = load_params(args.params)
    common = lookup(params, "prepare")
    recipe = recipe_from_params(params, args.dataset)  # the same recipe `stages/validate.py` checks with
    split = split_options(params, args.dataset, args.split_csv)
    index = prepare(args.dataset, args.root, args.out, recipe, split, common["workers"], common["shard_max_count"])
    counts = {s: v["count"] for s, v in index["splits"].items()}
    print(f"{args.dataset}: {counts}, skipped {len(index['skipped'])}")


if __name__ == "__main__":
    main()
