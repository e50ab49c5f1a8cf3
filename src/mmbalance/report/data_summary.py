"""What each dataset's shards hold: clips per split and the skipped clips grouped by reason.

Read from the prepare stage's ``index.json`` (``dataset``, ``splits.<split>.count`` and
``skipped``: one ``{clip_id, path, reason}`` per clip left out), so a skip is never silent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SPLIT_ORDER = ("train", "val", "test")
MAX_REASONS = 8  # the summary lists the commonest reasons; index.json lists every clip


@dataclass
class DataSummary:
    """Clip counts per split and skip counts per reason of one dataset's shards."""

    dataset: str
    source: str
    splits: dict[str, int] = field(default_factory=dict)
    reasons: Counter = field(default_factory=Counter)
    segments: int = 0  # event localisation: labelled segments per clip (0: one label per clip)

    @property
    def skipped(self) -> int:
        return sum(self.reasons.values())


def skip_reason(entry: Mapping) -> str:
    """A skip's reason without the file paths it names, so equal causes group together
    (``data/raw/x/a.mp4: file has no audio stream`` → ``file has no audio stream``;
    ``duplicate video id: data/raw/ave/trainSet.txt:94 is kept`` → ``duplicate video id``)."""
    reason = str(entry.get("reason", "")).strip()
    for path in str(entry.get("path", "")).split(", "):
        if path and reason.startswith(path):
            reason = reason[len(path):].lstrip(" :")
    words = reason.split()
    cut = next((i for i, w in enumerate(words) if "/" in w or "\\" in w), len(words))
    return " ".join(words[:cut]).rstrip(" :,;(") or "no reason recorded"


def summarize_index(index: Mapping, source: str = "index.json") -> DataSummary:
    """The DataSummary of one shard index."""
    splits = {s: int(v.get("count", 0)) for s, v in (index.get("splits") or {}).items()}
    ordered = {s: splits[s] for s in [*SPLIT_ORDER, *sorted(splits)] if s in splits}
    reasons = Counter(skip_reason(e) for e in index.get("skipped") or [])
    return DataSummary(str(index.get("dataset", "")), source, ordered, reasons, int(index.get("segments") or 0))


def load_data_summaries(paths: Iterable[str | Path]) -> dict[str, DataSummary]:
    """DataSummary per dataset from ``index.json`` files (dataset name from the index)."""
    out = {}
    for p in paths:
        path = Path(p)
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read shard index ({e})") from None
        summary = summarize_index(index, str(path))
        out[summary.dataset or path.parent.name] = summary
    return out


def data_section(summary: DataSummary) -> str:
    """One paragraph: clips per split, then skipped clips by reason (commonest first)."""
    counts = " / ".join(f"{n:,} {s}" for s, n in summary.splits.items())
    text = f"**Data.** {counts} clips in the shards"
    if summary.segments:  # event localisation: the rows scored are segments
        text += f" ({summary.segments} labelled one-second segments each: accuracies are per segment)"
    if not summary.skipped:
        return text + "; no clip skipped."
    top = sorted(summary.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = "; ".join(f"{reason} ({n})" for reason, n in top[:MAX_REASONS])
    more = f"; {len(top) - MAX_REASONS} other reasons" if len(top) > MAX_REASONS else ""
    return (f"{text}; {summary.skipped:,} skipped and listed with their paths in "
            f"`{summary.source}`: {listed}{more}.")
