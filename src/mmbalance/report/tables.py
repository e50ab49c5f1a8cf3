"""Aggregation of per-stage ``results.json`` / ``robustness.json`` files into report tables.

A results file holds one (dataset, run) training stage with one entry per seed; metric
values are fractions in [0, 1] and are shown in percent.  Only the keys documented in
:func:`summarize_run` are read; anything else in a file is ignored.  Statistics use every
seed present in a file, whatever the ``seeds`` param says now.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .papers import PAPERS, PaperIndex, PaperNumber, run_label

NOT_RUN = "not run"
MISSING = "—"
NOT_AN_INPUT = "n/a"

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
    "depth": "Depth",
    "rgb_diff": "RGB difference",
    "text": "Text",
    "vision": "Vision",
    "video": "Video",
    "image": "Image",
    "question": "Question",
}
# Footnote markers, in order of first use within a table.
MARKERS = ("†", "‡", "§", "¶", "‖")


@dataclass
class RunSummary:
    """Per-seed values of one (dataset, run) stage, as fractions, keyed by column.

    ``run`` is the results folder name (``concat``, ``opm__sum``, ``gmm_al__alpha0``);
    ``method`` the registry method it trained.  ``wall``/``epochs`` map seed → wall seconds /
    epochs; ``per_class`` maps "fused" or a modality → class → per-seed accuracies.
    """

    dataset: str
    method: str
    fusion: str | None
    profile: str | None
    selection: str | None
    modalities: list[str]
    n_seeds: int
    metrics: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float | None = None
    run: str = ""
    wall: dict[str, float] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    per_class: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    device: str | None = None
    source: str | None = None
    backbone: str | None = None  # an intermediate-fusion backbone (mmtm, mmformer); None = late
    # training-step time over the costs reference run's (Concat), timed side by side by the costs
    # stage, and its 95 % interval; None without a costs file for the dataset
    step_ratio: float | None = None
    step_ratio_ci: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.run:
            self.run = self.method

    @property
    def stage(self) -> str:
        """Stage label ``dataset/run``."""
        return f"{self.dataset}/{self.run}"

    @property
    def label(self) -> str:
        """Row label (the papers' spelling of the run)."""
        return run_label(self.run)


def _seed_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.lstrip("-").isdigit() else (1, key)


def _num(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _add_per_class(out: dict[str, dict[str, list[float]]], per_class: object, source: str) -> None:
    """Merge one seed's ``per_class_acc`` ({"fused"|modality: {class: acc} or [acc, ...]})."""
    if not isinstance(per_class, Mapping):
        raise ValueError(f"{source}: per_class_acc must map 'fused' or a modality to per-class accuracies")
    for key, accs in per_class.items():
        items = accs.items() if isinstance(accs, Mapping) else enumerate(accs or [])
        for cls, v in items:
            value = _num(v)
            if value is not None:
                out.setdefault(str(key), {}).setdefault(str(cls), []).append(value)


def summarize_run(result: Mapping, run: str | None = None, source: str | None = None) -> RunSummary:
    """Collect the per-seed values of one parsed ``results.json``.

    Reads ``dataset``, ``method``, ``fusion``, ``profile``, ``selection``, ``modalities``,
    ``device`` (optional) and, per seed, ``test.acc``, ``test.macro_f1``, ``test.map``,
    ``test.probe_acc.<m>``, ``test.per_class_acc`` (optional), ``best_test_acc``, ``epochs``
    and ``wall_s``.  Missing or non-numeric values are skipped (that seed simply does not
    contribute to that column).  Seeds are read in numeric order.  ``run`` defaults to the
    file's ``run`` key, else its ``method``.
    """
    where = source or "results"
    for key in ("dataset", "method"):
        if key not in result:
            raise ValueError(f"{where}: no {key!r} key (not a results.json written by the train stage?)")
    seeds = result.get("seeds") or {}
    modalities = list(result.get("modalities") or [])
    metrics: dict[str, list[float]] = {}
    wall: dict[str, float] = {}
    epochs: dict[str, int] = {}
    per_class: dict[str, dict[str, list[float]]] = {}

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
        if test.get("per_class_acc") is not None:
            _add_per_class(per_class, test["per_class_acc"], f"{where}, seed {key}")
        w, e = _num(seed.get("wall_s")), _num(seed.get("epochs"))
        if w is not None:
            wall[key] = w
        if e:
            epochs[key] = int(e)
    return RunSummary(
        dataset=str(result["dataset"]),
        method=str(result["method"]),
        fusion=result.get("fusion"),
        backbone=result.get("backbone"),
        profile=result.get("profile"),
        selection=result.get("selection"),
        modalities=modalities,
        n_seeds=len(seeds),
        metrics=metrics,
        wall_s=math.fsum(wall.values()) if wall else None,
        run=str(run or result.get("run") or result["method"]),
        wall=wall,
        epochs=epochs,
        per_class=per_class,
        device=result.get("device"),
        source=source,
    )


def run_name_of(path: Path, result: Mapping) -> str:
    """The run a results file belongs to: its folder name for ``.../<run>/results.json``."""
    if path.name == "results.json" and path.parent.name:
        return path.parent.name
    return str(result.get("run") or result.get("method", ""))


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def load_results(paths: Iterable[str | Path]) -> list[RunSummary]:
    """Parse the ``results.json`` files at ``paths`` into :class:`RunSummary` objects.

    A run is named by its folder (``results/<dataset>/<run>/results.json``).  Raises
    ValueError if two files describe the same (dataset, run).
    """
    runs: dict[tuple[str, str], RunSummary] = {}
    for p in sorted(Path(p) for p in paths):
        result = _read_json(p)
        run = summarize_run(result, run=run_name_of(p, result), source=str(p))
        key = (run.dataset, run.run)
        if key in runs:
            raise ValueError(f"duplicate results for {run.stage}: {runs[key].source} and {p}")
        runs[key] = run
    return list(runs.values())


def mean_std_raw(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1); a single value has std 0.0."""
    if not values:
        raise ValueError("mean_std of no values")
    mean = math.fsum(values) / len(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of fractions, in percent.

    A single value has std 0.0.  Raises ValueError on an empty sequence.
    """
    return mean_std_raw([100.0 * v for v in values])


def format_raw(values: Sequence[float], n_expected: int | None = None) -> str:
    """``"mean ± std"`` with 2 decimals of values already in display units, or "—"."""
    if not values:
        return MISSING
    mean, std = mean_std_raw(values)
    text = f"{mean:.2f} ± {std:.2f}"
    if n_expected is not None and len(values) < n_expected:
        text += f" (n={len(values)})"
    return text


def format_mean_std(values: Sequence[float], n_expected: int | None = None) -> str:
    """``"mean ± std"`` in percent with 2 decimals, or "—" for no values.

    If ``n_expected`` is given and fewer values are present, "(n=k)" is appended so a
    column averaged over a subset of the seeds is visible as such.
    """
    return format_raw([100.0 * v for v in values], n_expected)


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


def competition_ranks(means: Sequence[float | None]) -> list[int | None]:
    """Rank 1 for the highest mean ("1, 1, 3" for ties at the displayed 2 decimals); None stays None."""
    shown = [round(m, 2) if m is not None else None for m in means]
    return [None if v is None else 1 + sum(1 for w in shown if w is not None and w > v) for v in shown]


def bold(text: str) -> str:
    """Markdown bold."""
    return f"**{text}**"


def order_methods(requested: Sequence[str], present: Iterable[str]) -> list[str]:
    """Runs in display order: ``requested`` order first, then other present ones sorted."""
    seen = list(dict.fromkeys(requested))
    extras = sorted(set(present) - set(seen))
    return seen + extras


def ordered_datasets(runs: Iterable, known: Sequence[str]) -> list[str]:
    """Datasets present in ``runs`` (anything with ``.dataset``): ``known`` order, then sorted."""
    present = {r.dataset for r in runs}
    return [d for d in known if d in present] + sorted(present - set(known))


@dataclass
class Table:
    """A rendered-ready table: headers, rows of cell strings, right-aligned columns, footnotes."""

    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    notes: list[str] = field(default_factory=list)


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured markdown table; numeric columns are right-aligned."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if n else "---" for n in table.numeric) + "|"
    return "\n".join([line(table.headers), rule] + [line(r) for r in table.rows])


OTHER_PROFILE_NOTE = ("not in this profile's benchmark list: its committed results, trained by the same stage "
                      "command under the `full` profile; this profile's `dvc repro` does not re-run it")


class Footnotes:
    """Markers for notes, numbered in order of first use (the same note reuses its marker)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def mark(self, notes: Sequence[str]) -> str:
        """The markers for ``notes`` (registering new ones), e.g. "†" or "†‡"; "" for none."""
        out = ""
        for n in notes:
            if n not in self.notes:
                self.notes.append(n)
            i = self.notes.index(n)
            out += MARKERS[i] if i < len(MARKERS) else f"[{i + 1}]"
        return out

    def lines(self) -> list[str]:
        """"<marker> <note>" lines."""
        return [f"{self.mark([n])} {n}" for n in self.notes]


def leaderboard_order(requested: Sequence[str], by_run: Mapping[str, RunSummary],
                      stat_ranks: Mapping[str, int] | None = None) -> tuple[list[str], dict[str, int | None]]:
    """Runs ordered by rank (the significance ranks in ``stat_ranks`` when given, else ranks of
    mean accuracy), then mean accuracy (ties: requested order, then name); runs without accuracy
    next; requested runs without results last.  Also returns each run's rank."""
    pos = {r: i for i, r in enumerate(dict.fromkeys(requested))}
    present = sorted(by_run, key=lambda r: (pos.get(r, len(pos)), r))
    means = [mean_std(by_run[r].metrics["acc"])[0] if by_run[r].metrics.get("acc") else None for r in present]
    mean_of = dict(zip(present, means))
    if stat_ranks is not None:
        ranks = {r: stat_ranks.get(r) for r in present}
    else:
        ranks = dict(zip(present, competition_ranks(means)))
    ranked = sorted((r for r in present if ranks[r] is not None), key=lambda r: (ranks[r], -(mean_of[r] or 0.0)))
    unranked = [r for r in present if ranks[r] is None]
    not_run = [r for r in pos if r not in by_run]
    return ranked + unranked + not_run, ranks


def _pct(x: float) -> str:
    return f"{100.0 * x:.2f}"


NO_PREDICTIONS = "no per-clip predictions"


def stat_cells(row, alpha: float, is_concat: bool = False, is_best_unimodal: bool = False,
               accs: Sequence[float] = ()) -> list[str]:
    """Acc [CI], Δ vs Concat [CI], Holm p, verdict vs Concat, verdict vs the best unimodal run
    for one run's ``stats.RowStats``; a run without saved predictions shows its mean ± std
    accuracy (``accs``, per seed) marked as such and no statistics."""
    from .stats import REFERENCE  # the stats module needs scipy/statsmodels; imported on use

    if row is None:
        acc = f"{format_mean_std(accs)} ({NO_PREDICTIONS})" if accs else MISSING
        return [acc] + [MISSING] * 4
    acc = f"{_pct(row.acc)} [{_pct(row.lo)}, {_pct(row.hi)}]"
    vc, vu = row.vs_concat, row.vs_unimodal
    delta = f"{100 * vc.diff:+.2f} [{100 * vc.lo:+.2f}, {100 * vc.hi:+.2f}]" if vc else MISSING
    p = _format_p(vc.p_holm) if vc else MISSING
    versus_concat = vc.verdict(alpha) if vc else (REFERENCE if is_concat else MISSING)
    versus_uni = vu.verdict(alpha) if vu else (REFERENCE if is_best_unimodal else MISSING)
    return [acc, delta, p, versus_concat, versus_uni]


def _format_p(p: float | None) -> str:
    if p is None:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


STAT_HEADERS = ["Acc [95 % CI]", "Δ vs Concat [95 % CI]", "p (Holm)", "vs Concat", "vs best unimodal"]


def dataset_table(
    dataset: str,
    runs: Sequence[RunSummary],
    methods: Sequence[str],
    paper_numbers: Sequence[PaperNumber] | PaperIndex,
    stats=None,
    alpha: float = 0.05,
    costs: CostsSummary | None = None,
    shapley: ShapleySummary | None = None,
    level: float = 0.95,
) -> Table:
    """The leaderboard of one dataset.

    ``runs`` are the runs of registry ``dataset``; ``methods`` the runs expected there (those
    without results get a row of "not run").  ``stats`` (a ``stats.DatasetStats`` computed
    from the saved predictions) gives the significance rank, the accuracy interval, the paired
    difference against Concat with its Holm-corrected p-value and the verdicts against Concat
    and the best unimodal run.  Rows by rank, then mean accuracy.  Columns: Method, n seeds,
    Rank, the statistics columns, Macro-F1, mAP (mean ± std), one probe column per modality,
    best-test acc, with ``costs`` Params, FLOPs/sample, Step time (× Concat) and Peak mem,
    with ``shapley`` one Shapley column per modality (mean [``level`` t-interval] over seeds,
    accuracy points), one column per seed paper with its printed accuracy for the row mapped to
    the run ("—" when it has none; a marked figure has a footnote), then the run name.  The
    best mean of each of our mean ± std columns is bold.
    """
    index = paper_numbers if isinstance(paper_numbers, PaperIndex) else PaperIndex(paper_numbers)
    by_run = {r.run: r for r in runs if r.dataset == dataset}
    stat_rows = stats.rows if stats is not None else {}
    order, ranks = leaderboard_order(methods, by_run, {r: s.rank for r, s in stat_rows.items()} if stats is not None else None)
    modalities: list[str] = []
    for r in order:
        for mod in by_run[r].modalities if r in by_run else ():
            if mod not in modalities:
                modalities.append(mod)
    ours: list[tuple[str, str]] = [(k, h) for k, h in METRIC_COLUMNS.items() if k != "acc"]
    ours += [(f"probe:{mod}", f"{MODALITY_NAMES.get(mod, mod)} probe") for mod in modalities]
    ours.append((BEST_TEST_KEY, BEST_TEST_HEADER))

    cells: list[list[str]] = []
    for key, _ in ours:
        values = [by_run[r].metrics.get(key, []) if r in by_run else None for r in order]
        best = best_indices([mean_std(v)[0] if v else None for v in values])
        col = []
        for i, (r, v) in enumerate(zip(order, values)):
            if v is None:
                col.append(NOT_RUN)
            else:
                text = format_mean_std(v, by_run[r].n_seeds)
                col.append(bold(text) if i in best else text)
        cells.append(col)

    notes = Footnotes()
    rows: list[list[str]] = []
    for i, r in enumerate(order):
        run = by_run.get(r)
        rank = ranks.get(r)
        row = [run_label(r), str(run.n_seeds) if run else NOT_RUN, str(rank) if rank else MISSING]
        if run is None:
            row += [NOT_RUN] * len(STAT_HEADERS)
        else:
            row += stat_cells(stat_rows.get(r), alpha, r == getattr(stats, "reference", None),
                              r == getattr(stats, "best_unimodal", None), run.metrics.get("acc", []))
        row += [col[i] for col in cells]
        if costs is not None:
            row += cost_cells(costs.runs.get(r)) if run else [NOT_RUN] * len(COST_HEADERS)
        if shapley is not None:
            row += shapley_cells(shapley, r, modalities, level) if run else [NOT_RUN] * len(modalities)
        for paper in PAPERS:
            hit = index.figure(paper, dataset, r, "acc")
            if hit is None:
                row.append(MISSING)
            else:
                row.append(hit.value + notes.mark(index.config.notes_for(paper, hit.table, hit.dataset, hit.metric)))
        # a run outside this profile's list: its committed results, which `dvc repro` here leaves alone
        other = [OTHER_PROFILE_NOTE] if methods and r not in methods else []
        row.append(f"`{r}`" + notes.mark(other))
        rows.append(row)
    headers = ["Method", "n seeds", "Rank"] + STAT_HEADERS + [h for _, h in ours]
    headers += (COST_HEADERS if costs is not None else []) + ([shapley_header(m) for m in modalities] if shapley is not None else [])
    headers += list(PAPERS.values()) + ["Run"]
    numeric = [False] + [True] * (len(headers) - 2) + [False]
    return Table(headers=headers, rows=rows, numeric=numeric, notes=notes.lines())


# --- derived metrics of paper pages -------------------------------------------------------


def our_values(run: RunSummary, metric: str, reference: RunSummary | None = None) -> list[float]:
    """Per-seed values of ``metric`` for ``run`` in display units.

    ``acc``/``macro_f1``/``map`` and probes: percent; ``epoch_seconds``: wall seconds per epoch;
    ``train_time_ratio``: wall time over ``reference``'s for each seed both ran.
    """
    if metric == "epoch_seconds":
        return [run.wall[s] / run.epochs[s] for s in run.wall if run.epochs.get(s)]
    if metric == "train_time_ratio":
        if reference is None:
            return []
        return [run.wall[s] / reference.wall[s] for s in run.wall if reference.wall.get(s)]
    return [100.0 * v for v in run.metrics.get(metric, [])]


def paper_cell(ours: Sequence[float] | None, n_expected: int, paper_value: str | None) -> tuple[str, float | None]:
    """A paper-page cell "ours mean ± std (paper value, Δ)" and our mean (None if not run).

    ``ours`` None: the run has no results → "not run (paper v)", or "—" where the paper has no
    figure either (e.g. an RGB-only row on an audio-visual dataset); an empty list: the run has
    no such value → "— (paper v)".  Δ = our mean − the paper's value, signed, 2 decimals.
    """
    paper = f"paper {paper_value}" if paper_value is not None else f"paper {MISSING}"
    if ours is None:
        return (f"{NOT_RUN} ({paper})" if paper_value is not None else MISSING), None
    if not ours:
        return f"{MISSING} ({paper})", None
    mean, _ = mean_std_raw(ours)
    text = format_raw(ours, n_expected)
    if paper_value is None:
        return f"{text} ({paper})", mean
    return f"{text} ({paper}, {mean - float(paper_value):+.2f})", mean


# --- robustness ------------------------------------------------------------------------------


@dataclass
class RobustnessSummary:
    """Missing-modality accuracies of one dataset: run → modality → per-p per-seed fractions."""

    dataset: str
    drop_probs: list[float]
    accs: dict[str, dict[str, list[list[float]]]]
    modalities: dict[str, list[str]]
    missing: list[str]
    wall_s: float | None = None
    device: str | None = None
    seed: int | None = None
    # Fig. 6 grid: (fixed_probs, varied_probs) and run → {"fixed", "varied", "acc": [pf][pv] per-seed lists}
    joint_probs: tuple[list[float], list[float]] | None = None
    joint: dict[str, dict] = field(default_factory=dict)


def _joint(entry: Mapping, probs: tuple[list[float], list[float]], source: str, run: str) -> dict | None:
    """One run's Fig. 6 grid over its seeds: {"fixed", "varied", "acc": [pf][pv] → per-seed values}."""
    out = None
    for seed in sorted(entry.get("seeds") or {}, key=_seed_order):
        grid = (entry["seeds"][seed] or {}).get("joint")
        if not grid:
            continue
        acc = grid["acc"]
        if len(acc) != len(probs[0]) or any(len(row) != len(probs[1]) for row in acc):
            raise ValueError(f"{source}: run {run}, seed {seed}: joint grid does not match joint probabilities")
        if out is None:
            out = {"fixed": grid["fixed"], "varied": grid["varied"], "acc": [[[] for _ in probs[1]] for _ in probs[0]]}
        for i, row in enumerate(acc):
            for j, v in enumerate(row):
                if _num(v) is not None:
                    out["acc"][i][j].append(float(v))
    return out


def summarize_robustness(data: Mapping, source: str = "robustness.json") -> RobustnessSummary:
    """Collect ``robustness.json`` (written by ``stages/evaluate.py``): per run and seed,
    ``drop.<modality>`` = accuracies at each of ``drop_probs``."""
    for key in ("dataset", "drop_probs", "runs"):
        if key not in data:
            raise ValueError(f"{source}: no {key!r} key (not written by the evaluate stage?)")
    probs = [float(p) for p in data["drop_probs"]]
    accs: dict[str, dict[str, list[list[float]]]] = {}
    mods: dict[str, list[str]] = {}
    for run, entry in data["runs"].items():
        mods[run] = list(entry.get("modalities") or [])
        per_mod: dict[str, list[list[float]]] = {}
        for seed in sorted(entry.get("seeds") or {}, key=_seed_order):
            for m, values in (entry["seeds"][seed].get("drop") or {}).items():
                if len(values) != len(probs):
                    raise ValueError(f"{source}: run {run}, seed {seed}, modality {m}: {len(values)} values for {len(probs)} drop_probs")
                cols = per_mod.setdefault(m, [[] for _ in probs])
                for i, v in enumerate(values):
                    if _num(v) is not None:
                        cols[i].append(float(v))
        accs[run] = per_mod
    joint_probs, joint = None, {}
    if data.get("joint"):
        joint_probs = ([float(p) for p in data["joint"]["fixed_probs"]], [float(p) for p in data["joint"]["varied_probs"]])
        for run, entry in data["runs"].items():
            grid = _joint(entry, joint_probs, source, run)
            if grid is not None:
                joint[run] = grid
    return RobustnessSummary(
        dataset=str(data["dataset"]), drop_probs=probs, accs=accs, modalities=mods,
        missing=list(data.get("missing") or []), wall_s=_num(data.get("wall_s")),
        device=data.get("device"), seed=data.get("seed"), joint_probs=joint_probs, joint=joint,
    )


def load_robustness(paths: Iterable[str | Path]) -> dict[str, RobustnessSummary]:
    """Parse ``robustness.json`` files, keyed by dataset (two for one dataset is an error)."""
    out: dict[str, RobustnessSummary] = {}
    for p in sorted(Path(p) for p in paths):
        s = summarize_robustness(_read_json(p), str(p))
        if s.dataset in out:
            raise ValueError(f"two robustness files for dataset {s.dataset!r} (second: {p})")
        out[s.dataset] = s
    return out


def format_prob(p: float) -> str:
    """Drop probability as a column header, e.g. "p=0.25"."""
    return f"p={p:g}"


def robustness_table(summary: RobustnessSummary, order: Sequence[str]) -> Table:
    """Accuracy (%) when one modality's features are zeroed with probability p, per run.

    Rows: (run, dropped modality) in ``order`` then other runs sorted; cells mean ± std over
    seeds; the best mean per (dropped modality, p) is bold; a modality the run's model does
    not take as input is "n/a"; runs asked for but without models are "not run".
    """
    runs = order_methods([r for r in order if r in summary.accs or r in summary.missing], summary.accs)
    runs += [r for r in summary.missing if r not in runs]
    mods: list[str] = []
    for r in runs:
        for m in summary.modalities.get(r, []) + list(summary.accs.get(r, {})):
            if m not in mods:
                mods.append(m)
    rows = []
    for m in mods:
        block = [summary.accs.get(r, {}).get(m) for r in runs]
        cols = []
        for i in range(len(summary.drop_probs)):
            vals = [b[i] if b is not None else None for b in block]
            best = best_indices([mean_std(v)[0] if v else None for v in vals])
            cols.append([bold(format_mean_std(v)) if j in best else format_mean_std(v) if v is not None else None
                         for j, v in enumerate(vals)])
        for j, r in enumerate(runs):
            if r in summary.missing:
                cells = [NOT_RUN] * len(summary.drop_probs)
                n = NOT_RUN
            elif block[j] is None:
                cells = [NOT_AN_INPUT] * len(summary.drop_probs)
                n = NOT_AN_INPUT
            else:
                cells = [c[j] for c in cols]
                n = str(max(len(v) for v in block[j]))
            rows.append([run_label(r), f"`{r}`", MODALITY_NAMES.get(m, m), n] + cells)
    headers = ["Method", "Run", "Dropped", "n seeds"] + [format_prob(p) for p in summary.drop_probs]
    return Table(headers=headers, rows=rows, numeric=[False, False, False] + [True] * (len(headers) - 3))


def joint_robustness_table(summary: RobustnessSummary, order: Sequence[str]) -> Table | None:
    """The Fig. 6 grid: per run and fixed drop probability of the first modality, accuracy (%)
    at each drop probability of the second (mean ± std over seeds); None without a grid."""
    if not summary.joint or summary.joint_probs is None:
        return None
    fixed_probs, varied_probs = summary.joint_probs
    runs = [r for r in order if r in summary.joint] + sorted(set(summary.joint) - set(order))
    rows = []
    for r in runs:
        g = summary.joint[r]
        for i, pf in enumerate(fixed_probs):
            rows.append([run_label(r), f"`{r}`", f"{MODALITY_NAMES.get(g['fixed'], g['fixed'])} {100 * pf:g} %",
                         MODALITY_NAMES.get(g["varied"], g["varied"])]
                        + [format_mean_std(c) for c in g["acc"][i]])
    headers = ["Method", "Run", "Missing (fixed)", "Missing (varied)"] + [f"{100 * p:g} %" for p in varied_probs]
    return Table(headers=headers, rows=rows, numeric=[False] * 4 + [True] * len(varied_probs))


def wall_time_table(
    runs: Sequence[RunSummary],
    dataset_order: Sequence[str],
    methods: Sequence[str],
    robustness: Mapping[str, RobustnessSummary] | None = None,
) -> Table:
    """Wall time per stage: training (sum of the seeds' ``wall_s``) and robustness evaluation."""
    robustness = robustness or {}
    rows = []
    for ds in dataset_order:
        ds_runs = {r.run: r for r in runs if r.dataset == ds}
        for m in order_methods([x for x in methods if x in ds_runs], ds_runs):
            r = ds_runs[m]
            wall = f"{r.wall_s:.1f}" if r.wall_s is not None else MISSING
            rows.append([f"`{r.stage}`", "train", str(r.n_seeds), wall])
        rob = robustness.get(ds)
        if rob is not None:
            n = max((len(c) for per in rob.accs.values() for cols in per.values() for c in cols), default=0)
            wall = f"{rob.wall_s:.1f}" if rob.wall_s is not None else MISSING
            rows.append([f"`{ds}/robustness`", "evaluate", str(n), wall])
    return Table(headers=["Stage", "Kind", "Seeds", "Wall time (s)"], rows=rows, numeric=[False, False, True, True])


# --- compute costs and modality contribution ------------------------------------------------


@dataclass
class RunCosts:
    """One run's costs from ``costs.json`` (``stages/costs.py``); ratio None without a reference."""

    params: int | None
    flops_per_sample: float | None
    step_ratio: float | None
    peak_bytes: int | None
    step_ratio_ci: tuple[float, float] | None = None  # 95 % interval of the median per-round ratio


@dataclass
class CostsSummary:
    """Costs of one dataset's runs and how they were measured."""

    dataset: str
    runs: dict[str, RunCosts] = field(default_factory=dict)
    reference: str | None = None
    batch_size: int | None = None
    device: str | None = None
    memory: str | None = None
    wall_s: float | None = None
    archived: dict[str, dict] = field(default_factory=dict)  # run → source {commit, date, device} (results/archive)


def summarize_costs(data: Mapping, source: str = "costs.json") -> CostsSummary:
    """Collect ``costs.json``: per run ``params``, ``flops_per_sample``, ``step_ratio``, ``peak_bytes``
    (and the ``source`` of an archived entry, ``mmbalance.report.archive``)."""
    for key in ("dataset", "runs"):
        if key not in data:
            raise ValueError(f"{source}: no {key!r} key (not written by the costs stage?)")
    runs, memory = {}, None
    for run, entry in data["runs"].items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"{source}: run {run}: expected an object of costs, got {type(entry).__name__}")
        params, peak = _num(entry.get("params")), _num(entry.get("peak_bytes"))
        runs[run] = RunCosts(params=int(params) if params is not None else None, flops_per_sample=_num(entry.get("flops_per_sample")),
                             step_ratio=_num(entry.get("step_ratio")), peak_bytes=int(peak) if peak is not None else None,
                             step_ratio_ci=_interval(entry.get("step_ratio_ci")))
        memory = memory or entry.get("memory")
    settings = data.get("settings") or {}
    return CostsSummary(dataset=str(data["dataset"]), runs=runs, reference=data.get("reference"),
                        batch_size=settings.get("batch_size"), device=data.get("device"), memory=memory,
                        wall_s=_num(data.get("wall_s")), archived=_sources(data["runs"]))


@dataclass
class ShapleySummary:
    """Per-seed Shapley values of one dataset: run → modality → values (accuracy fractions)."""

    dataset: str
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    modalities: dict[str, list[str]] = field(default_factory=dict)
    empty_set: str | None = None
    wall_s: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # run → why it has no values
    archived: dict[str, dict] = field(default_factory=dict)  # run → source {commit, date, device} (results/archive)


def summarize_shapley(data: Mapping, source: str = "shapley.json") -> ShapleySummary:
    """Collect ``shapley.json`` (``stages/evaluate.py --shapley``): per run and seed, ``shapley.<modality>``."""
    for key in ("dataset", "runs"):
        if key not in data:
            raise ValueError(f"{source}: no {key!r} key (not written by the evaluate stage?)")
    values: dict[str, dict[str, list[float]]] = {}
    mods: dict[str, list[str]] = {}
    for run, entry in data["runs"].items():
        mods[run] = list(entry.get("modalities") or [])
        per = values.setdefault(run, {})
        for seed in sorted(entry.get("seeds") or {}, key=_seed_order):
            for m, v in ((entry["seeds"][seed] or {}).get("shapley") or {}).items():
                if _num(v) is not None:
                    per.setdefault(m, []).append(float(v))
    return ShapleySummary(dataset=str(data["dataset"]), values=values, modalities=mods,
                          empty_set=data.get("empty_set"), wall_s=_num(data.get("wall_s")),
                          skipped={str(k): str(v) for k, v in (data.get("skipped") or {}).items()},
                          archived=_sources(data["runs"]))


def _sources(entries: Mapping) -> dict[str, dict]:
    """{run: source} of the archived entries (``mmbalance.report.archive``); {} for a stage's own file."""
    return {run: dict(e["source"]) for run, e in entries.items() if isinstance(e, Mapping) and isinstance(e.get("source"), Mapping)}


def with_archived_costs(costs: Mapping[str, CostsSummary], archived: Mapping[str, CostsSummary]) -> dict[str, CostsSummary]:
    """``costs`` with, for each dataset, the archived entries of the runs its costs file lacks
    (runs of another profile; results/archive/<dataset>/costs.json)."""
    out = dict(costs)
    for ds, arch in archived.items():
        cur = out.get(ds) or CostsSummary(ds)
        extra = {r: c for r, c in arch.runs.items() if r not in cur.runs}
        out[ds] = replace(cur, runs={**cur.runs, **extra}, archived={**cur.archived, **{r: arch.archived[r] for r in extra}},
                          memory=cur.memory or arch.memory, reference=cur.reference or arch.reference)
    return out


def with_archived_shapley(shapley: Mapping[str, ShapleySummary],
                          archived: Mapping[str, ShapleySummary]) -> dict[str, ShapleySummary]:
    """``shapley`` with, for each dataset, the archived values of the runs its Shapley file lacks."""
    out = dict(shapley)
    for ds, arch in archived.items():
        cur = out.get(ds) or ShapleySummary(ds)
        extra = [r for r in arch.values if r not in cur.values and arch.values[r]]
        out[ds] = replace(cur, values={**cur.values, **{r: arch.values[r] for r in extra}},
                          modalities={**cur.modalities, **{r: arch.modalities[r] for r in extra}},
                          archived={**cur.archived, **{r: arch.archived[r] for r in extra}},
                          empty_set=cur.empty_set or arch.empty_set)
    return out


def _load_by_dataset(paths: Iterable[str | Path], summarize, what: str) -> dict:
    out = {}
    for p in sorted(Path(p) for p in paths):
        s = summarize(_read_json(p), str(p))
        if s.dataset in out:
            raise ValueError(f"two {what} files for dataset {s.dataset!r} (second: {p})")
        out[s.dataset] = s
    return out


def with_step_ratios(runs: Sequence[RunSummary], costs: Mapping[str, CostsSummary]) -> list[RunSummary]:
    """``runs`` with each one's side-by-side step-time ratio from its dataset's costs (unchanged
    where the costs stage did not time the run)."""
    out = []
    for r in runs:
        entry = costs[r.dataset].runs.get(r.run) if r.dataset in costs else None
        out.append(r if entry is None or entry.step_ratio is None
                   else replace(r, step_ratio=entry.step_ratio, step_ratio_ci=entry.step_ratio_ci))
    return out


def _interval(value) -> tuple[float, float] | None:
    """A costs.json ``[low, high]`` interval as numbers; None when absent (too few rounds for one,
    or costs measured before intervals were recorded, e.g. archived ones)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"costs.json: step_ratio_ci must be [low, high], got {value!r}")
    low, high = (_num(v) for v in value)
    return None if low is None or high is None else (low, high)


def format_ratio(ratio: float | None, interval: tuple[float, float] | None = None, unit: str = "") -> str:
    """A step-time ratio with two decimals and ``unit`` and, when known, its [low, high]
    interval; "—" for None."""
    if ratio is None:
        return MISSING
    return f"{ratio:.2f}{unit}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def load_costs(paths: Iterable[str | Path]) -> dict[str, CostsSummary]:
    """Parse ``costs.json`` files, keyed by dataset (two for one dataset is an error)."""
    return _load_by_dataset(paths, summarize_costs, "costs")


def load_shapley(paths: Iterable[str | Path]) -> dict[str, ShapleySummary]:
    """Parse ``shapley.json`` files, keyed by dataset (two for one dataset is an error)."""
    return _load_by_dataset(paths, summarize_shapley, "shapley")


def seed_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean and Student-t interval of the mean over seeds (None, None for a single value)."""
    from scipy import stats  # imported on use, as the statistics module does

    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None, None
    sem = statistics.stdev(values) / math.sqrt(len(values))
    if sem == 0.0:
        return mean, mean, mean
    lo, hi = stats.t.interval(level, len(values) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def format_interval(values: Sequence[float], level: float = 0.95) -> str:
    """Accuracy points (percent) ``"mean [lo, hi]"`` over seeds, ``"mean"`` for one seed, "—" for none."""
    if not values:
        return MISSING
    mean, lo, hi = seed_interval([100.0 * v for v in values], level)
    return f"{mean:.2f}" if lo is None else f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def format_count(x: float | None, unit: str = "") -> str:
    """``12.3 k``, ``4.56 M``, ``7.89 G`` (three significant digits), "—" for None."""
    if x is None:
        return MISSING
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}".rstrip()
    return f"{x:.3g} {unit}".rstrip()


def format_bytes(n: int | None) -> str:
    """Bytes in MiB with one decimal (GiB from 1 GiB), "—" for None."""
    if n is None:
        return MISSING
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


COST_HEADERS = ["Params", "FLOPs/sample", "Step time (× Concat)", "Peak mem"]


def cost_cells(costs: RunCosts | None) -> list[str]:
    """Params, forward FLOPs per sample, step time relative to the reference, peak memory."""
    if costs is None:
        return [MISSING] * len(COST_HEADERS)
    ratio = format_ratio(costs.step_ratio, costs.step_ratio_ci)
    return [format_count(costs.params), format_count(costs.flops_per_sample), ratio, format_bytes(costs.peak_bytes)]


def shapley_header(modality: str) -> str:
    """Column header of a modality's Shapley value."""
    return f"Shapley {MODALITY_NAMES.get(modality, modality)}"


def shapley_cells(summary: ShapleySummary, run: str, modalities: Sequence[str], level: float = 0.95) -> list[str]:
    """One cell per modality: mean [t-interval] over seeds in accuracy points, "n/a" for a
    modality the run's model does not take, "—" for a run the file lacks."""
    if run not in summary.values:
        return [MISSING] * len(modalities)
    own = summary.modalities.get(run) or list(summary.values[run])
    return [format_interval(summary.values[run].get(m, []), level) if m in own else NOT_AN_INPUT for m in modalities]
