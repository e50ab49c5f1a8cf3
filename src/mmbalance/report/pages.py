"""One page per seed paper: every table of the paper, complete, with our runs beside it.

A table keeps the paper's rows and columns (``reference/paper_tables.csv``: every numeric cell,
printed labels, in printed order; tables listed under ``transpose`` in ``data/papers.yaml`` are
shown with rows and columns swapped so that methods are rows).  Each cell with a paper figure
reads "ours mean ± std (paper value, Δ)", Δ = our mean − the paper's figure, or a short reason
why ours is absent ("not run: full profile", "not run yet", or a row's own reason in
``data/paper_rows.csv``).  A cell's run comes from the cell's *method* through ``data/paper_rows.csv``
(see :mod:`.papers`).  Each page opens with its coverage: cells with our figure / cells printed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .papers import (
    PaperIndex,
    PaperNumber,
    ReportConfig,
    RowMapping,
    TableCell,
    cells_from_numbers,
    registry_dataset,
)
from .tables import (
    MISSING,
    NOT_RUN,
    Footnotes,
    RunSummary,
    Table,
    best_indices,
    bold,
    format_raw,
    format_ratio,
    markdown_table,
    mean_std_raw,
    our_values,
    paper_cell,
)

ROWS_FILE = "src/mmbalance/report/data/paper_rows.csv"
TABLES_FILE = "reference/paper_tables.csv"
# our metrics where a lower value is the better one (bold marks the lowest)
LOWER_IS_BETTER = frozenset({"train_time_ratio", "epoch_seconds"})

Runs = Mapping[tuple[str, str], RunSummary]
Expected = Sequence[str] | Mapping[str, Sequence[str]] | None


@dataclass(frozen=True)
class Shown:
    """One rendered cell: its text, our mean (for the bold best) and whether ours is there."""

    text: str
    mean: float | None = None
    ours: bool = False


def page_name(paper: str) -> str:
    """File name of a paper's page, next to the summary."""
    return f"{paper}.md"


def in_profile(run: str, dataset: str, expected: Expected) -> bool:
    """Whether this profile's benchmark list trains ``run`` on ``dataset`` (True without a list)."""
    if expected is None:
        return True
    wanted = expected if not isinstance(expected, Mapping) else expected.get(registry_dataset(dataset), ())
    return run in wanted


def _not_run(run: str, dataset: str, expected: Expected) -> str:
    """Why a mapped run has no results: not yet trained, or trained by another profile only."""
    if expected is None:
        return NOT_RUN
    return f"{NOT_RUN} yet" if in_profile(run, dataset, expected) else f"{NOT_RUN}: full profile"


# after our figure when this profile's `dvc repro` does not train the run (its committed results)
OTHER_PROFILE = "°"


def _other_profile(text: str, run: str, dataset: str, expected: Expected) -> str:
    """Mark a figure whose run this profile's benchmark list does not name: results committed by
    another profile's stage (the full profile's variants), which this profile does not re-run."""
    if in_profile(run, dataset, expected):
        return text
    ours, sep, rest = text.partition(" (")
    return f"{ours}{OTHER_PROFILE}{sep}{rest}"


def _absent(reason: str, value: str | None) -> Shown:
    """A cell without our figure: the reason, and the paper's figure when it prints one."""
    return Shown(f"{reason} (paper {value})" if value is not None else MISSING)


def _paper_ratio(cell: TableCell, table: Sequence[TableCell], config: ReportConfig, ref_run: str) -> str:
    """The paper's figure as a ratio to its own row mapped to ``ref_run`` in the same column."""
    for c in table:
        m = config.row(c.paper, c.table, c.method, c.dataset)
        if c.column == cell.column and m is not None and m.run == ref_run and float(c.value):
            return f" = {float(cell.value) / float(c.value):.2f}× {c.row}"
    return ""


def show_cell(cell: TableCell, table: Sequence[TableCell], runs: Runs, config: ReportConfig,
              expected: Expected = None, value: str | None = None) -> Shown:
    """One cell of a paper table beside ours (``value``: the paper's figure, None where it prints
    none; defaults to ``cell.value``)."""
    value = cell.value if value is None and cell.value != "" else value
    reason = config.unavailable_reason(cell.dataset)
    if reason:
        return _absent(reason, value)
    mapping: RowMapping | None = config.row(cell.paper, cell.table, cell.method, cell.dataset)
    if mapping is None:
        return _absent("no run mapped", value)
    if not mapping.run:
        return _absent(mapping.note or "not reproduced", value)
    reg, name = mapping.target(cell.dataset)
    run = runs.get((reg, name))
    if run is None:
        return _absent(_not_run(name, reg, expected), value)
    ours_metric = config.our_metric(cell.metric, mapping)
    entry = config.metrics.get(cell.metric, {})
    ref = runs.get((reg, entry["relative_to"])) if entry.get("relative_to") else None
    values = our_values(run, ours_metric, ref) if ours_metric else []
    if not values:
        return _absent(f"no {config.metric_header(cell.metric)} in our results", value)
    # the bold "best" of a column is its highest mean: a time is best when lowest
    sign = -1.0 if ours_metric in LOWER_IS_BETTER else 1.0
    if entry.get("paper_ratio"):
        mean, _ = mean_std_raw(values)
        paper = f"paper {value} {cell.unit}{_paper_ratio(cell, table, config, entry['relative_to'])}" if value else f"paper {MISSING}"
        text = f"{format_raw(values, run.n_seeds)}× Concat{_step_note(run, ours_metric)} ({paper})"
    else:
        text, mean = paper_cell(values, run.n_seeds, value)
        text += _step_note(run, ours_metric)
    return Shown(_other_profile(text, name, reg, expected), None if mean is None else sign * mean, value is not None)


def _step_note(run: RunSummary, metric: str) -> str:
    """Beside a wall-time ratio (runs trained at different times, on a machine whose load varies):
    the costs stage's training-step ratio, timed side by side with Concat."""
    if metric != "train_time_ratio" or run.step_ratio is None:
        return ""
    return f"; step {format_ratio(run.step_ratio, run.step_ratio_ci, '×')} side by side"


def _layout(cells: Sequence[TableCell], transposed: bool) -> tuple[list[str], list[str], dict[tuple[str, str], TableCell]]:
    """(row labels, column labels, (row, column) → cell) in printed order, swapped if ``transposed``."""
    rows = list(dict.fromkeys(c.row for c in cells))
    cols: list[str] = []
    for r in rows:
        # a column first printed in a later row goes after its left neighbour in that row
        # (IPRM Tab. 1: "D/T" has no figure on the first datasets)
        prev = None
        for col in (c.column for c in cells if c.row == r):
            if col not in cols:
                cols.insert(cols.index(prev) + 1 if prev is not None else len(cols), col)
            prev = col
    if transposed:
        return cols, rows, {(c.column, c.row): c for c in cells}
    return rows, cols, {(c.row, c.column): c for c in cells}


def _blank(row_cells: list[TableCell], col_cells: list[TableCell], uniform: set[str]) -> TableCell | None:
    """A stand-in for a position where the paper prints no figure ("-", "N/A"): the method of
    its row and the dataset and metric of its column, when each is unambiguous (``uniform``:
    the rows whose cells all have one method; a column through other rows names methods itself)."""
    methods = {c.method for c in row_cells}
    where = {(c.dataset, c.metric) for c in col_cells}
    if len(methods) != 1 or len(where) != 1 or not col_cells or any(c.row not in uniform for c in col_cells):
        return None
    (dataset, metric), c = next(iter(where)), col_cells[0]
    return TableCell(paper=c.paper, table=c.table, row="", column=c.column, value="", unit=c.unit, dataset=dataset,
                     metric=metric, backbone="", method=next(iter(methods)))


def _bold_best(grid: list[list[Shown]]) -> list[list[str]]:
    """Cell texts with the "ours" part of the best mean in each column in bold."""
    out = [[s.text for s in row] for row in grid]
    for j in range(len(grid[0]) if grid else 0):
        for i in best_indices([row[j].mean for row in grid]):
            ours, sep, rest = out[i][j].partition(" (")
            out[i][j] = f"{bold(ours)}{sep}{rest}"
    return out


def _runs_cell(cells: Sequence[TableCell], config: ReportConfig) -> str:
    """The "Our run" cell: the distinct runs the row's cells map to, or "none"."""
    names = []
    for c in cells:
        m = config.row(c.paper, c.table, c.method, c.dataset)
        if m is not None and m.run and not config.unavailable_reason(c.dataset) and m.run not in names:
            names.append(m.run)
    return ", ".join(f"`{n}`" for n in names) if names else "none"


def _notes(cells: Sequence[TableCell], config: ReportConfig) -> list[str]:
    """Footnotes of a table: the cells' notes on the printed table (not the figures' printed
    annotations) and the notes of the runs the rows map to."""
    out: list[str] = []
    labels = {}
    for c in cells:
        for n in filter(None, c.note.split("; ")):
            if not n.startswith("printed with"):
                labels.setdefault(n, []).append(c.row)
    for n, rows in labels.items():
        text = n.rstrip(".") + "."
        out.append(f"{text[0].upper()}{text[1:]}" if len(rows) == len(cells) else f"*{', '.join(dict.fromkeys(rows))}*: {text}")
    for c in cells:
        m = config.row(c.paper, c.table, c.method, c.dataset)
        if m is not None and m.run and m.note and not config.unavailable_reason(c.dataset):
            note = f"*{c.method}* (`{m.run}`): {m.note.rstrip('.')}."
            if note not in out:
                out.append(note)
    return out


def paper_table(
    paper: str,
    table: int,
    cells: Sequence[TableCell] | Sequence[PaperNumber],
    runs: Runs,
    config: ReportConfig,
    expected: Expected = None,
) -> tuple[Table, int, int]:
    """One paper table with our runs: (table, cells with our figure, cells printed).

    ``runs`` is keyed by (registry dataset, run); ``expected`` (runs per dataset, or one list)
    tells "not run yet" from "not run: full profile".  Footnotes: column notes (marked on the
    header), the table's notes and the mapped runs' notes.
    """
    cells = [c for c in (cells_from_numbers(cells, config) if cells and isinstance(cells[0], PaperNumber) else cells)]
    rows, cols, at = _layout(cells, config.transposed(paper, table))
    marks = Footnotes()
    headers = ["Paper row", "Our run"]
    for col in cols:
        in_col = [c for (r, k), c in at.items() if k == col]
        notes = [n for ds, m in dict.fromkeys((c.dataset, c.metric) for c in in_col)
                 for n in config.notes_for(paper, table, ds, m)]
        headers.append(f"{col}{marks.mark(list(dict.fromkeys(notes)))}")
    grid, run_cells, ours = [], [], 0
    uniform = {c.row for c in cells if len({x.method for x in cells if x.row == c.row}) == 1}
    for row in rows:
        in_row = [c for (r, k), c in at.items() if r == row]
        line = []
        for col in cols:
            cell = at.get((row, col))
            if cell is None:
                blank = _blank(in_row, [c for (r, k), c in at.items() if k == col], uniform)
                line.append(show_cell(blank, cells, runs, config, expected) if blank else Shown(MISSING))
            else:
                shown = show_cell(cell, cells, runs, config, expected)
                ours += shown.ours
                line.append(shown)
        grid.append(line)
        run_cells.append(_runs_cell(in_row, config))
    texts = _bold_best(grid)
    out_rows = [[row, run_cells[i]] + texts[i] for i, row in enumerate(rows)]
    notes = marks.lines() + _notes(cells, config)
    if any(config.row(c.paper, c.table, c.method, c.dataset) is None and not config.unavailable_reason(c.dataset) for c in cells):
        notes.append(f"*no run mapped*: add a line for the row's method to `{ROWS_FILE}`.")
    return Table(headers=headers, rows=out_rows, numeric=[False, False] + [True] * len(cols), notes=notes), ours, len(cells)


def intro(transposed: bool = False) -> str:
    """How to read a paper page."""
    swap = (" A table the paper prints with methods as columns is shown with methods as rows; the "
            "line under its heading says so.") if transposed else ""
    return (
        "Every table of the paper is here with all its rows and columns (`" + TABLES_FILE + "`). A cell "
        "reads **ours** mean ± sample std over the seeds that ran (paper value as printed, Δ = our "
        "mean − paper value); the best of our means in each column is in bold. Where ours is "
        "absent the cell says why before the paper's value: the dataset has no adapter, the "
        "model or task is not implemented, no run is configured, or *not run: full profile* "
        "(the default trains each modality alone, Concat and the seed papers' methods; the other "
        "baselines, the variants and the ablations are trained by the `full` profile, "
        "`make profile PROFILE=full`). A figure marked " + OTHER_PROFILE + " comes from a run this "
        "profile does not train: its committed results, trained by the same stage command under the "
        "`full` profile, which re-runs it. — alone = the paper prints no figure there (\"-\" "
        "or \"N/A\") and we have none. Figures are percentages unless the column says otherwise. "
        "Our metrics are taken at the epoch chosen on validation; the papers pick the best epoch "
        "on test (see the summary's protocol notes). A cell's method maps to a run (the folders "
        f"`results/<dataset>/<run>/`) through `{ROWS_FILE}`." + swap
    )


def coverage_line(reproduced: int, printed: int, here: int | None = None) -> str:
    """"Coverage: x / y cells" with the share in percent; ``here``: how many of the ``reproduced``
    come from this profile's own runs (None: not known), the rest from another profile's."""
    share = f" ({100.0 * reproduced / printed:.0f} %)" if printed else ""
    split = ""
    if here is not None and here < reproduced:
        split = (f" {here} of them come from runs this profile trains, the other {reproduced - here} "
                 f"(marked {OTHER_PROFILE}) from the committed results of the `full` profile's runs.")
    return (f"**Coverage: {reproduced} / {printed} cells reproduced**{share} (cells with our figure / numeric "
            f"cells printed in the paper's tables).{split}")


def own_runs(runs: Sequence[RunSummary], expected: Expected) -> list[RunSummary]:
    """The runs this profile's benchmark lists train (all of them without lists)."""
    return [r for r in runs if in_profile(r.run, r.dataset, expected)]


def _paper_cells(paper: str, cells: Sequence[TableCell] | Sequence[PaperNumber] | PaperIndex,
                 config: ReportConfig) -> dict[int, list[TableCell]]:
    """The cells of ``paper`` grouped by table number (ascending), in printed order."""
    items = cells.numbers if isinstance(cells, PaperIndex) else list(cells)
    if items and isinstance(items[0], PaperNumber):
        items = cells_from_numbers(items, config)
    out: dict[int, list[TableCell]] = {}
    for c in items:
        if c.paper == paper:
            out.setdefault(c.table, []).append(c)
    return dict(sorted(out.items()))


def paper_coverage(paper: str, cells: Sequence[TableCell] | Sequence[PaperNumber] | PaperIndex,
                   runs: Sequence[RunSummary], config: ReportConfig, expected: Expected = None) -> tuple[int, int]:
    """(cells with our figure, cells printed) over every table of ``paper``."""
    by_key = {(r.dataset, r.run): r for r in runs}
    got = [paper_table(paper, n, figs, by_key, config, expected)[1:] for n, figs in _paper_cells(paper, cells, config).items()]
    return sum(g[0] for g in got), sum(g[1] for g in got)


def coverage_summary(cells: Sequence[TableCell] | Sequence[PaperNumber] | PaperIndex, runs: Sequence[RunSummary],
                     config: ReportConfig, expected: Expected = None) -> str:
    """The summary's coverage line: cells reproduced / cells printed, per paper page."""
    parts, split = [], False
    for paper, meta in config.papers.items():
        got, printed = paper_coverage(paper, cells, runs, config, expected)
        here = paper_coverage(paper, cells, own_runs(runs, expected), config, expected)[0] if expected is not None else got
        split |= here < got
        parts.append(f"[{meta['short']}]({page_name(paper)}) {got} / {printed}" + (f" ({here} by this profile's runs)" if here < got else ""))
    tail = (f" The rest of each reproduced count (marked {OTHER_PROFILE} on the pages) comes from the committed results "
            "of the `full` profile's runs.") if split else ""
    return "Paper tables, cells reproduced / numeric cells printed: " + " · ".join(parts) + "." + tail


def render_paper_page(
    paper: str,
    cells: Sequence[TableCell] | Sequence[PaperNumber] | PaperIndex,
    runs: Sequence[RunSummary],
    config: ReportConfig,
    summary_link: str = "README.md",
    mini: bool = False,
    mini_text: str = "",
    sections: Sequence[str] = (),
    expected: Expected = None,
) -> str:
    """The page of one seed paper as markdown ending in a newline; ``sections`` (markdown, e.g.
    the diagnostics figures) follow the tables."""
    meta = config.papers[paper]
    by_key = {(r.dataset, r.run): r for r in runs}
    others = " · ".join(f"[{config.papers[p]['short']}]({page_name(p)})" for p in config.papers if p != paper)
    tables = _paper_cells(paper, cells, config)
    rendered = {n: paper_table(paper, n, figs, by_key, config, expected) for n, figs in tables.items()}
    parts = [
        f"# {meta['short']}: the paper's tables beside our runs",
        coverage_line(sum(t[1] for t in rendered.values()), sum(t[2] for t in rendered.values()),
                      None if expected is None else paper_coverage(paper, cells, own_runs(runs, expected), config, expected)[0]),
        f"*{meta['title']}*",
        f"[Summary]({summary_link}) · other papers: {others}",
        intro(any(config.transposed(paper, n) for n in tables)),
    ]
    if mini and mini_text:
        parts.append(mini_text)
    parts += [f"> {n}" for n in meta.get("notes") or []]
    if not tables:
        parts.append("The paper-tables file has no figures for this paper.")
    for number, (t, got, printed) in rendered.items():
        caption = meta["tables"].get(str(number))
        parts.append(f"## Table {number}" + (f": {caption}" if caption else ""))
        swapped = " The paper's rows and columns are swapped here (methods as rows)." if config.transposed(paper, number) else ""
        parts.append(f"Cells reproduced: {got} / {printed}.{swapped}")
        parts.append(markdown_table(t))
        if t.notes:
            parts.append("\n".join(f"- {n}" for n in t.notes))
    parts += list(sections)
    return "\n\n".join(parts) + "\n"
