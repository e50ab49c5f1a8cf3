"""Which model folders a dataset-wide stage (evaluate, costs) scores: the runs the profile lists."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def add_model_args(ap: argparse.ArgumentParser) -> None:
    """The options every dataset-wide stage over trained models shares: the dataset's shards, its
    model folders, the manifest that selects among them, and the dataset name."""
    ap.add_argument("--shards", type=Path, required=True, help="data/shards/<dataset> (index.json + test shards)")
    ap.add_argument("--models", nargs="*", default=[], help="model folders data/models/<dataset>/<run>, one per run")
    ap.add_argument("--runs", type=Path, default=None,
                    help="data/method_sources/datasets/<dataset>.json: only the model folders of the runs it "
                         "lists (the profile's benchmark list) are used; others are skipped with a log line")
    ap.add_argument("--dataset", default=None, help="dataset name (default: the shard index's)")


def listed_models(folders: list[str | Path], manifest: Path | None, log: Callable[[str], None] = print) -> list[Path]:
    """The folders among ``folders`` (data/models/<dataset>/<run>) whose run the dataset's
    method-sources manifest lists (``manifest_runs``: the profile's ``benchmark.<dataset>``).

    ``manifest`` None keeps every folder. Folders of other runs are trained by another profile
    (e.g. the ``full`` profile's ablations) and may sit on disk after a profile switch: scoring
    them would make this profile's results depend on what else is on the machine, so each is
    skipped with a log line. Paths that are not folders (an unmatched shell glob) are dropped.
    """
    dirs = [Path(f) for f in folders if Path(f).is_dir()]
    if manifest is None:
        return dirs
    wanted = set(manifest_runs(manifest))
    skipped = sorted(d.name for d in dirs if d.name not in wanted)
    if skipped:
        log(f"skipped {len(skipped)} model folder(s) of runs not in this profile's benchmark list: {', '.join(skipped)}")
    return [d for d in dirs if d.name in wanted]


def manifest_runs(path: Path) -> list[str]:
    """The ``runs`` of a dataset's method-sources manifest (data/method_sources/datasets/<ds>.json,
    written from the profile's ``benchmark.<dataset>`` list; the stage already depends on it)."""
    try:
        return list(json.loads(Path(path).read_text())["runs"])
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{path}: not a dataset manifest with a 'runs' list ({e})") from None
