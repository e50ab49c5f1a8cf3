"""Stage `report`: render reports/README.md from the training stages' results.json files.

Reads params: profile, benchmark (and hashes the whole params file for provenance).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbalance.params import load_params, lookup
from mmbalance.report import (
    Provenance,
    git_revision,
    load_paper_numbers,
    load_results,
    params_hash,
    render_summary,
    write_report,
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", nargs="*", default=[], help="results.json, one per (dataset, method)")
    ap.add_argument("--paper-numbers", required=True, help="reference/paper_numbers.csv")
    ap.add_argument("--params", required=True, help="params.yaml (hashed for provenance)")
    ap.add_argument("--methods", nargs="+", default=None,
                    help="row order; listed but missing: 'not run' (default: the union of params benchmark.<dataset> lists)")
    ap.add_argument("--out", required=True, help="output markdown, e.g. reports/README.md")
    ap.add_argument("--git-rev", default=None, help="revision to record (default: git rev-parse HEAD)")
    args = ap.parse_args(argv)

    prov = Provenance(git_rev=args.git_rev or git_revision(), params_hash=params_hash(args.params))
    # row order: every method of every dataset's benchmark list, first appearance first
    methods = args.methods or list(dict.fromkeys(
        m for names in lookup(load_params(Path(args.params)), "benchmark").values() for m in names))
    runs = load_results(args.results)
    numbers = load_paper_numbers(args.paper_numbers)
    write_report(render_summary(runs, numbers, methods, prov), args.out)


if __name__ == "__main__":
    main()
