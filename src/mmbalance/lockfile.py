"""dvc.lock upkeep: drop the entries of stages that dvc.yaml no longer defines.

DVC keeps a stage's lock entry after the stage leaves dvc.yaml (a profile switch that renders
fewer runs, a run dropped from a benchmark list), and it reads and rewrites the whole lock after
every stage it runs: ~4 s of CPU per stage at the default profile's ~340 entries. ``make profile``
calls this after rewriting params.yaml, so a smaller profile pays for its own stages only.
``git checkout dvc.lock`` brings the dropped entries back.

    python -m mmbalance.lockfile --lock dvc.lock
"""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import yaml

# a stage entry starts at two spaces of indentation under "stages:" (DVC's lock layout)
_ENTRY = re.compile(r"^  (?P<name>[^\s#][^:]*):\s*$")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses a 20k-line lock ~10x faster


def defined_stages() -> set[str]:
    """Names of the stages dvc.yaml renders with the current params (``dvc stage list``)."""
    out = subprocess.run(["dvc", "stage", "list", "--name-only"], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def prune(text: str, keep: set[str]) -> tuple[str, list[str]]:
    """``text`` (a dvc.lock) without the stage entries not in ``keep``; returns it and the dropped
    names. Lines are removed, not re-dumped, so the kept entries stay byte for byte as DVC wrote them."""
    out, dropped, skipping, in_stages = [], [], False, False
    for line in text.splitlines(keepends=True):
        if not line.startswith(" "):  # a top-level key ("schema:", "stages:")
            in_stages, skipping = line.rstrip() == "stages:", False
        elif in_stages and (m := _ENTRY.match(line.rstrip("\n"))):
            name = m.group("name").strip("'\"")
            skipping = name not in keep
            if skipping:
                dropped.append(name)
        if not skipping:
            out.append(line)
    return "".join(out), dropped


def prune_file(lock: Path, keep: set[str]) -> list[str]:
    """Prune ``lock`` in place (checked: the result parses and holds exactly the kept entries)."""
    if not lock.is_file():
        return []
    original = lock.read_text()
    before = yaml.load(original, Loader=_LOADER) or {}
    text, dropped = prune(original, keep)
    after = yaml.load(text, Loader=_LOADER) or {}
    expected = {k for k in (before.get("stages") or {}) if k in keep}
    if set(after.get("stages") or {}) != expected:
        raise ValueError(f"{lock}: unexpected layout; left unchanged (remove the stale entries with DVC instead)")
    if dropped:
        lock.write_text(text)
    return dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lock", type=Path, required=True)
    args = ap.parse_args()
    dropped = prune_file(args.lock, defined_stages())
    print(f"{args.lock}: dropped {len(dropped)} entries of stages dvc.yaml no longer defines")


if __name__ == "__main__":
    main()
