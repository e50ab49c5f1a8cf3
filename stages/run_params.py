"""Stage `run-params`: <out>/<run>.yaml for every run of params `methods`, holding the params a
training stage of that run reads (profile, seeds, train, model, methods.<run>), and
<out>/datasets/<dataset>.yaml gathering the files of each benchmark dataset's runs (for costs).

Training stages depend on their run's file instead of declaring params themselves, so DVC parses
params.yaml once here rather than once per training stage (see ``mmbalance.run_params``).

Reads params: profile, seeds, train, model, methods, encoder_sets (the sets runs pick), benchmark.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbalance.params import load_params
from mmbalance.run_params import write_dataset_run_params, write_run_params


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, required=True, help="folder of the <run>.yaml files")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    written = write_run_params(params, args.out)
    merged = write_dataset_run_params(params, args.out / "datasets")
    print(f"run-params: {len(written)} run params files in {args.out}, {len(merged)} dataset files in {args.out / 'datasets'}")


if __name__ == "__main__":
    main()
