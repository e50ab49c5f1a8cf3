"""Checking a raw dataset root against its adapter's expected layout, before any long work."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mmbalance.datasets import DatasetLayoutError, Skip, get_dataset


def validate(dataset: str, root: Path, split_options: dict) -> tuple[bool, list[str]]:
    """Scan ``root`` with the dataset's adapter; return (usable, report lines).

    Every skipped file is listed with its path and reason; a layout that cannot be used at all
    (missing root, no clip) gives ``usable = False`` and the adapter's message.
    """
    adapter = get_dataset(dataset)
    try:
        clips, skips = adapter.scan(root, **split_options)
    except DatasetLayoutError as err:
        return False, [f"ERROR {err}"]
    counts = Counter(c.split for c in clips)
    lines = [f"{dataset} at {root}: {len(clips)} usable clips "
             f"({', '.join(f'{s} {counts[s]}' for s in ('train', 'val', 'test') if counts[s])}), "
             f"{len(skips)} problem(s)"]
    lines += [format_skip(s) for s in skips]
    return True, lines


def format_skip(skip: Skip) -> str:
    """One report line for a skipped file."""
    return f"SKIP {skip.clip_id}: {skip.reason} [{skip.path}]"
