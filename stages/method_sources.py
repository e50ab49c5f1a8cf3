"""Stage `method-sources`: one manifest per run, <out>/<run>.json, naming the method files the run
trains with (the file defining its registered class and the method files it imports) and the
shared training code (--code), with their SHA-256. Each train/tune/sweep stage depends on its
run's manifest instead of the code itself, so editing one method's file re-runs that method's
runs and no others. <out>/datasets/<dataset>.json merges the manifests of
a dataset's runs, for the stages that load all of a dataset's models (evaluate, costs).

Reads params: benchmark (each dataset's runs). Each run's registered method (the run itself or its
``method:``) comes from its own params file (--run-params, the run-params stage's folder), so this
stage does not declare the large ``methods`` block: its dvc.lock entry stays short.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbalance.method_sources import code_hashes, write_dataset_manifests, write_manifests
from mmbalance.params import load_params, lookup, resolve_run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--methods-dir", type=Path, required=True, help="the mmbalance/methods folder DVC hashes")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--run-params", type=Path, required=True,
                    help="data/run_params: one <run>.yaml per run (the run-params stage)")
    ap.add_argument("--code", type=Path, nargs="*", default=[],
                    help="the shared training code (files or folders) every run's manifest hashes")
    ap.add_argument("--out", type=Path, required=True, help="folder of the <run>.json manifests")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    runs = {path.stem: resolve_run(load_params(path), path.stem)[0] for path in sorted(args.run_params.glob("*.yaml"))}
    written = write_manifests(runs, args.methods_dir, args.out, code_hashes(args.code))
    datasets = write_dataset_manifests(lookup(params, "benchmark"), args.out, args.out / "datasets")
    print(f"method-sources: {len(written)} run manifests and {len(datasets)} dataset manifests in {args.out}")


if __name__ == "__main__":
    main()
