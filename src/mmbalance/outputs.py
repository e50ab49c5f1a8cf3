"""Folders of generated per-entry files (manifests, run params): one file per listed entry."""

from __future__ import annotations

from pathlib import Path


def remove_unlisted(folder: Path, written: list[Path], pattern: str) -> list[Path]:
    """Delete the files of ``folder`` matching ``pattern`` (e.g. ``"*.json"``) that are not in
    ``written``: entries no longer listed leave no stale file behind. Returns ``written``."""
    for stale in set(folder.glob(pattern)) - set(written):
        stale.unlink()
    return written


def write_if_changed(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` unless it already holds exactly that: an unchanged file keeps its
    mtime (and DVC's cached hash of it). Returns ``path``."""
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path
