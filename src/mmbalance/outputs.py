"""Generated outputs: folders of per-entry files (manifests, run params; one file per listed
entry) and JSON files written one entry per line (small, readable diffs)."""

from __future__ import annotations

import json
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


def json_lines(obj, depth: int) -> str:
    """``obj`` as JSON with its first ``depth`` levels of dicts opened, one key per line, and
    every value below them on one line (keys sorted there), e.g. depth 2 for
    ``{seed: {series: {...}}}``. The opened levels keep the caller's key order."""

    def encode(value, level: int) -> str:
        if level >= depth or not isinstance(value, dict) or not value:
            return json.dumps(value, sort_keys=True)
        pad = "  " * (level + 1)
        rows = [f"{pad}{json.dumps(key)}: {encode(v, level + 1)}" for key, v in value.items()]
        return "{\n" + ",\n".join(rows) + "\n" + "  " * level + "}"

    return encode(obj, 0) + "\n"
