"""Check a raw dataset folder and list every clip `prepare` would skip, with its file and reason.

    python stages/validate.py --dataset cremad --root /data/CREMA-D

First the layout (folders, file names, labels, split lists), then every clip decoded with the
same recipe and the same per-clip check as `prepare` (truncated or empty files, missing streams,
too few frames, silent or too short audio, implausible sample rates), in `prepare.workers`
processes. The problems listed are exactly those `prepare` records under `skipped` in
index.json. --layout-only stops after the layout (seconds, but media problems go unseen).

Exit status 1 when the folder cannot be used at all. Reads params: prepare, datasets.<dataset>.
"""

import argparse
import sys
from pathlib import Path

from mmbalance.params import load_params, lookup, split_options
from mmbalance.prepare import recipe_from_params
from mmbalance.validate import validate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--split-csv", default="", help="optional CSV clip_id,split")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--layout-only", action="store_true", help="check the layout only, decode no media")
    args = ap.parse_args()
    params = load_params(args.params)
    split = split_options(params, args.dataset, args.split_csv)
    recipe = None if args.layout_only else recipe_from_params(params, args.dataset)
    usable, lines = validate(args.dataset, args.root, split, recipe, lookup(params, "prepare.workers"))
    print("\n".join(lines))
    sys.exit(0 if usable else 1)


if __name__ == "__main__":
    main()
