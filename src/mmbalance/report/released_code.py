"""The paper's formula beside the authors' released code.

Several methods' released code does something other than what their paper writes (OGM's
coefficient, OPM's dropping schedule, ARL's asymmetric weights, IPRM's test-time logits, MLA's
projector). The project trains the paper's formula as the method's run and the code's behaviour as
a named variant (``papers.yaml`` ``released_code``). This section puts the two side by side on
every dataset where both ran: accuracy with its interval, the paired difference code − paper
formula, McNemar's test over the same test clips and seeds (Holm over the section's comparisons),
and the figure the paper prints for the method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .pages import OTHER_PROFILE, Expected, in_profile
from .papers import CodeVariant, PaperIndex, PaperNumber, ReportConfig, dataset_label, run_label
from .stats import Comparison, DatasetStats, StatsConfig, compare, holm, load_run, unpaired_reason
from .tables import MISSING, RunSummary, Table, format_mean_std, markdown_table


def variants_for(paper: str, config: ReportConfig) -> list[CodeVariant]:
    """The variants whose paper run serves a row of ``paper``'s tables, in papers.yaml order."""
    mapped = {m.run.split("/", 1)[-1] for m in config.rows.values() if m.paper == paper and m.run}
    return [v for v in config.released_code if v.paper_run in mapped]


@dataclass
class _Row:
    variant: CodeVariant
    dataset: str
    paper: RunSummary
    code: RunSummary
    figure: PaperNumber | None  # the paper's accuracy for the method on the dataset
    comparison: Comparison | None
    why: str = ""  # why there is no paired comparison


def _rows(paper: str, variants: Sequence[CodeVariant], runs: Sequence[RunSummary], cfg: StatsConfig,
          index: PaperIndex | None) -> list[_Row]:
    """One row per (variant, dataset) where both runs have results and the paper prints the
    method's accuracy on that dataset (every dataset without ``index``); the paired comparison
    where both saved per-clip predictions of the same test clips. p-values are Holm-corrected
    over the rows compared."""
    by_key = {(r.dataset, r.run): r for r in runs}
    rows = []
    for v in variants:
        for ds in sorted({r.dataset for r in runs if r.run == v.code_run}):
            a, b = by_key.get((ds, v.code_run)), by_key.get((ds, v.paper_run))
            figure = index.figure(paper, ds, v.paper_run) if index is not None else None
            if a is None or b is None or (index is not None and figure is None):
                continue
            rows.append(_Row(v, ds, b, a, figure, *_compare(a, b, cfg, ds)))
    tested = [r for r in rows if r.comparison is not None]
    for r, p in zip(tested, holm([r.comparison.p for r in tested])):
        r.comparison.p_holm = p
    return rows


def _compare(code: RunSummary, paper: RunSummary, cfg: StatsConfig, dataset: str) -> tuple[Comparison | None, str]:
    """The paired comparison code − formula, or None and why: no saved predictions, or runs scored
    on other test clips (e.g. a quick-profile run beside committed default-profile results)."""
    a = load_run(code.run, Path(code.source).parent) if code.source else None
    b = load_run(paper.run, Path(paper.source).parent) if paper.source else None
    if a is None or b is None:
        return None, "no per-clip predictions"
    why = unpaired_reason(a, b)
    return (None, why) if why else (compare(a, b, cfg, dataset), "")


def _acc(run: RunSummary, stats: Mapping[str, DatasetStats], expected: Expected) -> str:
    """Accuracy [95 % CI] from the dataset's statistics, ° when this profile does not train it."""
    st = stats.get(run.dataset)
    row = st.rows.get(run.run) if st is not None else None
    mark = "" if in_profile(run.run, run.dataset, expected) else OTHER_PROFILE
    if row is None:  # no interval (no predictions, or other clips than the dataset's Concat): mean ± std
        ours, sep, rest = format_mean_std(run.metrics.get("acc", [])).partition(" ")
        return f"{ours}{mark}{sep}{rest}" if ours != MISSING else MISSING
    return f"{100 * row.acc:.2f}{mark} [{100 * row.lo:.2f}, {100 * row.hi:.2f}]"


def released_code_table(rows: Sequence[_Row], stats: Mapping[str, DatasetStats], cfg: StatsConfig,
                        expected: Expected) -> Table:
    """Method, dataset, both accuracies, Δ code − paper [CI], p (Holm), verdict, the paper's figure."""
    out = []
    for r in rows:
        c = r.comparison
        out.append([
            run_label(r.variant.paper_run), dataset_label(r.dataset),
            _acc(r.paper, stats, expected), _acc(r.code, stats, expected),
            f"{100 * c.diff:+.2f} [{100 * c.lo:+.2f}, {100 * c.hi:+.2f}]" if c else f"not paired: {r.why}",
            ("<0.001" if c.p_holm < 0.001 else f"{c.p_holm:.3f}") if c else MISSING,
            c.verdict(cfg.alpha) if c else MISSING,
            f"{r.figure.value} (Tab. {r.figure.table})" if r.figure else MISSING,
            f"`{r.variant.paper_run}` / `{r.variant.code_run}`",
        ])
    headers = ["Method", "Dataset", "Paper's formula: Acc [95 % CI]", "Released code: Acc [95 % CI]",
               "Δ code − formula [95 % CI]", "p (Holm)", "Code vs formula", "Paper prints", "Runs"]
    return Table(headers=headers, rows=out, numeric=[False, False, True, True, True, True, False, True, False])


def released_code_section(paper: str, config: ReportConfig, runs: Sequence[RunSummary],
                          stats: Mapping[str, DatasetStats], cfg: StatsConfig, index: PaperIndex | None = None,
                          expected: Expected = None) -> str:
    """The page's "paper's formula vs released code" section ("" when no variant concerns it)."""
    variants = variants_for(paper, config)
    if not variants:
        return ""
    rows = _rows(paper, variants, runs, cfg, index)
    parts = ["## The paper's formula and the authors' released code",
             "Where a method's released code does something other than its paper's text, the method's run "
             "follows the paper (the tables above) and a variant follows the code:"]
    ran = {r.variant.code_run for r in rows}
    parts.append("\n".join(f"- `{v.code_run}` ({v.code}): {v.differs}.{_absent(v, ran, expected)}" for v in variants))
    if rows:
        tested = sum(r.comparison is not None for r in rows)
        paired = ("*p*: McNemar's test, pooled over seeds and Holm-corrected over the "
                  f"{tested} comparison{'s' if tested != 1 else ''} of this table. ") if tested else ""
        parts.append("On each dataset where the paper prints the method's accuracy, the two runs share the training "
                     "recipe, seeds and budget and are compared on the same test clips (a run trained on another "
                     "profile's data is shown unpaired). *Δ*: paired accuracy difference, code − formula, with a "
                     f"two-level (seeds, then clips) bootstrap interval. {paired}° marks a run this profile does not "
                     "train (its committed results). *Paper prints*: the paper's accuracy for the method on that "
                     "dataset, from its lowest-numbered table.")
        parts.append(markdown_table(released_code_table(rows, stats, cfg, expected)))
    return "\n\n".join(parts)


def _absent(variant: CodeVariant, ran: set[str], expected: Expected) -> str:
    """Why a variant has no row: not trained yet, or trained by the full profile only."""
    if variant.code_run in ran:
        return ""
    lists = expected.values() if isinstance(expected, Mapping) else [expected or ()]
    if expected is None or any(variant.code_run in runs for runs in lists):
        return " No results yet."
    return " No results: the `full` profile trains it (`make profile PROFILE=full`)."
