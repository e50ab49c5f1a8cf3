"""Stage `generate`: write a mini dataset in its native layout.

Reads params: generate.<dataset>.
"""

import argparse
from pathlib import Path

from mmbalance.datasets.mini import get_generator
from mmbalance.params import load_params, lookup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", type=Path, required=True, help="root folder to write")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()
    cfg = lookup(load_params(args.params), f"generate.{args.dataset}")
    summary = get_generator(args.dataset)(args.out, **cfg)
    print(f"generated {args.dataset} under {args.out}: {summary}")


if __name__ == "__main__":
    main()
