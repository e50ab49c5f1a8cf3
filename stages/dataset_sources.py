"""Stage `dataset-sources`: one manifest per generate / prepare step and dataset,
<out>/generate/<key>.json and <out>/prepare/<key>.json, naming the datasets and media files the
step runs (the module defining the registered generator or adapter and the files it imports)
and their SHA-256. Each generate@<key> / prepare@<key> stage depends on its own manifest, so
adding or editing one dataset's adapter re-runs that dataset's steps and no others.

Reads params: generate and datasets (their keys).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbalance.dataset_sources import write_manifests
from mmbalance.params import load_params, lookup


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src-dir", type=Path, required=True, help="the mmbalance source folder DVC hashes (src/mmbalance)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, required=True, help="folder of the generate/ and prepare/ manifests")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    written = write_manifests(list(lookup(params, "generate") or {}), list(lookup(params, "datasets")), args.src_dir, args.out)
    print(f"dataset-sources: {len(written)} manifests in {args.out}")


if __name__ == "__main__":
    main()
