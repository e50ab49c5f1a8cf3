"""Markdown rendering of report pages.

Pages are built from small section functions that each return a markdown string, so
further pages (per-dataset detail, curves, ...) can reuse :func:`markdown_table` and the
notes below.  Output is deterministic: no timestamps, stable ordering, "\\n" newlines.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .papers import DATASET_NAMES, PAPERS, PaperNumber, dataset_label, paper_figure
from .tables import (
    BEST_TEST_HEADER,
    MISSING,
    RunSummary,
    Table,
    dataset_table,
    ordered_datasets,
    wall_time_table,
)

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Provenance:
    """What produced a report: code revision and a hash of the parameters file."""

    git_rev: str = UNKNOWN
    params_hash: str = UNKNOWN


def params_hash(path: str | Path, length: int = 12) -> str:
    """First ``length`` hex digits of the sha256 of the file at ``path``."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


def git_revision(cwd: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` run in ``cwd``, or "unknown" if git or a commit is missing."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return out.stdout.strip() or UNKNOWN


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured markdown table; numeric columns are right-aligned."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if n else "---" for n in table.numeric) + "|"
    return "\n".join([line(table.headers), rule] + [line(r) for r in table.rows])


def _selection_text(runs: Sequence[RunSummary]) -> str:
    rules = sorted({r.selection for r in runs if r.selection})
    if not rules:
        return "the epoch chosen by the stage's selection rule (not recorded in the results)"
    return "the epoch chosen by " + " / ".join(f"*{s}*" for s in rules)


def protocol_note(runs: Sequence[RunSummary]) -> str:
    """The paragraph under a dataset table explaining how ours and the papers' differ."""
    return (
        f"Protocols. **Ours**: test-set metrics at {_selection_text(runs)}, per seed, "
        "then mean ± sample std over the seeds. "
        f"**{BEST_TEST_HEADER}**: our runs scored with the papers' protocol, i.e. the "
        "best epoch picked on the *test* set (optimistic). "
        "**Paper columns**: accuracy as printed in each paper's main table (lowest-numbered "
        f"table reporting this dataset and method), best epoch picked on test; {MISSING} = "
        "the paper reports no such figure."
    )


def baseline_note(dataset: str, paper_numbers: Sequence[PaperNumber]) -> str | None:
    """A note when the seed papers' own Concat baselines disagree on ``dataset``, else None."""
    figs = []
    for paper, header in PAPERS.items():
        hit = paper_figure(paper_numbers, paper, dataset, "concat", "concat")
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


def dataset_section(
    dataset: str,
    runs: Sequence[RunSummary],
    methods: Sequence[str],
    paper_numbers: Sequence[PaperNumber],
) -> str:
    """Heading, summary table and notes for one dataset."""
    ds_runs = [r for r in runs if r.dataset == dataset]
    parts = [
        f"## {dataset_label(dataset)}",
        markdown_table(dataset_table(dataset, ds_runs, methods, paper_numbers)),
        protocol_note(ds_runs),
    ]
    note = baseline_note(dataset, paper_numbers)
    if note:
        parts.append(note)
    return "\n\n".join(parts)


def provenance_section(
    runs: Sequence[RunSummary], methods: Sequence[str], provenance: Provenance
) -> str:
    """Git revision, params hash, profile(s) and wall time per training stage."""
    profiles = ", ".join(sorted({r.profile for r in runs if r.profile})) or UNKNOWN
    info = Table(
        headers=["Item", "Value"],
        rows=[
            ["Git revision", f"`{provenance.git_rev}`"],
            ["Params hash (sha256 of params file, first 12 hex)", f"`{provenance.params_hash}`"],
            ["Profile", profiles],
        ],
        numeric=[False, False],
    )
    walls = wall_time_table(runs, ordered_datasets(runs, list(DATASET_NAMES)), methods)
    parts = ["## Provenance", markdown_table(info)]
    if walls.rows:
        parts += ["Wall time per training stage (sum over seeds):", markdown_table(walls)]
    return "\n\n".join(parts)


def render_summary(
    runs: Sequence[RunSummary],
    paper_numbers: Sequence[PaperNumber],
    methods: Sequence[str],
    provenance: Provenance,
) -> str:
    """The summary page (``reports/README.md``) as a markdown string ending in a newline.

    One section per dataset present in ``runs`` (known datasets in registry order first),
    rows in ``methods`` order with "not run" for listed methods lacking results, then a
    provenance section.
    """
    parts = [
        "# mmbalance: benchmark summary",
        "All figures are percentages. Our cells are mean ± sample std (ddof=1; 0.00 with "
        "a single seed) over the seeds present, with the seed count in *n seeds*; the best "
        "mean of each of our columns is in bold.",
    ]
    if any(r.profile == "mini" for r in runs):
        parts.append(mini_note())
    datasets = ordered_datasets(runs, list(DATASET_NAMES))
    if not datasets:
        parts.append("No results yet.")
    parts += [dataset_section(d, runs, methods, paper_numbers) for d in datasets]
    parts.append(provenance_section(runs, methods, provenance))
    return "\n\n".join(parts) + "\n"


def write_report(text: str, path: str | Path) -> None:
    """Write ``text`` to ``path`` (creating parent folders) with "\\n" newlines, UTF-8."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
