"""A run's per-epoch curves: ``curves.json`` beside its ``results.json``.

The training stages write the curves of every seed into one file,
``{seed: {series: {"step": [...], "value": [...]}}}``, where a series is ``<split>/<name>``: the
train loss and the methods' diagnostics under ``train/``, accuracies and probe accuracies under
``val/`` and ``test/``; the step is the epoch. The report's figures read this file. DVCLive's logs
(one folder per seed, one TSV per series; the ``experiment`` stage's, or any run's with
``--live``) hold the same points; a run's folder in ``results/`` keeps a handful of files, which
DVC hashes on every ``dvc status``.

``python -m mmbalance.evaluate.curves RUN_DIR...`` converts runs trained before this file existed
(their DVCLive logs in ``RUN_DIR/live/seed<k>/``) into ``RUN_DIR/curves.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

from mmbalance.outputs import json_lines

# seed → series → {"step": [epoch, ...], "value": [number, ...]}
Curves = dict[str, dict[str, dict[str, list]]]


def epoch_points(row: dict) -> dict[str, float]:
    """One epoch's points by series name, from a row of the loop's history (``train_loss``,
    method diagnostics, and per split ``{"acc", "probe_acc": {modality: acc}}``); a non-finite
    diagnostic is left out (DVCLive cannot plot it)."""
    out = {}
    for key, value in row.items():
        if key == "epoch":
            continue
        if isinstance(value, dict):
            out[f"{key}/acc"] = value["acc"]
            for m, acc in value["probe_acc"].items():
                out[f"{key}/probe_acc_{m}"] = acc
        elif math.isfinite(value):
            out[f"train/{key}"] = value
    return out


def from_history(history: list[dict]) -> dict[str, dict[str, list]]:
    """One seed's curves from its history (step = the row's index, as DVCLive counts steps)."""
    out: dict[str, dict[str, list]] = {}
    for step, row in enumerate(history):
        for name, value in epoch_points(row).items():
            series = out.setdefault(name, {"step": [], "value": []})
            series["step"].append(step)
            series["value"].append(float(value))
    return out


def write(path: Path, curves: Curves) -> None:
    """curves.json, one series per line (readable diffs), seeds and series sorted."""
    ordered = {seed: dict(sorted(curves[seed].items())) for seed in sorted(curves, key=int)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_lines(ordered, depth=2), encoding="utf-8")


def read(path: Path) -> Curves:
    """A run's curves.json, checked: every series has as many steps as values."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for seed, per_series in data.items():
        for name, series in per_series.items():
            if not isinstance(series, dict) or len(series.get("step", ())) != len(series.get("value", ())):
                raise ValueError(f"{path}: seed {seed}, series {name!r}: expected equally long 'step' and 'value' lists")
    return data


def read_tsv(path: Path) -> tuple[list[int], list[float]]:
    """(steps, values) of a DVCLive metric TSV (columns ``step`` and the metric's name)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{path}: empty metric file")
    header = lines[0].split("\t")
    if "step" not in header:
        raise ValueError(f"{path}: no 'step' column in header {header}")
    name = path.stem if path.stem in header else header[-1]
    si, vi = header.index("step"), header.index(name)
    steps, values = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        try:
            steps.append(int(float(cells[si])))
            values.append(float(cells[vi]))
        except (ValueError, IndexError):
            raise ValueError(f"{path}, line {n}: expected a step and a number, got {line!r}") from None
    return steps, values


def from_dvclive(live: Path) -> Curves:
    """Every seed's curves from DVCLive logs: ``live/seed<k>/plots/metrics/<split>/<name>.tsv``."""
    out: Curves = {}
    for seed_dir in sorted(live.glob("seed*")):
        metrics = seed_dir / "plots" / "metrics"
        seed = seed_dir.name.removeprefix("seed")
        out[seed] = {}
        for tsv in sorted(metrics.rglob("*.tsv")):
            steps, values = read_tsv(tsv)
            out[seed][tsv.relative_to(metrics).with_suffix("").as_posix()] = {"step": steps, "value": values}
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write RUN_DIR/curves.json from the DVCLive logs in RUN_DIR/live/.")
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (results/<dataset>/<run>)")
    args = ap.parse_args(argv)
    for run in args.runs:
        if not (run / "live").is_dir():
            raise SystemExit(f"{run}: no DVCLive folder live/ to convert")
        write(run / "curves.json", from_dvclive(run / "live"))


if __name__ == "__main__":
    main()
