"""The "tuned, equal budget" leaderboard (``reports/tuned.md``).

Each tuned run (``results/tuned/<dataset>/<run>/``, written by the ``tune`` stages) had the same
number of trials over its own params, selected on validation only, and was then retrained with
the benchmark's seeds; its per-clip test predictions are compared with the *tuned* Concat by the
same statistics as the main leaderboards (``stats.py``). The untuned run's accuracy is shown
beside it, so the effect of tuning is visible.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from .pages import in_profile
from .papers import DATASET_NAMES, dataset_label, run_label
from .stats import REFERENCE, DatasetStats, StatsConfig, protocol_text
from .tables import MISSING, RunSummary, Table, format_mean_std, leaderboard_order, markdown_table, ordered_datasets


def load_trials(results_json: Path) -> dict | None:
    """The ``trials.json`` beside a tuned run's results.json, or None."""
    path = Path(results_json).parent / "trials.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _selected_text(trials: Mapping | None) -> str:
    """The selected trial's sampled values, e.g. ``train.lr=0.0123, alpha=0.45``."""
    if not trials:
        return MISSING
    chosen = trials.get("selected")
    rows = trials.get("trials") or []
    if chosen is None or not 0 <= int(chosen) < len(rows):
        return MISSING
    values = rows[int(chosen)].get("params") or rows[int(chosen)].get("values") or {}
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items())) or "—"


def _budget(trials: Mapping | None) -> str:
    if not trials:
        return MISSING
    return str(trials.get("budget", len(trials.get("trials") or [])))


def tuned_table(dataset: str, runs: Sequence[RunSummary], stats: DatasetStats | None, cfg: StatsConfig,
                untuned: Mapping[str, RunSummary], trials: Mapping[str, Mapping | None]) -> Table:
    """One dataset's tuned leaderboard: rank, accuracy interval, paired comparison with the tuned
    Concat, the untuned run's accuracy, the trial budget and the selected values."""
    by_run = {r.run: r for r in runs if r.dataset == dataset}
    rows_stats = stats.rows if stats is not None else {}
    order, ranks = leaderboard_order([], by_run, {r: s.rank for r, s in rows_stats.items()} if stats else None)
    rows = []
    for r in order:
        st = rows_stats.get(r)
        base = untuned.get(r)
        untuned_acc = format_mean_std(base.metrics.get("acc", [])) if base else MISSING
        if st is None:
            cells = [format_mean_std(by_run[r].metrics.get("acc", [])), MISSING, MISSING, MISSING]
        else:
            vc = st.vs_concat
            cells = [
                f"{100 * st.acc:.2f} [{100 * st.lo:.2f}, {100 * st.hi:.2f}]",
                f"{100 * vc.diff:+.2f} [{100 * vc.lo:+.2f}, {100 * vc.hi:+.2f}]" if vc else MISSING,
                ("<0.001" if vc.p_holm < 0.001 else f"{vc.p_holm:.3f}") if vc else MISSING,
                vc.verdict(cfg.alpha) if vc else (REFERENCE if r == stats.reference else MISSING),
            ]
        rank = ranks.get(r)
        rows.append([run_label(r), str(by_run[r].n_seeds), str(rank) if rank else MISSING, *cells, untuned_acc,
                     _budget(trials.get(r)), _selected_text(trials.get(r)), f"`{r}`"])
    headers = ["Method", "n seeds", "Rank", "Acc [95 % CI]", "Δ vs tuned Concat [95 % CI]", "p (Holm)",
               "vs tuned Concat", "Untuned acc", "Trials", "Selected (validation)", "Run"]
    return Table(headers=headers, rows=rows, numeric=[False] + [True] * 8 + [False, False])


def other_profile_runs(dataset: str, runs: Sequence[RunSummary], tuned_here: Mapping[str, Sequence[str]] | None) -> list[str]:
    """The tuned runs of ``dataset`` that params ``tune.runs`` does not list (none when unknown)."""
    return [r.run for r in runs if r.dataset == dataset and not in_profile(r.run, r.dataset, tuned_here)]


def render_tuned_page(runs: Sequence[RunSummary], stats: Mapping[str, DatasetStats], cfg: StatsConfig,
                      untuned: Sequence[RunSummary], trials: Mapping[tuple[str, str], Mapping | None],
                      summary_link: str = "README.md", tuned_here: Mapping[str, Sequence[str]] | None = None) -> str:
    """``reports/tuned.md``: one tuned leaderboard per dataset with its statistics paragraph;
    ``tuned_here`` (params ``tune.runs``, None: not known) names the runs this profile tunes, the
    others are committed results of another profile's tune stages and are said to be."""
    parts = [
        "# Tuned, equal budget",
        f"Back to the [summary]({summary_link}). Every run below had the same number of trials "
        "(*Trials*) over its own params — the learning rate plus the method's own knobs, ranges in "
        "`params.yaml` → `tune.space` — scored on the **validation** split only; the selected "
        "configuration (*Selected*) was then retrained with the benchmark's seeds and scored once on "
        "test. Concat is tuned with the same budget, so *vs tuned Concat* answers whether a "
        "rebalancing method beats a late-fusion baseline given equal tuning effort. *Untuned acc* is "
        "the same run with its default params (main leaderboard).",
    ]
    if not runs:
        parts.append("No tuned runs yet: add runs to `tune.runs.<dataset>` in params.yaml and run `dvc repro`.")
    for ds in ordered_datasets(runs, list(DATASET_NAMES)):
        base = {r.run: r for r in untuned if r.dataset == ds}
        ds_trials = {run: t for (d, run), t in trials.items() if d == ds}
        st = stats.get(ds)
        parts += [f"## {dataset_label(ds)}", markdown_table(tuned_table(ds, runs, st, cfg, base, ds_trials))]
        elsewhere = other_profile_runs(ds, runs, tuned_here)
        if elsewhere:
            parts.append(f"Not tuned by this profile (params `tune.runs.{ds}`): {', '.join(f'`{r}`' for r in elsewhere)}, "
                         "the committed results of the `full` profile's tune stages (same budget and space); this "
                         "profile's `dvc repro` does not re-run them.")
        if st is not None and st.rows:
            parts.append(protocol_text(st, cfg))
    return "\n\n".join(parts) + "\n"
