"""Check a raw dataset folder against the layout its adapter expects and list every problem.

    python stages/validate.py --dataset cremad --root /data/CREMA-D

Exit status 1 when the folder cannot be used at all. Reads params: datasets.<dataset>.split.
"""

import argparse
import sys
from pathlib import Path

from mmbalance.params import load_params, split_options
from mmbalance.validate import validate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--split-csv", default="", help="optional CSV clip_id,split")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    split = split_options(load_params(args.params), args.dataset, args.split_csv)
    usable, lines = validate(args.dataset, args.root, split)
    print("\n".join(lines))
    sys.exit(0 if usable else 1)


if __name__ == "__main__":
    main()
