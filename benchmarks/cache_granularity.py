"""Check that editing one method's file makes DVC re-run only that method's runs.

Appends a comment line to a method file, refreshes the run manifests (``dvc repro --single-item
method-sources``: seconds, no training), and prints the ``dvc status`` of the stages that became
out of date, next to the stages expected from the manifests (the runs whose method files include
the edited one). The file and the manifests are restored afterwards, whatever happens.

Stages already out of date before the edit (other work in progress) are left out of the comparison.
Checked: the train/tune/experiment stages and the evaluate / costs stages (one per dataset: they
load every trained model of their dataset, and depend on the method files of that dataset's runs
only); the report stage depends on the results the re-run stages write, so it changes only once
they have run.

Usage: python benchmarks/cache_granularity.py src/mmbalance/methods/lfm.py
Exit status 0 when the stages that changed are exactly the expected ones.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MANIFEST_STAGE = "method-sources"
RUN_STAGES = ("train-", "tune-", "experiment")
DATASET_STAGES = ("evaluate@", "costs@")


def dvc(*args: str) -> str:
    """Run ``dvc`` with ``args``; its stdout (raises with stderr on failure)."""
    res = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed:\n{res.stderr}")
    return res.stdout


def status(stages: list[str]) -> dict:
    """``dvc status --json`` of ``stages``: stage → its changes."""
    return json.loads(dvc("status", "--json", *stages) or "{}")


def checked_stages() -> list[str]:
    """The training stages and the evaluate stages (reading every trained model), as their
    matrix/foreach group names (one target per group: ``dvc status`` collects each target apart)."""
    names = dvc("stage", "list", "--name-only").split()
    return sorted({n.split("@")[0] for n in names if n.startswith((*RUN_STAGES, *DATASET_STAGES))})


def expected_stages(edited: Path, manifests: Path) -> set[str]:
    """Train/tune/experiment stages whose run manifest lists ``edited`` (from ``dvc stage list``
    names and each stage's manifest dependency)."""
    runs = {p.stem for p in manifests.glob("*.json") if edited.name in json.loads(p.read_text())["files"]}
    out = set()
    for line in dvc("stage", "list", "--name-only").split():
        if line.startswith(RUN_STAGES):
            run = line.split("@")[-1].split("-", 1)[-1] if "@" in line else None
            if run in runs or (run is None and _experiment_run() in runs):
                out.add(line)
    return out


def expected_dataset_stages(edited: Path, manifests: Path) -> set[str]:
    """evaluate@<ds> / costs@<ds> of the datasets whose dataset manifest lists ``edited``."""
    datasets = {p.stem for p in (manifests / "datasets").glob("*.json")
                if edited.name in json.loads(p.read_text())["files"]}
    return {f"{stage}{ds}" for stage in DATASET_STAGES for ds in datasets}


def _experiment_run() -> str:
    import yaml

    return yaml.safe_load(Path("params.yaml").read_text())["method"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path, help="a method file, e.g. src/mmbalance/methods/lfm.py")
    ap.add_argument("--manifests", type=Path, default=Path("data/method_sources"), help="method-sources stage output")
    args = ap.parse_args()
    original = args.file.read_bytes()
    dvc("repro", "--single-item", MANIFEST_STAGE)
    stages = checked_stages()
    before = status(stages)
    try:
        args.file.write_bytes(original + b"\n# cache granularity check: this line is removed again\n")
        dvc("repro", "--single-item", MANIFEST_STAGE)
        after = status(stages)
        changed = {s for s in after if s not in before and s != MANIFEST_STAGE}
        expected = expected_stages(args.file, args.manifests) - set(before)
        expected_ds = expected_dataset_stages(args.file, args.manifests) - set(before)
        print(f"edited {args.file}; dvc status of the stages this made out of date:\n")
        print(dvc("status", *sorted(changed)) if changed else "(none)\n")
        runs = sorted(s for s in changed if s.startswith(RUN_STAGES))
        others = sorted(changed - set(runs))
        print(f"training stages changed: {len(runs)}; expected from the manifests: {len(expected)}")
        print(f"evaluate / costs stages changed: {others or 'none'}; expected: {sorted(expected_ds) or 'none'} "
              f"(the datasets this method is trained on; the report follows the results the re-run writes)")
        ok = set(runs) == expected and set(others) == expected_ds
        print("OK: only this method's runs" if ok else f"MISMATCH: unexpected {sorted(set(runs) - expected)}, "
              f"missing {sorted(expected - set(runs))}, others {others}")
        return 0 if ok else 1
    finally:
        args.file.write_bytes(original)
        dvc("repro", "--single-item", MANIFEST_STAGE)


if __name__ == "__main__":
    sys.exit(main())
