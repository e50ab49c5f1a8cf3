"""Aggregation of per-stage ``results.json`` results into report tables.

A results file holds one (dataset, method) training stage with one entry per seed;
metric values are fractions in [0, 1] and are shown in percent.  Only the keys
documented in :func:`summarize_run` are read; anything else in a file is ignored.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .papers import PAPERS, PaperNumber, method_label, paper_figure

NOT_RUN = "not run"
MISSING = "—"

# Column key in RunSummary.metrics -> header.  Probe columns ("probe:<modality>") and
# the best-test column are added around these by dataset_table().
METRIC_COLUMNS: dict[str, str] = {"acc": "Acc", "macro_f1": "Macro-F1", "map": "mAP"}
BEST_TEST_KEY = "best_test_acc"
BEST_TEST_HEADER = "Best-test acc"
MODALITY_NAMES: dict[str, str] = {
    "audio": "Audio",
    "visual": "Visual",
    "rgb": "RGB",
    "flow": "Optical flow",
    "text": "Text",
}


@dataclass
class RunSummary:
    """Per-seed values of one (dataset, method) stage, as fractions, keyed by column."""

    dataset: str
    method: str
    fusion: str | None
    profile: str | None
    selection: str | None
    modalities: list[str]
    n_seeds: int
    metrics: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float | None = None

    @property
    def stage(self) -> str:
        """Stage label ``dataset/method``."""
        return f"{self.dataset}/{self.method}"


def _seed_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.lstrip("-").isdigit() else (1, key)


def _num(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def summarize_run(result: Mapping) -> RunSummary:
    """Collect the per-seed values of one parsed ``results.json``.

    Reads ``dataset``, ``method``, ``fusion``, ``profile``, ``selection``, ``modalities``
    and, per seed, ``test.acc``, ``test.macro_f1``, ``test.map``, ``test.probe_acc.<m>``,
    ``best_test_acc`` and ``wall_s``.  Missing or non-numeric values are skipped (that
    seed simply does not contribute to that column).  Seeds are read in numeric order.
    """
    seeds = result.get("seeds") or {}
    modalities = list(result.get("modalities") or [])
    metrics: dict[str, list[float]] = {}
    walls: list[float] = []

    def add(key: str, value: object) -> None:
        v = _num(value)
        if v is not None:
            metrics.setdefault(key, []).append(v)

    for key in sorted(seeds, key=_seed_order):
        seed = seeds[key] or {}
        test = seed.get("test") or {}
        for col in METRIC_COLUMNS:
            add(col, test.get(col))
        probes = test.get("probe_acc") or {}
        for mod in probes:
            if mod not in modalities:
                modalities.append(mod)
        for mod in modalities:
            add(f"probe:{mod}", probes.get(mod))
        add(BEST_TEST_KEY, seed.get(BEST_TEST_KEY))
        w = _num(seed.get("wall_s"))
        if w is not None:
            walls.append(w)
    return RunSummary(
        dataset=str(result["dataset"]),
        method=str(result["method"]),
        fusion=result.get("fusion"),
        profile=result.get("profile"),
        selection=result.get("selection"),
        modalities=modalities,
        n_seeds=len(seeds),
        metrics=metrics,
        wall_s=math.fsum(walls) if walls else None,
    )


def load_results(paths: Iterable[str | Path]) -> list[RunSummary]:
    """Parse the ``results.json`` files at ``paths`` into :class:`RunSummary` objects.

    Raises ValueError if two files describe the same (dataset, method).
    """
    runs: dict[tuple[str, str], RunSummary] = {}
    for p in sorted(str(p) for p in paths):
        with open(p, encoding="utf-8") as fh:
            run = summarize_run(json.load(fh))
        key = (run.dataset, run.method)
        if key in runs:
            raise ValueError(f"duplicate results for {run.stage}: {p}")
        runs[key] = run
    return list(runs.values())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of fractions, in percent.

    A single value has std 0.0.  Raises ValueError on an empty sequence.
    """
    if not values:
        raise ValueError("mean_std of no values")
    pct = [100.0 * v for v in values]
    mean = math.fsum(pct) / len(pct)
    std = statistics.stdev(pct) if len(pct) > 1 else 0.0
    return mean, std


def format_mean_std(values: Sequence[float], n_expected: int | None = None) -> str:
    """``"mean ± std"`` in percent with 2 decimals, or "—" for no values.

    If ``n_expected`` is given and fewer values are present, "(n=k)" is appended so a
    column averaged over a subset of the seeds is visible as such.
    """
    if not values:
        return MISSING
    mean, std = mean_std(values)
    text = f"{mean:.2f} ± {std:.2f}"
    if n_expected is not None and len(values) < n_expected:
        text += f" (n={len(values)})"
    return text


def best_indices(means: Sequence[float | None]) -> set[int]:
    """Indices of the highest mean, compared at the 2 decimals that are displayed.

    Ties (equal once rounded) are all returned.  Nothing is marked when fewer than two
    entries have a value, since "best of one" carries no information.
    """
    shown = {i: round(m, 2) for i, m in enumerate(means) if m is not None}
    if len(shown) < 2:
        return set()
    top = max(shown.values())
    return {i for i, v in shown.items() if v == top}


def bold(text: str) -> str:
    """Markdown bold."""
    return f"**{text}**"


def order_methods(requested: Sequence[str], present: Iterable[str]) -> list[str]:
    """Methods in display order: ``requested`` order first, then other present ones sorted."""
    seen = list(dict.fromkeys(requested))
    extras = sorted(set(present) - set(seen))
    return seen + extras


def ordered_datasets(runs: Iterable[RunSummary], known: Sequence[str]) -> list[str]:
    """Datasets present in ``runs``: those in ``known`` in that order, then others sorted."""
    present = {r.dataset for r in runs}
    return [d for d in known if d in present] + sorted(present - set(known))


def _dataset_fusion(runs: Iterable[RunSummary]) -> str | None:
    fusions = {r.fusion for r in runs if r.fusion}
    return fusions.pop() if len(fusions) == 1 else None


@dataclass
class Table:
    """A rendered-ready table: headers, rows of cell strings, and right-aligned columns."""

    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]


def dataset_table(
    dataset: str,
    runs: Sequence[RunSummary],
    methods: Sequence[str],
    paper_numbers: Sequence[PaperNumber],
) -> Table:
    """The summary table of one dataset.

    ``runs`` are the runs of registry ``dataset``; ``methods`` the requested display order (methods
    listed there without a run get a row of "not run"; runs of unlisted methods follow,
    sorted).  Columns: Method, n seeds, Acc, Macro-F1, mAP, one probe column per
    modality, best-test acc, then one column per seed paper with its printed accuracy
    ("—" when it has none).  The best mean of each of our metric columns is bold.
    """
    by_method = {r.method: r for r in runs if r.dataset == dataset}
    order = order_methods(methods, by_method)
    modalities: list[str] = []
    for m in order:
        if m in by_method:
            for mod in by_method[m].modalities:
                if mod not in modalities:
                    modalities.append(mod)
    ours: list[tuple[str, str]] = list(METRIC_COLUMNS.items())
    ours += [(f"probe:{mod}", f"{MODALITY_NAMES.get(mod, mod)} probe") for mod in modalities]
    ours.append((BEST_TEST_KEY, BEST_TEST_HEADER))

    cells: list[list[str]] = []
    for key, _ in ours:
        values = [by_method[m].metrics.get(key, []) if m in by_method else None for m in order]
        means = [mean_std(v)[0] if v else None for v in values]
        best = best_indices(means)
        col = []
        for i, (m, v) in enumerate(zip(order, values)):
            if v is None:
                col.append(NOT_RUN)
            else:
                text = format_mean_std(v, by_method[m].n_seeds)
                col.append(bold(text) if i in best else text)
        cells.append(col)

    fusion = _dataset_fusion(by_method.values())
    rows: list[list[str]] = []
    for i, m in enumerate(order):
        run = by_method.get(m)
        row = [method_label(m), str(run.n_seeds) if run else NOT_RUN]
        row += [col[i] for col in cells]
        for paper in PAPERS:
            hit = paper_figure(paper_numbers, paper, dataset, m, run.fusion if run else fusion)
            row.append(hit.value if hit else MISSING)
        rows.append(row)
    headers = ["Method", "n seeds"] + [h for _, h in ours] + list(PAPERS.values())
    numeric = [False] + [True] * (len(headers) - 1)
    return Table(headers=headers, rows=rows, numeric=numeric)


def wall_time_table(
    runs: Sequence[RunSummary], dataset_order: Sequence[str], methods: Sequence[str]
) -> Table:
    """Wall time per training stage (sum of the seeds' ``wall_s``), in report order."""
    rows = []
    for ds in dataset_order:
        ds_runs = {r.method: r for r in runs if r.dataset == ds}
        for m in order_methods([x for x in methods if x in ds_runs], ds_runs):
            r = ds_runs[m]
            wall = f"{r.wall_s:.1f}" if r.wall_s is not None else MISSING
            rows.append([f"`{r.stage}`", str(r.n_seeds), wall])
    return Table(headers=["Stage", "Seeds", "Wall time (s)"], rows=rows, numeric=[False, True, True])
