"""Imbalance diagnostics of the seed methods as PNG figures, after the papers' analysis figures.

Drawn per dataset into ``<plots>/<dataset>/`` from the runs' curves (curves.json, mean over seeds)
and, for GMM-AL's histogram, the end-of-run ``diagnostics`` that ``fit`` stores per seed in
``results.json``:

- ``gmm_gap.png`` (GMM-AL Fig. 2/3): histogram of the training-set gaps g = s^a_y − s^v_y at
  the first and the last adaptive fit with the fitted components π_k·N(μ_k, σ_k²), and the
  mixture's means and imbalanced weight at every fit (first seed with diagnostics);
- ``gmm_probes.png`` (GMM-AL Fig. 4): each modality's probe accuracy and the fused accuracy per
  epoch (validation, as the paper), concat beside GMM-AL, the warm-up end marked;
- ``rho.png`` (OPM/OGM Fig. 5): discrepancy ratio ρ^m per epoch of concat and the OPM/OGM runs;
- ``opm_q.png`` (OPM/OGM Fig. 7): OPM's drop probability q^m in effect and the fraction of
  samples actually dropped per epoch;
- ``arl.png`` (ARL Fig. 3): dependency ratio d^m/d^r against inverse-variance ratio q^m/q^r,
  and the coefficients a^m per epoch;
- ``iprm.png``: IPRM's EMA weight λ and probe ω per epoch (one panel per modality pair);
- ``acting.png``: every rebalancing run's distinguishing quantity (``Method.acting``: a
  modulation coefficient, drop rate, loss weight, lr ratio…) per epoch, one panel per run, its
  no-op value as a black line: a curve lying on that line is a method that did nothing (on the
  ARL page, whose Table 1 compares the most of these methods).
- ``sensitivity_<run>.png`` (IPRM Fig. 2, OPM/OGM Fig. 9): the run's accuracy against each
  swept param, from the sweep stages' results (:mod:`.sweeps`), Concat's accuracy as a line.

A figure whose runs have no results is not drawn; the paper page then says "not run" (or "no
data" when the results predate the logged quantity). Figures are deterministic, as in
:mod:`.plots`.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mmbalance.evaluate.predictions import reference_run

from .papers import dataset_label, run_label
from .plots import STYLE, Curves, _integer_epochs, _new_figure, mean_curve, save_figure
from .sweeps import REFERENCE, SweepPoint, plot_sensitivity
from .tables import MODALITY_NAMES, RunSummary

# Runs each figure draws, in legend order (the main run of the family first).
GMM_RUNS = ("gmm_al",)
RHO_RUNS = ("concat", "ogm_ge", "ogm", "ogm_code", "ogm_star", "opm", "opm_code", "opm_ogm")
OPM_RUNS = ("opm", "opm_code", "opm_ogm")
ARL_RUNS = ("arl", "arl_code", "arl_ur", "arl_al", "arl_al_gr", "arl_ur_al")
# ARL Fig. 1 (CREMA-D): Concat's branches, Concat against "a*5", and both runs' ratios
FIG1_SCALED, FIG1_VANILLA = "grad_scale__audio5", "grad_scale__none"
IPRM_RUNS = ("iprm", "iprm__linear_mixup", "iprm__no_ema", "iprm__one_pass", "iprm__single_cls")
ACTING_RUNS = ("ogm_ge", "ogm", "ogm_code", "ogm_star", "opm", "opm_code", "opm_ogm", "arl", "iprm", "gmm_al",
               "g_blending", "greedy", "pmr", "agm", "mla", "dr", "mmpareto", "reconboost", "lfm", "mslr",
               "moddrop", "unimodal_loss", "mmcosine", "umt", "mbsd", "cml", "amco", "valuation",
               "valuation__modality_level", "dropout", "annealed_dropout", "evolutional_dropout",
               "curriculum_dropout", FIG1_SCALED)

# A run's per-seed end-of-run diagnostics: seed → dict (``results.json`` seeds.<k>.diagnostics).
SeedDiagnostics = dict[str, dict]


@dataclass(frozen=True)
class RunData:
    """What a figure may read of one run: its results, curves and per-seed diagnostics."""

    summary: RunSummary
    curves: Curves
    diagnostics: SeedDiagnostics
    sweep: tuple[SweepPoint, ...] = ()  # the run's sensitivity points on this dataset


@dataclass(frozen=True)
class Drawn:
    """One diagnostics figure of one dataset: its link (relative to the pages) or why it is missing."""

    paper: str
    name: str
    label: str
    dataset: str
    path: str | None = None
    reason: str = ""


def load_diagnostics(results_path: str | Path | None) -> SeedDiagnostics:
    """Per-seed ``diagnostics`` dicts of a ``results.json`` (seeds without any are left out)."""
    if results_path is None:
        return {}
    path = Path(results_path)
    try:
        seeds = json.loads(path.read_text(encoding="utf-8")).get("seeds") or {}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the run's diagnostics ({e})") from None
    return {k: v["diagnostics"] for k, v in seeds.items() if isinstance(v, dict) and v.get("diagnostics")}


def _modalities(curves: Curves, prefix: str) -> list[str]:
    """Suffixes of the series ``prefix<suffix>`` in ``curves``, sorted."""
    return sorted(s.removeprefix(prefix) for s in curves if s.startswith(prefix))


def _with_series(data: Mapping[str, RunData], names: Sequence[str], prefix: str) -> list[str]:
    """Runs among ``names`` (in that order) that logged a series starting with ``prefix``."""
    return [r for r in names if r in data and _modalities(data[r].curves, prefix)]


def _legend(fig, entries: dict[str, object], height: float) -> None:
    fig.legend(list(entries.values()), list(entries), loc="lower center", ncols=min(len(entries), 5),
               frameon=False, bbox_to_anchor=(0.5, 0.02 / height))


def _finish(fig, axes, title: str, entries: dict[str, object], width: float, height: float) -> None:
    """Epoch axes, one legend below the panels, the title above, fixed margins."""
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        _integer_epochs(ax)
    rows = math.ceil(len(entries) / 5)
    _legend(fig, entries, height)
    fig.subplots_adjust(bottom=(0.55 + 0.18 * rows) / height, top=1 - 0.5 / height,
                        left=0.6 / width, right=1 - 0.15 / width, wspace=0.28)
    fig.suptitle(title)


# A panel: (title, y label, [(series, line style, what the style means)]).
Panel = tuple[str, str, list[tuple[str, str, str]]]


def plot_series(title: str, panels: Sequence[Panel], runs: Sequence[str], data: Mapping[str, RunData], path: Path,
                hline: float | None = None) -> bool:
    """Curves (mean over seeds) of several runs, one colour per run and one line style per
    series of a panel; False if no run has any of the series."""
    if not runs:
        return False
    width, height = max(4.2 * len(panels), 6.5), 3.6 + 0.18 * math.ceil((len(runs) + 3) / 5)
    fig = _new_figure(width, height)
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    entries: dict[str, object] = {}  # runs (colours), then what each line style means
    styles: dict[str, object] = {}
    for ax, (panel_title, ylabel, series) in zip(axes, panels):
        for i, r in enumerate(runs):
            for key, style, meaning in series:
                if key in data[r].curves:
                    x, y = mean_curve(data[r].curves[key])
                    line = ax.plot(x, y, color=f"C{i % 10}", linestyle=style)[0]
                    entries.setdefault(run_label(r), line)
                    if meaning:
                        styles.setdefault(meaning, ax.plot([], [], color="grey", linestyle=style)[0])
        if hline is not None:
            ax.axhline(hline, color="black", linewidth=0.6, alpha=0.6)
        ax.set_title(panel_title)
        ax.set_ylabel(ylabel)
    _finish(fig, axes, title, {**entries, **styles}, width, height)
    save_figure(fig, path)
    return True


def _name(m: str) -> str:
    return MODALITY_NAMES.get(m, m)


def plot_rho(dataset: str, data: Mapping[str, RunData], path: Path) -> bool:
    """ρ^m per epoch, one panel per modality (OPM/OGM Fig. 5); needs an OPM/OGM run."""
    runs = _with_series(data, RHO_RUNS, "train/rho_")
    if not [r for r in runs if r != "concat"]:
        return False
    mods = list(dict.fromkeys(m for r in runs for m in _modalities(data[r].curves, "train/rho_")))
    panels = [(f"ρ of {_name(m)}", "discrepancy ratio ρ", [(f"train/rho_{m}", "-", "")]) for m in mods]
    return plot_series(f"{dataset_label(dataset)}: discrepancy ratio per epoch (mean over seeds)", panels, runs, data, path,
                       hline=1.0)


def plot_opm_q(dataset: str, data: Mapping[str, RunData], path: Path) -> bool:
    """OPM's drop probability q^m in effect and the dropped fraction per epoch (OPM/OGM Fig. 7)."""
    runs = _with_series(data, OPM_RUNS, "train/q_")
    mods = list(dict.fromkeys(m for r in runs for m in _modalities(data[r].curves, "train/q_")))
    panels = [(_name(m), "probability", [(f"train/q_{m}", "-", "drop probability q"),
                                                        (f"train/dropped_{m}", ":", "fraction dropped")]) for m in mods]
    return plot_series(f"{dataset_label(dataset)}: OPM drop probability per epoch (mean over seeds)", panels, runs, data, path)


def plot_arl(dataset: str, data: Mapping[str, RunData], path: Path) -> bool:
    """d^m/d^r against q^m/q^r per non-reference modality, and the coefficients a^m (ARL Fig. 3)."""
    runs = _with_series(data, ARL_RUNS, "train/arl_d_ratio_")
    if not runs:
        return False
    ratio_mods = list(dict.fromkeys(m for r in runs for m in _modalities(data[r].curves, "train/arl_d_ratio_")))
    coef_mods = list(dict.fromkeys(m for r in runs for m in _modalities(data[r].curves, "train/arl_a_")))
    styles = ("-", "--", ":", "-.")
    # the reference modality r is the one without ratios of its own (ARL Eq. 18: m1)
    refs = [m for m in coef_mods if m not in ratio_mods]
    ref = _name(refs[0]) if len(refs) == 1 else "reference"
    panels: list[Panel] = [(f"{_name(m)} / {ref}", "ratio", [(f"train/arl_d_ratio_{m}", "-", "dependency ratio d"),
                                                                 (f"train/arl_q_ratio_{m}", "--", "inverse-variance ratio q")])
                           for m in ratio_mods]
    panels.append(("coefficients a", "a", [(f"train/arl_a_{m}", styles[k % 4], f"a of {_name(m)}")
                                           for k, m in enumerate(coef_mods)]))
    return plot_series(f"{dataset_label(dataset)}: ARL dependency vs variance ratio and coefficients (mean over seeds)",
                       panels, runs, data, path)


def plot_arl_fig1(dataset: str, data: Mapping[str, RunData], path: Path) -> bool:
    """ARL Fig. 1: (a) each modality's probe accuracy in Concat per epoch, (b) test accuracy of
    Concat and of Concat with the audio gradient × 5 ("a*5"), (c) the dependency ratio d_a/d_v
    (Eq. 4) and inverse-variance ratio q_a/q_v (Eq. 17) of both (the vanilla one logged by the
    unscaled ``grad_scale__none`` run, which trains exactly as Concat)."""
    if FIG1_SCALED not in data or "concat" not in data:
        return False
    ratio_runs = [r for r in (FIG1_VANILLA, FIG1_SCALED) if r in data]
    mods = _modalities(data[FIG1_SCALED].curves, "train/arl_d_ratio_")
    if not mods:
        return False
    width, height = 13.0, 4.2
    fig = _new_figure(width, height)
    axes = fig.subplots(1, 3).ravel()
    entries: dict[str, object] = {}

    def curve(ax, run: str, key: str, colour: str, style: str = "-"):
        if key not in data[run].curves:
            return None
        x, y = mean_curve(data[run].curves[key])
        return ax.plot(x, y, color=colour, linestyle=style)[0]

    for k, m in enumerate(_modalities(data["concat"].curves, "test/probe_acc_")):
        line = curve(axes[0], "concat", f"test/probe_acc_{m}", f"C{k + 3}")
        if line is not None:
            entries[f"{_name(m)} branch of Concat"] = line
    for i, r in enumerate(("concat", FIG1_SCALED)):
        line = curve(axes[1], r, "test/acc", f"C{i}")
        if line is not None:
            entries.setdefault(run_label(r), line)
    for r in ratio_runs:
        colour = "C0" if r == FIG1_VANILLA else "C1"
        for m in mods:
            curve(axes[2], r, f"train/arl_d_ratio_{m}", colour, "-")
            curve(axes[2], r, f"train/arl_q_ratio_{m}", colour, "--")
    entries.setdefault(run_label("concat"), axes[2].plot([], [], color="C0")[0])
    entries["dependency ratio d (c)"] = axes[2].plot([], [], color="grey", linestyle="-")[0]
    entries["inverse-variance ratio q (c)"] = axes[2].plot([], [], color="grey", linestyle="--")[0]
    ref = next(iter(set(data[FIG1_SCALED].summary.modalities or []) - set(mods)), "reference")
    for ax, title, ylabel in zip(axes, ("(a) unimodal branches of Concat", "(b) multimodal, audio gradient × 5",
                                        f"(c) {', '.join(_name(m) for m in mods)} / {_name(ref)} ratios"),
                                 ("test accuracy", "test accuracy", "ratio")):
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    _finish(fig, axes, f"{dataset_label(dataset)}: ARL Fig. 1 (mean over seeds)", entries, width, height)
    save_figure(fig, path)
    return True


def plot_iprm(dataset: str, data: Mapping[str, RunData], path: Path) -> bool:
    """IPRM's λ (EMA mixing weight) and ω (probe) per epoch, one panel per modality pair."""
    runs = _with_series(data, IPRM_RUNS, "train/lambda_")
    pairs = list(dict.fromkeys(p for r in runs for p in _modalities(data[r].curves, "train/lambda_")))
    panels = [(" vs ".join(_name(m) for m in p.split("_vs_")), "weight of the first modality",
               [(f"train/lambda_{p}", "-", "λ (mixing)"), (f"train/omega_{p}", "--", "ω (probe)")]) for p in pairs]
    return plot_series(f"{dataset_label(dataset)}: IPRM λ and ω per epoch (mean over seeds)", panels, runs, data, path,
                       hline=0.5)


def acting_series_of(run: RunData) -> tuple[dict, list[str]] | None:
    """(the run's method's ``acting`` declaration, its ``train/`` series), or None when the method
    declares none (plain baselines) or the run logged none of them (results predating it)."""
    from mmbalance.methods import METHODS  # the declarations live on the method classes

    if run.summary.method not in METHODS or not METHODS.get(run.summary.method).acting:
        return None
    acting = METHODS.get(run.summary.method).acting
    keys = sorted(k for k in run.curves if fnmatch.fnmatchcase(k, f"train/{acting['key']}"))
    return (acting, keys) if keys else None


def plot_acting(dataset: str, data: Mapping[str, RunData], path: Path) -> bool:
    """One panel per run: its distinguishing quantity per epoch (mean over seeds), the no-op value
    as a black line; False if no run logged one."""
    found = {r: a for r in data if (a := acting_series_of(data[r])) is not None}
    if not found:
        return False
    cols = min(4, len(found))
    rows = math.ceil(len(found) / cols)
    width, height = 3.3 * cols, 2.5 * rows + 0.7
    fig = _new_figure(width, height)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (r, (acting, keys)) in zip(axes, found.items()):
        for i, key in enumerate(keys):
            x, y = mean_curve(data[r].curves[key])
            ax.plot(x, y, color=f"C{i % 10}", marker="." if len(x) < 5 else None, label=key.removeprefix("train/"))
        ax.axhline(float(acting["noop"]), color="black", linewidth=0.6, alpha=0.6)
        ax.set_title(run_label(r))
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
        _integer_epochs(ax)
    for ax in axes[len(found):]:
        ax.set_visible(False)
    fig.suptitle(f"{dataset_label(dataset)}: each method's distinguishing quantity per epoch (mean over seeds; "
                 "black: its no-op value)", y=1 - 0.15 / height)  # in the top margin, clear of the first row
    fig.subplots_adjust(bottom=0.45 / height, top=1 - 0.75 / height, left=0.5 / width, right=1 - 0.15 / width,
                        wspace=0.3, hspace=0.55)
    save_figure(fig, path)
    return True


def plot_gmm_probes(dataset: str, data: Mapping[str, RunData], path: Path) -> bool:
    """Probe accuracy per modality and fused accuracy per epoch, concat beside GMM-AL (Fig. 4)."""
    if not _with_series(data, GMM_RUNS, "test/probe_acc_"):
        return False
    split = "val" if "val/acc" in data["gmm_al"].curves else "test"
    runs = [r for r in ("concat", "gmm_al") if r in data and _modalities(data[r].curves, f"{split}/probe_acc_")]
    mods = list(dict.fromkeys(m for r in runs for m in _modalities(data[r].curves, f"{split}/probe_acc_")))
    width, height = 4.2 * len(runs) + 0.8, 3.8
    fig = _new_figure(width, height)
    axes = fig.subplots(1, len(runs), sharey=True, squeeze=False).ravel()
    entries: dict[str, object] = {}
    for ax, r in zip(axes, runs):
        curves = data[r].curves
        for k, m in enumerate(mods):
            if f"{split}/probe_acc_{m}" in curves:
                x, y = mean_curve(curves[f"{split}/probe_acc_{m}"])
                entries[f"{_name(m)} probe"] = ax.plot(x, [100 * v for v in y], color=f"C{k}")[0]
        if f"{split}/acc" in curves:
            x, y = mean_curve(curves[f"{split}/acc"])
            entries["Fused"] = ax.plot(x, [100 * v for v in y], color="black", linewidth=0.9)[0]
        warmup = _warmup_end(data[r])
        if warmup is not None:
            entries["adaptive phase starts"] = ax.axvline(warmup - 0.5, color="grey", linestyle=":")
        ax.set_title(run_label(r))
    axes[0].set_ylabel(f"{'validation' if split == 'val' else 'test'} accuracy (%)")
    _finish(fig, axes, f"{dataset_label(dataset)}: unimodal and fused accuracy per epoch (mean over seeds)",
            entries, width, height)
    save_figure(fig, path)
    return True


def _warmup_end(run: RunData) -> int | None:
    """First adaptive epoch of a GMM-AL run (from its diagnostics, else its first GMM fit)."""
    for diag in run.diagnostics.values():
        if "warmup_epochs" in diag:
            return int(diag["warmup_epochs"])
    fit = run.curves.get("train/gmm_mu0")
    return min(min(steps) for steps, _ in fit.values() if steps) if fit else None


def gaussian_density(x: Sequence[float], weight: float, mean: float, var: float) -> list[float]:
    """weight·N(x; mean, var) at each x."""
    var = max(float(var), 1e-12)
    return [weight * math.exp(-0.5 * (v - mean) ** 2 / var) / math.sqrt(2 * math.pi * var) for v in x]


def _gmm_seed(run: RunData) -> tuple[str, dict] | None:
    """(seed, diagnostics) of the first seed that recorded a gap histogram."""
    for seed in sorted(run.diagnostics, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s)):
        if run.diagnostics[seed].get("histograms", {}).get("first"):
            return seed, run.diagnostics[seed]
    return None


def _fit_at(diag: dict, epoch: int) -> dict | None:
    return next((f for f in diag.get("fits", []) if f["epoch"] == epoch), None)


def _draw_histogram(ax, hist: dict, fit: dict | None) -> None:
    """Gap histogram as a density, the two weighted components and their sum."""
    edges, counts = hist["edges"], hist["counts"]
    n = max(sum(counts), 1)
    widths = [b - a for a, b in zip(edges, edges[1:])]
    ax.bar(edges[:-1], [c / (n * w) for c, w in zip(counts, widths)], width=widths, align="edge",
           color="C0", alpha=0.45, edgecolor="C0", linewidth=0.3, label="gaps (density)")
    if fit is not None:
        x = [edges[0] + (edges[-1] - edges[0]) * i / 400 for i in range(401)]
        parts = [gaussian_density(x, w, mu, var) for w, mu, var in zip(fit["weights"], fit["means"], fit["vars"])]
        for k, (ys, colour, name) in enumerate(zip(parts, ("C3", "C2"), ("balanced", "imbalanced"))):
            ax.plot(x, ys, color=colour, linestyle="--",
                    label=f"{name}: π={fit['weights'][k]:.3f}, μ={fit['means'][k]:.3f}")
        ax.plot(x, [a + b for a, b in zip(*parts)], color="black", linewidth=0.9, label="mixture")
    ax.set_title(f"gaps at the fit of epoch {hist['epoch']}")
    ax.set_xlabel("modality gap g")
    ax.set_ylabel("density")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")


def plot_gmm_gap(dataset: str, data: Mapping[str, RunData], path: Path) -> bool:
    """Gap histograms with the fitted mixture (first and last fit) and the mixture at every fit."""
    run = data.get("gmm_al")
    picked = _gmm_seed(run) if run is not None else None
    if picked is None:
        return False
    seed, diag = picked
    hists = [diag["histograms"]["first"]]
    last = diag["histograms"].get("last")
    if last and last["epoch"] != hists[0]["epoch"]:
        hists.append(last)
    width, height = 4.6 * (len(hists) + 1), 3.8
    fig = _new_figure(width, height)
    axes = fig.subplots(1, len(hists) + 1, squeeze=False).ravel()
    for ax, hist in zip(axes, hists):
        _draw_histogram(ax, hist, _fit_at(diag, hist["epoch"]))
    ax = axes[-1]
    fits = diag.get("fits", [])
    epochs = [f["epoch"] for f in fits]
    for values, colour, label in (([f["means"][0] for f in fits], "C3", "μ balanced"),
                                  ([f["means"][1] for f in fits], "C2", "μ imbalanced"),
                                  ([f["weights"][1] for f in fits], "C1", "π imbalanced")):
        ax.plot(epochs, values, color=colour, marker="o", markersize=3, label=label)
    ax.set_title("mixture at every fit")
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    _integer_epochs(ax)
    first, second = (diag.get("order") or ["first", "second"])[:2]
    fig.suptitle(f"{dataset_label(dataset)}: GMM-AL gap g = s_y({_name(first)}) − s_y({_name(second)}) "
                 f"on the training set, seed {seed}")
    fig.subplots_adjust(bottom=0.5 / height, top=1 - 0.55 / height, left=0.5 / width, right=1 - 0.15 / width, wspace=0.25)
    save_figure(fig, path)
    return True


def with_sweeps(data: Mapping[str, RunData], points: Sequence[SweepPoint]) -> dict[str, RunData]:
    """``data`` with each run's sweep points attached; a run swept but without benchmark results
    enters with its first point's summary and no curves (so only its sensitivity figure shows it)."""
    out = dict(data)
    for run in dict.fromkeys(p.run for p in points):
        mine = tuple(p for p in points if p.run == run)
        base = out.get(run) or RunData(mine[0].summary, {}, {})
        out[run] = replace(base, sweep=mine)
    return out


def sensitivity(run: str) -> Callable[[str, Mapping[str, RunData], Path], bool]:
    """The drawing function of ``sensitivity_<run>.png``: the run's sweep points, Concat's
    per-seed accuracy (when it ran) as the reference line."""
    def draw(dataset: str, data: Mapping[str, RunData], path: Path) -> bool:
        if run not in data or not data[run].sweep:
            return False
        reference = data[REFERENCE].summary.metrics.get("acc") if REFERENCE in data else None
        return plot_sensitivity(dataset, run, data[run].sweep, reference, path)
    return draw


@dataclass(frozen=True)
class Figure:
    """A diagnostics figure: the paper page it belongs to, file stem, caption, the runs it can
    draw, the main ones among them (named when none ran) and its drawing function."""

    paper: str
    name: str
    label: str
    runs: tuple[str, ...]
    main: tuple[str, ...]
    draw: Callable[[str, Mapping[str, RunData], Path], bool]
    sweep: bool = False  # drawn from the sweep stages' points: left out of a dataset without any
    only: tuple[str, ...] = ()  # the datasets the paper draws it for (others: left out), () = all
    # the datasets the paper draws it on: elsewhere the figure is drawn when its runs exist and left
    # off the "Not drawn" list when none ran (there is no printed figure to miss); () = none (a
    # diagnostic of this project's own). Sweep figures are listed wherever their sweep ran.
    paper_on: tuple[str, ...] = ()


FIGURES: tuple[Figure, ...] = (
    Figure("gmm_adaptive_loss", "gmm_gap", "Modality-gap histogram with the fitted GMM (paper Fig. 2/3)",
           GMM_RUNS, GMM_RUNS, plot_gmm_gap, paper_on=("cremad",)),
    Figure("gmm_adaptive_loss", "gmm_probes", "Unimodal accuracy per epoch, GMM-AL beside concat (paper Fig. 4)",
           GMM_RUNS, GMM_RUNS, plot_gmm_probes, paper_on=("cremad",)),
    Figure("opm_ogm", "rho", "Discrepancy ratio ρ per epoch (paper Fig. 5)", RHO_RUNS[1:], ("opm", "ogm", "opm_ogm"),
           plot_rho, paper_on=("kinetics_sounds",)),
    Figure("opm_ogm", "opm_q", "OPM drop probability per epoch (paper Fig. 7)", OPM_RUNS, ("opm",), plot_opm_q,
           paper_on=("kinetics_sounds",)),
    Figure("arl", "arl", "Dependency ratio against inverse-variance ratio, and coefficients (paper Fig. 3)",
           ARL_RUNS, ("arl",), plot_arl, paper_on=("ave",)),
    Figure("arl", "arl_fig1", "Concat's unimodal branches, the audio gradient × 5, and the dependency against the "
           "inverse-variance ratio (paper Fig. 1; runs `grad_scale__none`, `grad_scale__audio5`)",
           (FIG1_SCALED, FIG1_VANILLA), (FIG1_SCALED,), plot_arl_fig1, only=("cremad",), paper_on=("cremad",)),
    Figure("iprm", "iprm", "λ (EMA mixing weight) and ω (probe) per epoch", IPRM_RUNS, ("iprm",), plot_iprm),
    Figure("arl", "acting", "Each rebalancing method's distinguishing quantity per epoch (its no-op value in black)",
           ACTING_RUNS, ("ogm_ge", "arl"), plot_acting),
    Figure("iprm", "sensitivity_iprm", "Accuracy against the EMA weight α, Concat as a line (paper Fig. 2)",
           ("iprm",), ("iprm",), sensitivity("iprm"), sweep=True),
    Figure("opm_ogm", "sensitivity_opm", "OPM accuracy against q_base and λ, Concat as a line (paper Fig. 9)",
           ("opm",), ("opm",), sensitivity("opm"), sweep=True),
    Figure("opm_ogm", "sensitivity_ogm", "OGM accuracy against α, Concat as a line (paper Fig. 9)",
           ("ogm",), ("ogm",), sensitivity("ogm"), sweep=True),
)


def _missing_reason(figure: Figure, data: Mapping[str, RunData]) -> str:
    """Why ``figure`` was not drawn: none of its runs ran, or their results lack the data."""
    if figure.sweep:
        return f"not run (no {', '.join(f'`sweep-{r}_*`' for r in figure.runs)} results; params `sweeps`)"
    present = [r for r in figure.runs if r in data]
    names = ", ".join(f"`{r}`" for r in (present or figure.main))
    if not present:
        return f"not run (no {names} results)"
    return f"no data in the {names} results (logged by newer code: re-run the stage)"


def backbone_runs(data: Mapping[str, RunData]) -> tuple[dict[str, RunData], str]:
    """On a dataset whose runs all name their backbone (``<run>__<backbone>``: AVE localisation,
    MUSIC-AVQA), ``data`` with the runs of the reference run's backbone (Concat's first, as the
    leaderboard compares them) also under their plain names, so a figure drawn from ``opm``,
    ``ogm``, … only draws them; and that backbone ("" when Concat itself ran or no run names a
    backbone)."""
    ref = reference_run(REFERENCE, data)
    if ref == REFERENCE or "__" not in ref:
        return dict(data), ""
    backbone = ref.split("__", 1)[1]
    out = dict(data)
    for name in data:
        base, _, tail = name.partition("__")
        if tail == backbone and base not in out:
            out[base] = data[name]
    return out, backbone


def render_diagnostics(dataset: str, runs: Mapping[str, RunSummary], curves: Mapping[str, Curves], out_dir: Path,
                       link_root: Path, sweeps: Sequence[SweepPoint] = (),
                       swept_here: Collection[tuple[str, str]] | None = None) -> list[Drawn]:
    """Draw every diagnostics figure of one dataset under ``out_dir/<dataset>/`` (runs by name,
    their curves from :func:`.plots.load_curves`, the dataset's sweep points); returns each
    figure with its link relative to ``link_root`` or the reason it is missing, in
    :data:`FIGURES` order. ``swept_here``: the (dataset, run) pairs this profile's params
    ``sweeps`` run (None: not known); a sensitivity figure of another pair says its points are
    another profile's."""
    import matplotlib

    data = {r: RunData(s, curves.get(r, {}), load_diagnostics(s.source)) for r, s in runs.items()}
    data = with_sweeps(data, [p for p in sweeps if p.dataset == dataset])
    aliased, backbone = backbone_runs(data)  # for figures that name plain runs only (ρ, OPM's q)
    out = []
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # same pixels whatever the user's matplotlibrc
        matplotlib.rcParams.update(STYLE)
        for fig in FIGURES:
            if fig.sweep and not any(p.dataset == dataset for p in sweeps):
                continue  # no sensitivity sweep on this dataset: nothing to say
            if fig.only and dataset not in fig.only:
                continue  # a figure the paper draws for other datasets only
            path = out_dir / dataset / f"{fig.name}.png"
            label = fig.label
            drawn = fig.draw(dataset, data, path)
            if not drawn and backbone:
                drawn, label = fig.draw(dataset, aliased, path), f"{fig.label}; the `<run>__{backbone}` runs"
            if drawn and fig.sweep and swept_here is not None and not any((dataset, r) in swept_here for r in fig.runs):
                label += "; the committed points of the `full` profile's sweep stages, which this profile does not run"
            if drawn:
                out.append(Drawn(fig.paper, fig.name, label, dataset, path.relative_to(link_root).as_posix()))
            elif not fig.sweep and dataset not in fig.paper_on and not any(r in aliased for r in fig.runs):
                continue  # none of its runs ran here, and the paper draws no such figure here
            else:
                out.append(Drawn(fig.paper, fig.name, fig.label, dataset, reason=_missing_reason(fig, data)))
    return out


def diagnostics_section(paper: str, drawn: Sequence[Drawn]) -> str | None:
    """The "Diagnostics" section of a paper page (markdown), or None if it has no figures."""
    mine = [d for d in drawn if d.paper == paper]
    if not mine:
        return None
    intro = ("Quantities the methods log per step, averaged per epoch and over seeds (each run's "
             "`results/<dataset>/<run>/curves.json`)")
    if any(d.name == "gmm_gap" for d in mine):
        intro += "; the gap histograms are the first seed's end-of-run diagnostics in `results.json`"
    parts = ["## Diagnostics", intro + "."]
    quiet = []  # datasets where nothing was drawn: one line each at the end
    for dataset in dict.fromkeys(d.dataset for d in mine):
        items = [d for d in mine if d.dataset == dataset]
        missing = [d for d in items if not d.path]
        if len(missing) == len(items):
            reasons = list(dict.fromkeys(d.reason for d in missing))
            quiet.append(f"- {dataset_label(dataset)}: " + ("; ".join(f"{d.label}: {d.reason}" for d in missing)
                                                            if len(reasons) > 1 else reasons[0]) + ".")
            continue
        parts.append(f"### {dataset_label(dataset)}")
        parts += [f"**{d.label}**\n\n![{d.label}]({d.path})" for d in items if d.path]
        if missing:
            parts.append("\n".join(f"- {d.label}: {d.reason}." for d in missing))
    if quiet:
        parts += ["### Not drawn", "\n".join(quiet)]
    return "\n\n".join(parts)
