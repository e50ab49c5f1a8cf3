"""Per-dataset training pipelines: ``pipelines/<dataset>/dvc.yaml`` rendered from one template.

Each benchmark dataset's training stages (``train-<dataset>``, one per run of
``benchmark.<dataset>`` in params.yaml) live in a ``dvc.yaml`` of their own folder, so their
entries sit in that folder's ``dvc.lock``. DVC re-reads a stage's whole lock file in ruamel.yaml's
round-trip mode and writes it back after every stage it runs: ~4.5 s of CPU per stage when all
~400 stages shared one 26k-line lock, ~0.6 s at the largest dataset's. The files differ only in
the dataset's name, so they are generated from one template (the placeholder ``@DATASET@``);
``--check`` reports files that differ from the template's rendering (a test runs it).

    python -m mmbalance.pipelines --template pipelines/train.template.yaml --params params.yaml --out pipelines
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmbalance.params import load_params, lookup

PLACEHOLDER = "@DATASET@"
FILE = "dvc.yaml"


def render(template: str, dataset: str) -> str:
    """The template's text with every ``@DATASET@`` replaced by ``dataset``."""
    if PLACEHOLDER not in template:
        raise ValueError(f"the template names no {PLACEHOLDER}")
    return template.replace(PLACEHOLDER, dataset)


def expected(template: str, datasets: list[str]) -> dict[str, str]:
    """``<dataset>/dvc.yaml`` (relative to the output folder) → its text."""
    return {f"{ds}/{FILE}": render(template, ds) for ds in datasets}


def differences(out: Path, files: dict[str, str]) -> list[str]:
    """What differs between ``out`` and the rendered ``files``: missing or stale files, and
    pipeline files of datasets the params no longer list."""
    problems = [f"{out / rel}: {'missing' if not (out / rel).is_file() else 'differs from the template'}"
                for rel, text in files.items() if not (out / rel).is_file() or (out / rel).read_text() != text]
    listed = {str(Path(rel).parent) for rel in files}
    problems += [f"{p}: dataset not in params benchmark (remove its folder, with its dvc.lock)"
                 for p in sorted(out.glob(f"*/{FILE}")) if p.parent.name not in listed]
    return problems


def write(out: Path, files: dict[str, str]) -> list[str]:
    """Write every rendered file that is missing or differs; returns the ones written."""
    written = []
    for rel, text in files.items():
        path = out / rel
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(str(path))
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", type=Path, required=True)
    ap.add_argument("--params", type=Path, required=True, help="its benchmark block lists the datasets")
    ap.add_argument("--out", type=Path, required=True, help="folder of the per-dataset folders")
    ap.add_argument("--check", action="store_true", help="only report differences (exit status 1 if any)")
    args = ap.parse_args(argv)
    files = expected(args.template.read_text(), list(lookup(load_params(args.params), "benchmark")))
    if args.check:
        problems = differences(args.out, files)
        print("\n".join(problems) or f"{len(files)} pipeline files match {args.template}")
        return 1 if problems else 0
    written = write(args.out, files)
    print(f"wrote {len(written)} of {len(files)} pipeline files" + "".join(f"\n  {w}" for w in written))
    stale = [p for p in differences(args.out, files) if "not in params" in p]
    if stale:
        print("\n".join(stale), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
