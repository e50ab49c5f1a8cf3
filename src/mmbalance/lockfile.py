"""dvc.lock upkeep: drop the entries of stages that the dvc.yaml beside a lock no longer defines.

DVC keeps a stage's lock entry after the stage leaves its dvc.yaml (a profile switch that renders
fewer runs, a run dropped from a benchmark list), and it reads and rewrites the whole lock after
every stage it runs (~4.5 s of CPU per stage at 26k lines). ``make profile`` calls this on every
lock after rewriting params.yaml, so a smaller profile pays for its own stages only.
``git checkout dvc.lock pipelines`` brings the dropped entries back.

    python -m mmbalance.lockfile --lock dvc.lock pipelines/*/dvc.lock
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


def defined_stages() -> dict[Path, set[str]]:
    """dvc.yaml file → names of the stages it renders with the current params (``dvc stage
    list --all``: a stage outside ./dvc.yaml is listed as ``<path>/dvc.yaml:<name>``)."""
    out = subprocess.run(["dvc", "stage", "list", "--all", "--name-only"], check=True, capture_output=True, text=True)
    return group_by_file(out.stdout.split())


def group_by_file(addresses: list[str]) -> dict[Path, set[str]]:
    """DVC stage addresses (``name`` or ``<path>/dvc.yaml:name``) → {dvc.yaml path: names}."""
    files: dict[Path, set[str]] = {}
    for address in addresses:
        path, sep, name = address.rpartition(":")
        files.setdefault(Path(path if sep else "dvc.yaml"), set()).add(name)
    return files


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
    ap.add_argument("--lock", type=Path, nargs="+", required=True, help="lock files, each beside its dvc.yaml")
    args = ap.parse_args()
    defined = defined_stages()
    for lock in args.lock:
        dropped = prune_file(lock, defined.get(lock.with_name("dvc.yaml"), set()))
        print(f"{lock}: dropped {len(dropped)} entries of stages {lock.with_name('dvc.yaml')} no longer defines")


if __name__ == "__main__":
    main()
