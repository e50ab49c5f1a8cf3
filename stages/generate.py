"""Stage `generate`: write a mini dataset in its native layout, and the listing of its files
(each one's MD5) that the prepare stage depends on instead of the folder.

Reads params: generate.<dataset>.
"""

import argparse
from pathlib import Path

from mmbalance.datasets import listing
from mmbalance.datasets.mini import get_generator
from mmbalance.params import load_params, lookup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", type=Path, required=True, help="root folder to write")
    ap.add_argument("--listing", type=Path, default=None, help="JSON listing of the written files, with their MD5")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    cfg = lookup(load_params(args.params), f"generate.{args.dataset}")
    summary = get_generator(args.dataset)(args.out, **cfg)
    if args.listing is not None:
        listing.write(args.out, args.listing)
    print(f"generated {args.dataset} under {args.out}: {summary}")


if __name__ == "__main__":
    main()
