"""One page per seed paper: each of its result tables re-rendered with our runs beside it.

A table keeps the paper's rows (the CSV ``method`` spellings, in CSV order) and columns (dataset
× metric, in CSV order).  Each cell is "ours mean ± std (paper value, Δ)", Δ = our mean − the
paper's figure; our best mean per column is bold; a row whose run has no results reads
"not run".  Rows map to runs through ``data/paper_rows.csv`` (see :mod:`.papers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .papers import PaperIndex, PaperNumber, ReportConfig, RowMapping, paper_tables, registry_dataset
from .tables import (
    Footnotes,
    RunSummary,
    Table,
    best_indices,
    bold,
    markdown_table,
    our_values,
    paper_cell,
)

ROWS_FILE = "src/mmbalance/report/data/paper_rows.csv"


def page_name(paper: str) -> str:
    """File name of a paper's page, next to the summary."""
    return f"{paper}.md"


def _runs_cell(runs: Sequence[tuple[str, str]]) -> str:
    """The "Our run" cell: one run, "run (dataset)" per dataset when they differ, or "none"
    when no run is mapped (the row's note says why)."""
    names = list(dict.fromkeys(r for _, r in runs))
    if not names:
        return "none"
    if len(names) == 1:
        return f"`{names[0]}`"
    return ", ".join(f"`{r}` ({ds})" for ds, r in dict.fromkeys(runs))


def _cell(config: ReportConfig, mapping: RowMapping | None, metric: str, dataset: str, value: str | None,
          runs: Mapping[tuple[str, str], RunSummary]) -> tuple[str, float | None]:
    """One cell (text, our mean) for a paper figure (``value`` None: the paper prints none)."""
    if mapping is None or not mapping.run:
        return paper_cell(None, 0, value)
    reg = registry_dataset(dataset)
    run = runs.get((reg, mapping.run))
    if run is None:
        return paper_cell(None, 0, value)
    ours_metric = config.our_metric(metric, mapping)
    ref_name = config.metrics.get(metric, {}).get("relative_to")
    ref = runs.get((reg, ref_name)) if ref_name else None
    return paper_cell(our_values(run, ours_metric, ref) if ours_metric else [], run.n_seeds, value)


def _bold_best(grid: list[list[tuple[str, float | None]]]) -> None:
    """Bold the "ours" part of the best mean in each column (in place)."""
    for j in range(len(grid[0]) if grid else 0):
        for i in best_indices([row[j][1] for row in grid]):
            ours, sep, rest = grid[i][j][0].partition(" (")
            grid[i][j] = (f"{bold(ours)}{sep}{rest}", grid[i][j][1])


def paper_table(
    paper: str,
    table: int,
    figures: Sequence[PaperNumber],
    runs: Mapping[tuple[str, str], RunSummary],
    config: ReportConfig,
) -> Table:
    """One paper table with our runs: rows and columns as in the CSV, cells "ours (paper, Δ)".

    ``runs`` is keyed by (registry dataset, run).  Footnotes: column notes (marked on the
    header), row-mapping notes and rows without a mapping.
    """
    columns = list(dict.fromkeys((n.dataset, n.metric) for n in figures))
    rows = list(dict.fromkeys(n.method for n in figures))
    printed = {(n.method, n.dataset, n.metric): n.value for n in figures}
    marks = Footnotes()
    headers = ["Paper row", "Our run"] + [
        f"{ds} {config.metric_header(metric)}{marks.mark(config.notes_for(paper, table, ds, metric))}"
        for ds, metric in columns]
    grid, run_cells, row_notes, unmapped = [], [], [], []
    for row in rows:
        mappings = {ds: config.row(paper, table, row, ds) for ds, _ in columns}
        grid.append([_cell(config, mappings[ds], metric, ds, printed.get((row, ds, metric)), runs)
                     for ds, metric in columns])
        run_cells.append(_runs_cell([(ds, m.run) for ds, m in mappings.items() if m is not None and m.run]))
        if any(m is None for m in mappings.values()):
            unmapped.append(row)
        for m in mappings.values():
            note = f"*{row}*: {m.note.rstrip('.')}." if m is not None and m.note else None
            if note and note not in row_notes:
                row_notes.append(note)
    _bold_best(grid)
    out_rows = [[row, run_cells[i]] + [c for c, _ in grid[i]] for i, row in enumerate(rows)]
    notes = marks.lines() + row_notes
    if unmapped:
        notes.append("No run is mapped to " + ", ".join(f"*{r}*" for r in unmapped) + f" (add a line to `{ROWS_FILE}`).")
    return Table(headers=headers, rows=out_rows, numeric=[False, False] + [True] * len(columns), notes=notes)


def intro() -> str:
    """How to read a paper page."""
    return (
        "Each table is the paper's, with the same rows and columns. A cell reads **ours** "
        "mean ± sample std over the seeds that ran (paper value as printed, Δ = our mean − "
        "paper value); the best of our means in each column is in bold; *not run* = no "
        "results for the run the row maps to (the variant rows — fusion and backbone variants, "
        "ablations — are trained by the `full` profile, `make profile PROFILE=full`); — alone = neither the paper nor we have that cell. Figures are percentages unless the column says "
        "otherwise. Our metrics are taken at the epoch chosen on validation; the papers pick "
        "the best epoch on test (see the summary's protocol notes). Rows map to runs (the "
        f"folders `results/<dataset>/<run>/`) through `{ROWS_FILE}`."
    )


def render_paper_page(
    paper: str,
    numbers: Sequence[PaperNumber] | PaperIndex,
    runs: Sequence[RunSummary],
    config: ReportConfig,
    summary_link: str = "README.md",
    mini: bool = False,
    mini_text: str = "",
    sections: Sequence[str] = (),
) -> str:
    """The page of one seed paper as markdown ending in a newline; ``sections`` (markdown, e.g.
    the diagnostics figures) follow the tables."""
    figures = numbers.numbers if isinstance(numbers, PaperIndex) else list(numbers)
    meta = config.papers[paper]
    by_key = {(r.dataset, r.run): r for r in runs}
    others = " · ".join(f"[{config.papers[p]['short']}]({page_name(p)})" for p in config.papers if p != paper)
    parts = [
        f"# {meta['short']}: the paper's tables beside our runs",
        f"*{meta['title']}*",
        f"[Summary]({summary_link}) · other papers: {others}",
        intro(),
    ]
    if mini and mini_text:
        parts.append(mini_text)
    parts += [f"> {n}" for n in meta.get("notes") or []]
    tables = paper_tables(figures, paper)
    if not tables:
        parts.append("The paper-numbers file has no figures for this paper.")
    for number, figs in tables.items():
        caption = meta["tables"].get(str(number))
        parts.append(f"## Table {number}" + (f": {caption}" if caption else ""))
        t = paper_table(paper, number, figs, by_key, config)
        parts.append(markdown_table(t))
        if t.notes:
            parts.append("\n".join(f"- {n}" for n in t.notes))
    parts += list(sections)
    return "\n\n".join(parts) + "\n"
