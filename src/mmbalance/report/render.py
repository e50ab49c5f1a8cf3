"""Markdown rendering of the summary page (``reports/README.md``).

Pages are built from small section functions that each return a markdown string.  Output is
deterministic: no timestamps, stable ordering, "\\n" newlines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .data_summary import DataSummary, data_section
from .papers import DATASET_NAMES, PAPERS, PaperIndex, PaperNumber, dataset_label, load_config
from .provenance import UNKNOWN, Provenance, git_revision, params_hash
from .tables import (
    BEST_TEST_HEADER,
    MISSING,
    CostsSummary,
    RobustnessSummary,
    RunSummary,
    ShapleySummary,
    Table,
    dataset_table,
    joint_robustness_table,
    markdown_table,
    ordered_datasets,
    robustness_table,
    wall_time_table,
)

__all__ = [
    "Provenance",
    "git_revision",
    "markdown_table",
    "params_hash",
    "render_summary",
    "write_report",
]

ROBUSTNESS_PLOT = "robustness"
JOINT_PLOT = "robustness (Fig. 6)"
# Plot links of one dataset: [(label, path relative to the summary)].
PlotLinks = Mapping[str, Sequence[tuple[str, str]]]


def _selection_text(runs: Sequence[RunSummary]) -> str:
    rules = sorted({r.selection for r in runs if r.selection})
    if not rules:
        return "the epoch chosen by the stage's selection rule (not recorded in the results)"
    return "the epoch chosen by " + " / ".join(f"*{s}*" for s in rules)


def protocol_note(runs: Sequence[RunSummary]) -> str:
    """The paragraph under a dataset table explaining how ours and the papers' differ."""
    return (
        f"Protocols. **Ours**: test-set metrics at {_selection_text(runs)}, per seed; "
        "Macro-F1, mAP and probe columns are mean ± sample std over the seeds. "
        f"**{BEST_TEST_HEADER}**: our runs scored with the papers' protocol, i.e. the "
        "best epoch picked on the *test* set (optimistic). "
        "**Paper columns**: accuracy as printed for the paper row mapped to the run "
        "(`src/mmbalance/report/data/paper_rows.csv`; the paper's lowest-numbered table "
        f"with that row), best epoch picked on test; {MISSING} = the paper reports no such figure."
    )


def statistics_note(stats, cfg) -> str:
    """The statistics paragraph (intervals, paired tests, Holm, ranks, detectable difference),
    or why the table has none."""
    if stats is None or not stats.rows:
        return ("Statistics: none of these runs saved per-clip predictions, so no interval, paired "
                "test or significance rank can be computed; retrain them (`dvc repro`).")
    from .stats import StatsConfig, protocol_text

    text = protocol_text(stats, cfg or StatsConfig())
    if stats.skipped:
        text += " Left out of the statistics: " + "; ".join(f"`{r}` ({why})" for r, why in sorted(stats.skipped.items())) + "."
    return text


# backbones whose encoders exchange information (the registry's ``intermediate``); TSN and TSM
# only change how each video encoder treats its frames
INTERMEDIATE_BACKBONES = frozenset({"mmtm", "mmformer"})


def backbone_note(runs: Sequence[RunSummary]) -> str | None:
    """A note when some runs fuse inside the encoders (MMTM, mmFormer): their probes are not unimodal."""
    fused = sorted(r.run for r in runs if r.backbone in INTERMEDIATE_BACKBONES)
    if not fused:
        return None
    listed = ", ".join(f"`{run}`" for run in fused)
    return (
        f"Intermediate-fusion runs ({listed}) exchange information between the encoders, so each "
        "modality's features already carry the other modality: their probe columns measure those "
        "mixed features, not what the modality learned on its own."
    )


def baseline_note(dataset: str, index: PaperIndex) -> str | None:
    """A note when the seed papers' own Concat baselines disagree on ``dataset``, else None."""
    figs = []
    for paper, header in PAPERS.items():
        hit = index.figure(paper, dataset, "concat")
        if hit is not None:
            figs.append((header.removesuffix(" paper"), hit.value))
    if len(figs) < 2 or len({float(v) for _, v in figs}) < 2:
        return None
    listed = ", ".join(f"{name} {value}" for name, value in figs)
    return (
        f"{dataset_label(dataset)}: the papers' own Concat baselines differ ({listed}) "
        "because their training recipes differ, which is why each paper's figure is shown "
        "beside ours rather than a single reference number."
    )


def mini_note() -> str:
    """The caveat shown when any result comes from the synthetic ``mini`` profile."""
    return (
        "> **Mini profile: synthetic data.** These numbers come from the `mini` profile, "
        "which trains on synthetic data. They are not comparable in absolute value with "
        "the papers' figures; compare the *pattern* instead (e.g. the visual probe of "
        "Concat falling below Visual-only, and whether a balancing method narrows that gap)."
    )


def _table_with_notes(table: Table) -> str:
    text = markdown_table(table)
    if table.notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in table.notes)
    return text


def costs_note(costs: CostsSummary | None) -> str | None:
    """How the cost columns were measured (None without a costs file for the dataset)."""
    if costs is None or not costs.runs:
        return None
    batch = f"{costs.batch_size} test clips" if costs.batch_size else "one batch"
    ref = costs.reference or "concat"
    where = f" on {costs.device}" if costs.device else ""
    memory = f" **Peak mem**: {costs.memory}." if costs.memory else ""
    return (
        f"Costs (`stages/costs.py`, each run's first seed's model, one batch of {batch}{where}). **Params**: trainable "
        "parameters, the method's own modules included. **FLOPs/sample**: the test-time forward of the batch counted "
        "by `torch.utils.flop_counter.FlopCounterMode` (a multiply-add counts 2), divided by the batch size. "
        f"**Step time (× Concat)**: one training step of the training loop against one of `{ref}`'s, timed side "
        "by side in alternating rounds after warm-up, the method in the state of its last epoch (epoch-level "
        "refits and probes not included): the median of the rounds' ratios and, in brackets, its 95 % "
        "distribution-free interval (entries without one were measured in fewer than 6 rounds, or before "
        "intervals were recorded)." + memory
        + archived_note(costs.archived, "costs", f"results/archive/{costs.dataset}/costs.json")
    )


def archived_note(sources: Mapping[str, dict], what: str, where: str) -> str:
    """Where the archived entries of runs of another profile come from ("" when none), grouped by
    source commit, newest first."""
    if not sources:
        return ""
    groups: dict[tuple, int] = {}
    for src in sources.values():
        key = (src.get("date") or "", str(src.get("commit") or "?")[:8], src.get("device") or "an unrecorded device")
        groups[key] = groups.get(key, 0) + 1
    parts = [f"{n} at commit `{c}` ({d}, {dev})" for (d, c, dev), n in sorted(groups.items(), reverse=True)]
    return (f" For the {len(sources)} runs outside this profile's benchmark list, the {what} are those measured "
            f"when the profile that trained them ran, kept in `{where}` and checked against each run's committed "
            f"test accuracies (`python -m mmbalance.report.archive`): {'; '.join(parts)}.")


def shapley_note(shapley: ShapleySummary | None, level: float) -> str | None:
    """How the Shapley columns were computed (None without a Shapley file for the dataset)."""
    if shapley is None or not shapley.values:
        return None
    empty = shapley.empty_set or "all modalities masked"
    return (
        "Modality contribution (**Shapley** columns): the exact Shapley value of each modality for each trained "
        "model, from the test accuracy with every subset of its modalities kept and the others' features set to 0 "
        f"(the robustness masking with probability 1; the empty set is the model's prediction with {empty}), so a "
        "model's values add up to its accuracy minus that all-masked accuracy. Accuracy points, mean over seeds "
        f"[{100 * level:g} % Student-t interval over seeds]; n/a = not an input of the run's model."
        + ("".join(f" Not computed for `{run}`: {why}." for run, why in sorted(shapley.skipped.items())))
        + archived_note(shapley.archived, "Shapley values", f"results/archive/{shapley.dataset}/shapley.json")
    )


def robustness_section(summary: RobustnessSummary, order: Sequence[str], plot: str | None,
                       joint_plot: str | None = None) -> str:
    """Missing-modality robustness of one dataset: the OPM/OGM paper's Fig. 6 grid (both
    modalities missing at once) and, as an extension, one modality at a time from p = 0 to 1."""
    seed = f", mask seed {summary.seed}" if summary.seed is not None else ""
    parts = ["### Missing-modality robustness"]
    joint = joint_robustness_table(summary, order)
    if joint is not None:
        parts += [
            "**Fig. 6 protocol** (OPM/OGM paper, §4.4.3): at test time the first modality of each sample is "
            "missing with a fixed probability (one block of rows each) and, at the same time and "
            "independently, the second with the probability of each column; missing data is set to 0 "
            f"(seeded masks{seed}). Test accuracy (%), mean ± std over seeds.",
            markdown_table(joint),
        ]
        if joint_plot:
            parts.append(f"Plot: [accuracy against the second modality's missing probability]({joint_plot})")
    parts += [
        "**One modality at a time** (an extension of the paper's figure): test accuracy (%) of each "
        "trained model when one modality's features are set to zero for each test sample "
        f"independently with probability p (seeded masks{seed}; the other modalities are kept), "
        "mean ± std over seeds. Best per dropped modality and p in bold.",
        markdown_table(robustness_table(summary, order)),
    ]
    if plot:
        parts.append(f"Plot: [accuracy against drop probability]({plot})")
    return "\n\n".join(parts)


def dataset_section(
    dataset: str,
    runs: Sequence[RunSummary],
    methods: Sequence[str],
    paper_numbers: Sequence[PaperNumber] | PaperIndex,
    robustness: RobustnessSummary | None = None,
    plots: Sequence[tuple[str, str]] = (),
    data: DataSummary | None = None,
    stats=None,
    stats_cfg=None,
    costs: CostsSummary | None = None,
    shapley: ShapleySummary | None = None,
) -> str:
    """Heading, leaderboard, statistics protocol, notes, data counts and skips, plot links and
    robustness for one dataset (``stats``: its ``stats.DatasetStats``, or None without
    predictions; ``costs`` / ``shapley``: the cost and Shapley columns, left out when None)."""
    index = paper_numbers if isinstance(paper_numbers, PaperIndex) else PaperIndex(paper_numbers)
    ds_runs = [r for r in runs if r.dataset == dataset]
    alpha = stats_cfg.alpha if stats_cfg is not None else 0.05
    level = stats_cfg.level if stats_cfg is not None else 0.95
    parts = [
        f"## {dataset_label(dataset)}",
        _table_with_notes(dataset_table(dataset, ds_runs, methods, index, stats, alpha, costs, shapley, level)),
        protocol_note(ds_runs),
    ]
    parts.append(statistics_note(stats, stats_cfg))
    for note in (costs_note(costs), shapley_note(shapley, level), backbone_note(ds_runs), baseline_note(dataset, index)):
        if note:
            parts.append(note)
    if data is not None:
        parts.append(data_section(data))
    curves = [(label, path) for label, path in plots if label not in (ROBUSTNESS_PLOT, JOINT_PLOT)]
    if curves:
        parts.append("Plots: " + " · ".join(f"[{label}]({path})" for label, path in curves))
    if robustness is not None:
        parts.append(robustness_section(robustness, methods, dict(plots).get(ROBUSTNESS_PLOT),
                                        dict(plots).get(JOINT_PLOT)))
    return "\n\n".join(parts)


def _devices(runs: Sequence[RunSummary], robustness: Mapping[str, RobustnessSummary], provenance: Provenance) -> str:
    recorded = sorted({r.device for r in runs if r.device} | {s.device for s in robustness.values() if s.device})
    if recorded:
        return "; ".join(recorded)
    return f"{provenance.device} (the machine that rendered this report; the results files record none)"


def provenance_section(
    runs: Sequence[RunSummary],
    methods: Sequence[str],
    provenance: Provenance,
    robustness: Mapping[str, RobustnessSummary] | None = None,
) -> str:
    """Git revision, params hash, profile(s), device and wall time per stage."""
    robustness = robustness or {}
    profiles = ", ".join(sorted({r.profile for r in runs if r.profile})) or UNKNOWN
    info = Table(
        headers=["Item", "Value"],
        rows=[
            ["Git revision", f"`{provenance.git_rev}`"],
            ["Params hash (sha256 of params file, first 12 hex)", f"`{provenance.params_hash}`"],
            ["Profile", profiles],
            ["Device", _devices(runs, robustness, provenance)],
        ],
        numeric=[False, False],
    )
    known = list(DATASET_NAMES)
    datasets = ordered_datasets([*runs, *robustness.values()], known)
    walls = wall_time_table(runs, datasets, methods, robustness)
    parts = ["## Provenance", markdown_table(info)]
    if walls.rows:
        parts += ["Wall time per stage (training: sum over seeds):", markdown_table(walls)]
    return "\n\n".join(parts)


def pages_section(pages: Sequence[tuple[str, str]]) -> str:
    """Links to the paper pages."""
    return ("Paper pages (each paper's tables with our runs beside them, then, where a method's released code "
            "differs from its paper, the two trained side by side): " + " · ".join(
                f"[{label}]({path})" for label, path in pages))


def _methods_for(methods: Sequence[str] | Mapping[str, Sequence[str]], dataset: str) -> list[str]:
    if isinstance(methods, Mapping):
        return list(methods.get(dataset, ()))
    return list(methods)


def render_summary(
    runs: Sequence[RunSummary],
    paper_numbers: Sequence[PaperNumber] | PaperIndex,
    methods: Sequence[str] | Mapping[str, Sequence[str]],
    provenance: Provenance,
    robustness: Mapping[str, RobustnessSummary] | None = None,
    plots: PlotLinks | None = None,
    pages: Sequence[tuple[str, str]] = (),
    data: Mapping[str, DataSummary] | None = None,
    stats: Mapping | None = None,
    stats_cfg=None,
    coverage: str = "",
    costs: Mapping[str, CostsSummary] | None = None,
    shapley: Mapping[str, ShapleySummary] | None = None,
) -> str:
    """The summary page (``reports/README.md``) as a markdown string ending in a newline.

    One section per dataset present in ``runs`` or ``robustness`` (known datasets in registry
    order first): a leaderboard with rows by rank and "not run" for expected runs lacking
    results (``methods``: one list for every dataset, or a list per dataset), plot links and
    the robustness table; then a provenance section. When any ``costs`` / ``shapley`` file was
    given, every leaderboard has the cost / Shapley columns ("—" where its dataset has none).
    """
    robustness = robustness or {}
    plots = plots or {}
    index = paper_numbers if isinstance(paper_numbers, PaperIndex) else PaperIndex(paper_numbers, load_config())
    parts = [
        "# mmbalance: benchmark summary",
        "All figures are percentages. Accuracy carries a 95 % bootstrap interval over test clips "
        "and seeds and a paired, Holm-corrected verdict against Concat, both computed from the "
        "saved per-clip predictions (protocol under each table); ranks tie runs whose difference "
        "is not significant. Other cells are mean ± sample std (ddof=1; 0.00 with a single seed) "
        "over the seeds present, with the seed count in *n seeds*; the best mean of each of those "
        "columns is in bold.",
    ]
    if pages:
        parts.append(pages_section(pages))
    if coverage:
        parts.append(coverage)
    if any(r.profile == "mini" for r in runs):
        parts.append(mini_note())
    datasets = ordered_datasets([*runs, *robustness.values()], list(DATASET_NAMES))
    if not datasets:
        parts.append("No results yet.")
    all_methods: list[str] = []
    for d in datasets:
        ms = _methods_for(methods, d)
        all_methods += [m for m in ms if m not in all_methods]
        parts.append(dataset_section(d, runs, ms, index, robustness.get(d), plots.get(d, ()), (data or {}).get(d),
                                     (stats or {}).get(d), stats_cfg,
                                     (costs.get(d) or CostsSummary(d)) if costs else None,
                                     (shapley.get(d) or ShapleySummary(d)) if shapley else None))
    parts.append(provenance_section(runs, all_methods, provenance, robustness))
    return "\n\n".join(parts) + "\n"


def write_report(text: str, path: str | Path) -> None:
    """Write ``text`` to ``path`` (creating parent folders) with "\\n" newlines, UTF-8."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
