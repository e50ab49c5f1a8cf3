"""Hyper-parameter sensitivity figures (IPRM Fig. 2, OPM/OGM TPAMI 2024 Fig. 9) from the sweep
stages' results (``results/sweeps/<dataset>/<run>/<param>=<value>/results.json``).

``sensitivity_<run>.png``: one panel per swept param of the run, test accuracy (mean ± std over
seeds) against the value on evenly spaced ticks (as the papers draw their grids), Concat's
accuracy as a horizontal line and the paper's default value marked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .papers import dataset_label, run_label
from .plots import _new_figure, save_figure
from .tables import RunSummary, mean_std, summarize_run

REFERENCE = "concat"  # the papers' baseline line (Concatenation / naive fusion)
# axis labels of swept params in the papers' notation (other params by their name)
PARAM_LABELS = {"alpha": "α", "lam": "λ", "q_base": "q_base", "lambda0": "λ₀", "gamma": "γ", "T": "T"}


@dataclass(frozen=True)
class SweepPoint:
    """One sweep point's results: the run trained with ``param`` = ``value`` on a dataset."""

    summary: RunSummary
    param: str
    value: float
    default: float | None = None

    @property
    def dataset(self) -> str:
        return self.summary.dataset

    @property
    def run(self) -> str:
        return self.summary.run


def _declared_default(sweeps: Mapping | None, dataset: str, run: str, param: str) -> float | None:
    """The ``default`` params ``sweeps`` declares for (run, param) on ``dataset``, or None."""
    from mmbalance.sweeps import default_value

    for block in (sweeps or {}).values():
        if isinstance(block, Mapping) and block.get("run") == run and block.get("param") == param:
            return default_value(block, dataset)
    return None


def load_point(path: Path, sweeps: Mapping | None = None) -> SweepPoint:
    """A sweep point from its ``results.json`` (``.../<dataset>/<run>/<param>=<value>/``); its
    default from params ``sweeps``. Raises ValueError naming the file when it is not a sweep's."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the sweep results ({e})") from None
    sweep = result.get("sweep")
    if not isinstance(sweep, Mapping) or "param" not in sweep or "value" not in sweep:
        raise ValueError(f"{path}: no 'sweep' {{param, value}} record (not written by stages/sweep.py)")
    value = sweep["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: sweep value {value!r} is not a number (sensitivity figures plot numbers)")
    run = str(result.get("run") or path.parent.parent.name)  # the folder above <param>=<value>
    summary = summarize_run(result, run=run, source=str(path))
    return SweepPoint(summary, str(sweep["param"]), float(value),
                      _declared_default(sweeps, summary.dataset, run, str(sweep["param"])))


def load_sweeps(paths: Sequence[Path], sweeps: Mapping | None = None) -> list[SweepPoint]:
    """Every sweep point at ``paths``, in the order params ``sweeps`` declares (run, param) (a
    figure's panels follow it), then by value; two files of one (dataset, run, param, value) are
    an error."""
    points, seen = [], {}
    for path in sorted(Path(p) for p in paths):
        point = load_point(path, sweeps)
        key = (point.dataset, point.run, point.param, point.value)
        if key in seen:
            raise ValueError(f"duplicate sweep point {point.dataset}/{point.run} {point.param}={point.value:g}: "
                             f"{seen[key]} and {path}")
        seen[key] = path
        points.append(point)
    declared = [(b.get("run"), b.get("param")) for b in (sweeps or {}).values() if isinstance(b, Mapping)]
    rank = {key: i for i, key in reversed(list(enumerate(declared)))}
    return sorted(points, key=lambda p: (rank.get((p.run, p.param), len(rank)), p.value))


def _position(values: Sequence[float], x: float) -> float:
    """Where ``x`` lies on evenly spaced ticks of the sorted ``values`` (linear between ticks,
    clamped to the ends)."""
    import numpy as np

    return float(np.interp(x, values, range(len(values))))


def _draw_param(ax, points: Sequence[SweepPoint], reference: Sequence[float] | None) -> dict[str, object]:
    """One panel: accuracy ± std against the value, the reference line and the default marked."""
    points = sorted(points, key=lambda p: p.value)
    values = [p.value for p in points]
    stats = [mean_std(p.summary.metrics.get("acc", [])) if p.summary.metrics.get("acc") else (math.nan, 0.0)
             for p in points]
    xs = list(range(len(points)))
    entries = {run_label(points[0].run): ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], color="C0",
                                                     marker="o", markersize=4, capsize=3)}
    if reference:
        entries[f"{run_label(REFERENCE)} (default params)"] = ax.axhline(mean_std(reference)[0], color="black",
                                                                         linestyle="--", linewidth=0.9)
    label = PARAM_LABELS.get(points[0].param, points[0].param)
    default = points[0].default
    if default is not None:
        line = ax.axvline(_position(values, default), color="C3", linestyle=":", linewidth=1.2)
        entries[f"paper's default ({label} = {default:g})"] = line
    ax.set_xticks(xs, [f"{v:g}" for v in values])
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.3)
    return entries


def plot_sensitivity(dataset: str, run: str, points: Sequence[SweepPoint], reference: Sequence[float] | None,
                     path: Path) -> bool:
    """``run``'s accuracy against each swept param on ``dataset``, one panel per param (in the
    order first met); ``reference``: Concat's per-seed accuracies. False without points."""
    mine = [p for p in points if p.dataset == dataset and p.run == run]
    params = list(dict.fromkeys(p.param for p in mine))
    if not params:
        return False
    width, height = max(3.8 * len(params), 5.0), 3.6
    fig = _new_figure(width, height)
    axes = fig.subplots(1, len(params), sharey=True, squeeze=False).ravel()
    entries: dict[str, object] = {}
    for ax, param in zip(axes, params):
        entries.update(_draw_param(ax, [p for p in mine if p.param == param], reference))
    axes[0].set_ylabel("test accuracy (%)")
    seeds = sorted({p.summary.n_seeds for p in mine})
    fig.legend(list(entries.values()), list(entries), loc="lower center", ncols=len(entries), frameon=False)
    fig.subplots_adjust(bottom=0.95 / height, top=1 - 0.5 / height, left=0.7 / width, right=1 - 0.15 / width,
                        wspace=0.08)
    fig.suptitle(f"{dataset_label(dataset)}: {run_label(run)} sensitivity (mean ± std over "
                 f"{'/'.join(map(str, seeds))} seeds)")
    save_figure(fig, path)
    return True
