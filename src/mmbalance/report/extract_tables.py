"""Read every numeric cell of every table of the seed papers into the report's reference data.

The seed texts (markdown converted from the PDFs) print a table as consecutive tab-separated
lines beside a caption line ``Table N.`` / ``Table N:`` / ``TABLE N`` (above the table in some
papers, below it in others).  Which printed column is which dataset and metric, and which entity
a printed row is (the *method* our runs are mapped to), is hand-checked data:
``data/seed_tables.yaml``.  This module joins the two and writes

- ``paper_tables.csv``: one line per numeric cell (paper, table, row, column, value, unit, dataset,
  metric, backbone, method, note), values exactly as printed;
- ``paper_numbers.csv``: the same cells in the older (paper, table, dataset, method, metric,
  value, note) form the summary page reads;
- ``seed_tables/<paper>.md``: the tables' lines with their captions, a copy of just the tables
  so the tests can check the reference data where the seed texts are absent.

Usage::

    python -m mmbalance.report.extract_tables --seeds ../shared/seeds \\
        --tables reference/paper_tables.csv --numbers reference/paper_numbers.csv \\
        --copies reference/seed_tables
"""

from __future__ import annotations

import argparse
import csv
import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import yaml

from mmbalance.report.papers import TableCell

CAPTION = re.compile(r"^(?:Table|TABLE)\s+(\d+)\b")
_TAGS = re.compile(r"</?[a-z]+>")
_CITATION = re.compile(r"\s*\[\d+(?:,\s*\d+)*\]")
# IPRM prints the gain of its own method beside the figure: "84.27% ( $\uparrow 17.74\%$ )".
_ARROW_NOTE = re.compile(r"\(\s*\$\\(up|down)arrow\s*([\d.]+)\\?%\$\s*\)")
# "68.41% $\downarrow$": below the best unimodal result (IPRM Tab. 1).
_DOWN_FLAG = re.compile(r"\$\\downarrow\$")
# "55.08 $\pm$ 0.2729": a spread over runs (IPRM Tab. 4).
_SPREAD = re.compile(r"\$\\pm\$\s*([\d.]+)")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
MISSING = {"N/A", "-", "–", "—"}

CSV_COLUMNS = ("paper", "table", "row", "column", "value", "unit", "dataset", "metric", "backbone", "method", "note")
NUMBERS_COLUMNS = ("paper", "table", "dataset", "method", "metric", "value", "note")


# one extracted cell is the record the report reads back (a line of paper_tables.csv)
Cell = TableCell


@dataclass
class Field:
    """One tab-separated field: numbers (with their annotations), a missing mark, or a label."""

    values: list[str]
    notes: list[str]
    missing: bool = False
    label: str = ""


def clean_label(text: str) -> str:
    """A printed label without HTML markup, citation brackets and repeated spaces."""
    return " ".join(_CITATION.sub("", _TAGS.sub("", text)).split())


def parse_field(raw: str) -> Field:
    """Classify one field: numbers (``%``/``×`` dropped, annotations kept as notes), a missing
    mark ("N/A", "-"), or label text."""
    text = _TAGS.sub("", raw).strip()
    notes = [f"printed with {'↑' if m.group(1) == 'up' else '↓'} {m.group(2)}%" for m in _ARROW_NOTE.finditer(text)]
    text = _ARROW_NOTE.sub("", text)
    if _DOWN_FLAG.search(text):
        notes.append("printed with ↓ (below the best unimodal result)")
        text = _DOWN_FLAG.sub("", text)
    notes += [f"printed with ± {m.group(1)}" for m in _SPREAD.finditer(text)]
    text = _SPREAD.sub("", text)
    tokens = text.replace("%", " ").replace("×", " ").split()
    if tokens and all(_NUMBER.match(t) for t in tokens):
        return Field(values=tokens, notes=notes)
    if text in MISSING:
        return Field(values=[], notes=[], missing=True)
    return Field(values=[], notes=[], label=raw.strip())


def table_blocks(text: str, captions_above: bool) -> dict[int, list[list[str]]]:
    """Tab-separated lines of each table, by table number, in printed order.

    A block of consecutive lines containing a tab belongs to the nearest caption line above it
    (``captions_above``) or below it; blocks of one table are joined.
    """
    lines = text.splitlines()
    captions = [(i, int(m.group(1))) for i, ln in enumerate(lines) if (m := CAPTION.match(ln.strip()))]
    out: dict[int, list[list[str]]] = {}
    i = 0
    while i < len(lines):
        if "\t" not in lines[i]:
            i += 1
            continue
        start = i
        while i < len(lines) and "\t" in lines[i]:
            i += 1
        if captions_above:
            owners = [n for j, n in captions if j < start]
            number = owners[-1] if owners else None
        else:
            owners = [n for j, n in captions if j >= i]
            number = owners[0] if owners else None
        if number is None:
            raise ValueError(f"table lines at line {start + 1} have no caption {'above' if captions_above else 'below'}")
        out.setdefault(number, []).append(lines[start:i])
    return out


def data_rows(block_lines: list[str], carry: bool) -> list[tuple[str, list[str | None], list[list[str]]]]:
    """(printed label, values in printed order with None for "N/A"/"-", notes per value) of every
    line with at least one number; header lines have none.  ``carry``: a line whose first field is
    empty continues the label of the line above (IPRM's dataset / metric rows)."""
    rows = []
    first = ""
    for line in block_lines:
        raw = line.split("\t")
        if carry:
            first = raw[0].strip() or first
            raw = [first] + raw[1:]
        parsed = [parse_field(f) for f in raw if f.strip()]
        values: list[str | None] = []
        notes: list[list[str]] = []
        for f in parsed:
            if f.missing:
                values.append(None)
                notes.append([])
            for v in f.values:
                values.append(v)
                notes.append(f.notes)
        if any(v is not None for v in values):
            rows.append((clean_label(" ".join(f.label for f in parsed if f.label)), values, notes))
    return rows


def _pick(spec: object, dataset: str) -> str | None:
    """A value given plainly or by dataset (``*`` = any other dataset)."""
    if isinstance(spec, dict):
        return spec.get(dataset, spec.get("*"))
    return spec


def table_cells(paper: str, number: int, meta: dict, spec: dict, blocks: list[list[str]]) -> list[Cell]:
    """The cells of one table from its printed lines and its hand-checked ``spec``.

    Raises ValueError naming the paper, table and row when a printed row is not in the spec (or
    in another order) or its number of figures does not fit the columns.
    """
    where = f"{paper} Table {number}"
    printed = [r for b in blocks for r in data_rows(b, bool(spec.get("carry")))]
    rows = spec["rows"]
    if len(printed) != len(rows):
        raise ValueError(f"{where}: {len(printed)} printed data rows, {len(rows)} in the spec: {[p[0] for p in printed]}")
    columns = spec["columns"]
    out = []
    for (label, values, notes), rspec in zip(printed, rows):
        match = str(rspec.get("match", rspec.get("label", "")))
        if match not in label:
            raise ValueError(f"{where}: printed row {label!r} does not contain {match!r}")
        idx = rspec.get("columns", list(range(len(columns))))
        if len(values) != len(idx):
            raise ValueError(f"{where}, row {label!r}: {len(values)} figures for {len(idx)} columns")
        shown = rspec.get("label", label)
        for value, vnotes, j in zip(values, notes, idx):
            if value is None:
                continue
            col = columns[j]
            dataset = rspec.get("dataset") or col.get("dataset") or spec.get("dataset")
            row_method = _pick(rspec.get("method", shown), dataset)
            method = rspec.get("fixed_method") or _pick(col.get("method"), dataset)
            method = method.replace("{row}", row_method) if method else row_method
            backbone = (rspec.get("backbone") or col.get("backbone") or spec.get("backbone")
                        or (meta.get("backbones") or {}).get(dataset) or meta.get("backbone", ""))
            note = "; ".join([*vnotes, *[n for n in (rspec.get("note"), spec.get("note")) if n]])
            out.append(Cell(
                paper=paper, table=number, row=shown, column=col["label"], value=value,
                unit=col.get("unit") or spec.get("unit") or "%", dataset=dataset,
                metric=rspec.get("metric") or col.get("metric") or spec.get("metric"),
                backbone=backbone, method=method, note=note,
            ))
    return out


def load_spec(path: str | Path | None = None) -> dict:
    """The hand-checked table spec: ``path`` or the packaged ``data/seed_tables.yaml``."""
    if path is None:
        text = resources.files("mmbalance.report").joinpath("data", "seed_tables.yaml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def paper_blocks(spec: dict, seeds: Path) -> dict[str, tuple[dict[int, list[list[str]]], str]]:
    """Per paper: its tables' printed lines (from ``seeds/<file>``) and the caption lines."""
    out = {}
    for paper, meta in spec.items():
        path = seeds / meta["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: seed text of {paper} not found")
        text = path.read_text(encoding="utf-8")
        out[paper] = (table_blocks(text, meta["captions"] == "above"), text)
    return out


def extract(spec: dict, seeds: Path) -> list[Cell]:
    """Every numeric cell of every table the spec lists, in paper, table and printed order.

    Raises ValueError when a seed has a table the spec lacks or the spec a table the seed lacks.
    """
    cells: list[Cell] = []
    for paper, (blocks, _) in paper_blocks(spec, seeds).items():
        tables = {int(k): v for k, v in spec[paper]["tables"].items()}
        if set(blocks) != set(tables):
            raise ValueError(f"{paper}: tables in the seed {sorted(blocks)} ≠ tables in the spec {sorted(tables)}")
        for number in sorted(tables):
            cells += table_cells(paper, number, spec[paper], tables[number], blocks[number])
    return cells


def caption_text(lines: list[str], number: int) -> str:
    """The caption line of table ``number`` (plus the next non-empty line for "TABLE N" alone)."""
    for i, ln in enumerate(lines):
        m = CAPTION.match(ln.strip())
        if m and int(m.group(1)) == number:
            nxt = next((x.strip() for x in lines[i + 1:] if x.strip()), "")
            return ln.strip() if len(ln.strip()) > 12 else f"{ln.strip()} {nxt}"
    return f"Table {number}"


def seed_copy(paper: str, blocks: dict[int, list[list[str]]], text: str) -> str:
    """Just the tables of one seed text: each caption line above its printed lines (blocks of one
    table separated by an empty line), so ``table_blocks(copy, captions_above=True)`` reads it."""
    lines = text.splitlines()
    parts = [f"<!-- Tables of the seed paper {paper}, copied from its text; captions above. -->"]
    for number in sorted(blocks):
        parts.append(caption_text(lines, number))
        parts += ["\n".join(b) for b in blocks[number]]
    return "\n\n".join(parts) + "\n"


def write_csv(path: Path, header: tuple[str, ...], rows: list[dict]) -> None:
    """A CSV with ``header`` and "\\n" line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(header), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def number_rows(cells: list[Cell]) -> list[dict]:
    """The cells in the (paper, table, dataset, method, metric, value, note) form."""
    return [{"paper": c.paper, "table": c.table, "dataset": c.dataset, "method": c.method,
             "metric": c.metric, "value": c.value, "note": c.note} for c in cells]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", required=True, help="folder with the seed papers' markdown texts")
    ap.add_argument("--spec", default=None, help="table spec (default: the packaged data/seed_tables.yaml)")
    ap.add_argument("--tables", required=True, help="output: reference/paper_tables.csv")
    ap.add_argument("--numbers", default=None, help="output: reference/paper_numbers.csv")
    ap.add_argument("--copies", default=None, help="output folder for <paper>.md copies of the seeds' tables")
    args = ap.parse_args(argv)
    spec = load_spec(args.spec)
    seeds = Path(args.seeds)
    cells = extract(spec, seeds)
    write_csv(Path(args.tables), CSV_COLUMNS, [asdict(c) for c in cells])
    if args.numbers:
        write_csv(Path(args.numbers), NUMBERS_COLUMNS, number_rows(cells))
    if args.copies:
        for paper, (blocks, text) in paper_blocks(spec, seeds).items():
            out = Path(args.copies) / f"{paper}.md"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(seed_copy(paper, blocks, text), encoding="utf-8", newline="\n")
    print(f"{len(cells)} cells from {len({(c.paper, c.table) for c in cells})} tables")


if __name__ == "__main__":
    main()
