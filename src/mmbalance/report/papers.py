"""Published figures from the seed papers, and how their table rows map onto our runs.

The figures live in a CSV (``paper,table,dataset,method,metric,value,note``; values as printed
in the papers).  Which of our runs a paper row is compared with is plain data shipped with this
package (``data/paper_rows.csv``: (paper, table, row, dataset) → (run, metric)), as are the
papers' captions, the metric correspondences and the notes on comparisons that are not like for
like (``data/papers.yaml``).  Adding a run, a variant or a paper means editing those files.

A *run* is a results folder name, ``results/<dataset>/<run>/``: a registry method (``concat``,
``ogm_ge``), a fusion variant ``<method>__<fusion>`` (``opm__sum``; ``concat__sum`` is plain sum
fusion), a backbone variant ``<method>__<backbone>`` (``arl__mmtm``; ``concat__mmtm`` is MMTM with
a concat head) or an ablation variant ``<method>__<variant>`` (``gmm_al__alpha0``).
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

WILDCARD = "*"

# Registry dataset name -> dataset spelling in the CSV (also used as the section title).
DATASET_NAMES: dict[str, str] = {
    "cremad": "CREMA-D",
    "ave": "AVE",
    "ave_loc": "AVE (localisation)",
    "music_avqa": "MUSIC-AVQA",
    "kinetics_sounds": "KS",
    "vggsound": "VGGSound",
    "ucf101": "UCF-101",
    "ucf101_three": "UCF-101-Three",
    "nvgesture": "NVGesture",
    "mosi": "MOSI",
    "iemocap": "IEMOCAP",
    "sarcasm": "Sarcasm",
}
CSV_DATASETS: dict[str, str] = {v: k for k, v in DATASET_NAMES.items()}

# Registry fusion name -> the papers' spelling (labels of ``<method>__<fusion>`` runs).
FUSION_NAMES: dict[str, str] = {
    "concat": "Concat",
    "sum": "Sum",
    "film": "FiLM",
    "weight": "Weight",
    "gated": "Gated",
    "mlp": "MLP head",
}

# Registry backbone name -> the papers' spelling (labels of ``<method>__<backbone>`` runs).
BACKBONE_NAMES: dict[str, str] = {
    "mmtm": "MMTM",
    "mmformer": "mmFormer",
    "tsn": "TSN",
    "tsm": "TSM",
    "avga": "AVGA",
    "avsdn": "AVSDN",
    "psp": "PSP",
}

# Registry method name -> the name the papers use; also the row label in the report.
METHOD_NAMES: dict[str, str] = {
    "audio_only": "Audio-only",
    "visual_only": "Visual-only",
    "rgb_only": "RGB-only",
    "flow_only": "OF-only",
    "depth_only": "Depth-only",
    "rgb_diff_only": "RGB-diff-only",
    "text_only": "Text-only",
    "vision_only": "Vision-only",
    "image_only": "Image-only",
    "video_only": "Video-only",
    "concat": "Concat",
    "ogm_ge": "OGM-GE",
    "opm": "OPM",
    "ogm": "OGM",
    "ogm_star": "OGM*",
    "opm_ogm": "OPM+OGM",
    "arl": "ARL",
    "arl_ur": "ARL (UR only)",
    "arl_al": "ARL (AL only)",
    "arl_ur_al": "ARL (UR+AL)",
    "arl_al_gr": "ARL (AL+GR)",
    "arl_code": "ARL (released code)",
    "ogm_code": "OGM (released code)",
    "opm_code": "OPM (released code)",
    "iprm": "IPRM",
    "gmm_al": "GMM-AL",
    "g_blending": "G-Blending",
    "greedy": "Greedy",
    "pmr": "PMR",
    "agm": "AGM",
    "mla": "MLA",
    "dr": "D&R",
    "mmpareto": "MMPareto",
    "reconboost": "ReconBoost",
    "lfm": "LFM",
    "mslr": "MSLR",
    "moddrop": "ModDrop",
    "dropout": "Dropout",
    "annealed_dropout": "Annealed dropout",
    "evolutional_dropout": "Evolutional dropout",
    "curriculum_dropout": "Curriculum dropout",
    "unimodal_loss": "Unimodal loss",
    "mmcosine": "MMCosine",
    "umt": "UMT",
    "mbsd": "MBSD",
    "cml": "CML",
    "amco": "AMCo",
    "valuation": "Modality valuation",
    "grad_scale": "Gradient scale",
}

# Variant suffix (after "__") -> label; fusions come from FUSION_NAMES.
VARIANT_LABELS: dict[str, str] = {
    "code": "released code",
    "alpha0": "α=0",
    "beta0": "β=0",
    "gamma0": "γ=0",
    "no_weights": "w/o GMM weights",
    "adam_reset": "Adam, reset",
    "sgd_same_state": "SGD, same state",
    "adam_same_state": "Adam, same state",
    "converged_warmup": "warm-up to convergence",
    "linear_mixup": "linear mixup",
    "no_ema": "w/o EMA",
    "one_pass": "one-pass",
    "single_cls": "Single-CLS",
    "modality_level": "modality-level",
    # ARL Fig. 1: the audio encoder's gradient × 5, and no scaling (Concat with ARL's ratios logged)
    "audio5": "audio × 5, \"a*5\"",
    "none": "none",
    # TPAMI 2024 OPM/OGM Tab. 1 (factors on the recipe's train settings), Tab. 14 (γ¹, γ²), Tab. 15 (ρ, z)
    "lr0_1": "lr × 0.1",
    "lr0_01": "lr × 0.01",
    "batch2": "batch × 2",
    "batch4": "batch × 4",
    "bias0": "γ¹=0, γ²=0",
    "bias1": "γ¹=1, γ²=1",
    "bias13": "γ¹=1/3, γ²=2/3",
    "bias23": "γ¹=2/3, γ²=1/3",
    "sigmoid": "ρ ratio, z sigmoid",
    "diff": "ρ difference, z tanh",
    "diff_sigmoid": "ρ difference, z sigmoid",
    # ARL Tab. 4: the Swin encoder set (params encoder_sets.swin) with gated fusion
    "swin": "Swin, gated fusion",
}


@dataclass(frozen=True)
class PaperNumber:
    """One row of the paper-numbers CSV; ``value`` is kept exactly as printed (a string)."""

    paper: str
    table: int
    dataset: str
    method: str
    metric: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class TableCell:
    """One numeric cell of a seed paper's table (a line of ``reference/paper_tables.csv``).

    ``row``/``column`` are the printed labels (the page's layout); ``method`` is the entity a
    run reproduces (the key of the row mapping); ``value`` is kept exactly as printed.
    """

    paper: str
    table: int
    row: str
    column: str
    value: str
    unit: str
    dataset: str
    metric: str
    backbone: str
    method: str
    note: str = ""


@dataclass(frozen=True)
class RowMapping:
    """One line of ``paper_rows.csv``: a paper row (in a table, on a dataset) → our run.

    ``table`` and ``dataset`` may be ``"*"``; ``run`` is "" for rows not reproduced, and
    ``<dataset>/<run>`` for a run on another of our datasets than the paper's (the OPM/OGM
    paper's AVE Tab. 7 is event localisation: our ``ave_loc`` runs); ``metric`` is "" to use
    the default for the paper's metric.
    """

    paper: str
    table: str
    row: str
    dataset: str
    run: str
    metric: str = ""
    note: str = ""

    def target(self, dataset: str) -> tuple[str, str]:
        """(registry dataset, run name) of the results this row is compared with, for a cell on
        the paper's ``dataset`` (either spelling)."""
        if "/" in self.run:
            ours, run = self.run.split("/", 1)
            return ours, run
        return registry_dataset(dataset), self.run


@dataclass(frozen=True)
class CodeVariant:
    """One method as its paper states it (``paper_run``) and as its released code runs it
    (``code_run``); ``code`` names the code read, ``differs`` says what it changes."""

    paper_run: str
    code_run: str
    code: str
    differs: str


def parse_variants(entries: Sequence[Mapping] | None, source: str) -> tuple[CodeVariant, ...]:
    """``released_code`` entries of papers.yaml; a missing key is an error naming ``source``."""
    out = []
    for e in entries or ():
        missing = {"paper_run", "code_run", "code", "differs"} - set(e)
        if missing:
            raise ValueError(f"{source}: released_code entry {dict(e)} lacks {sorted(missing)}")
        out.append(CodeVariant(str(e["paper_run"]), str(e["code_run"]), str(e["code"]), str(e["differs"])))
    return tuple(out)


@dataclass(frozen=True)
class ReportConfig:
    """Everything the paper pages need besides results: papers, metrics, notes, row mapping."""

    papers: dict[str, dict]
    metrics: dict[str, dict]
    column_notes: tuple[dict, ...]
    rows: dict[tuple[str, str, str, str], RowMapping]
    unavailable: dict[str, str] = field(default_factory=dict)
    released_code: tuple[CodeVariant, ...] = ()  # methods whose released code differs from the paper

    def unavailable_reason(self, dataset: str) -> str | None:
        """Why we have no figure on a paper's ``dataset`` (no adapter, no run configured), or None."""
        return self.unavailable.get(csv_dataset(dataset))

    def transposed(self, paper: str, table: int | str) -> bool:
        """Whether the page shows ``table`` with the paper's rows and columns swapped."""
        return int(table) in {int(t) for t in self.papers[paper].get("transpose") or ()}

    def row(self, paper: str, table: int | str, row: str, dataset: str) -> RowMapping | None:
        """The mapping line for a paper row: exact table before ``*``, then exact dataset."""
        ds = csv_dataset(dataset)
        for t, d in ((str(table), ds), (str(table), WILDCARD), (WILDCARD, ds), (WILDCARD, WILDCARD)):
            hit = self.rows.get((paper, t, row, d))
            if hit is not None:
                return hit
        return None

    def our_metric(self, paper_metric: str, mapping: RowMapping | None = None) -> str | None:
        """Our metric compared with ``paper_metric`` (the row's override first), or None."""
        if mapping is not None and mapping.metric:
            return mapping.metric
        entry = self.metrics.get(paper_metric)
        return entry["ours"] if entry else None

    def metric_header(self, paper_metric: str) -> str:
        """Column header of a paper metric (e.g. "mAP")."""
        return self.metrics.get(paper_metric, {}).get("header", paper_metric)

    def notes_for(self, paper: str, table: int | str, dataset: str, metric: str) -> list[str]:
        """Column notes matching a (paper, table, dataset, paper metric) cell, in file order."""
        ds = csv_dataset(dataset)
        out = []
        for n in self.column_notes:
            if (n["paper"] == paper and str(n["table"]) in (WILDCARD, str(table))
                    and n["dataset"] in (WILDCARD, ds) and n["metric"] in (WILDCARD, metric)):
                out.append(n["note"])
        return out


def csv_dataset(dataset: str) -> str:
    """The CSV spelling of a dataset given either its registry name or its CSV spelling."""
    return DATASET_NAMES.get(dataset, dataset)


def registry_dataset(dataset: str) -> str:
    """The registry name of a dataset given either spelling."""
    return CSV_DATASETS.get(dataset, dataset)


def _data_text(name: str) -> tuple[str, str]:
    """(text, display path) of a file shipped in this package's ``data`` folder."""
    ref = resources.files("mmbalance.report").joinpath("data", name)
    return ref.read_text(encoding="utf-8"), f"mmbalance/report/data/{name}"


def parse_row_mappings(text: str, source: str, papers: Iterable[str]) -> dict[tuple[str, str, str, str], RowMapping]:
    """Parse ``paper_rows.csv`` text (``#`` lines are comments); ``source`` names it in errors.

    Raises ValueError naming the file and line for a missing column, an unknown paper or a
    duplicate (paper, table, row, dataset).
    """
    known = set(papers)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    need = {"paper", "table", "row", "dataset", "run"}
    if not need <= set(reader.fieldnames or ()):
        raise ValueError(f"{source}: header must have columns {sorted(need)} (+ metric, note); got {reader.fieldnames}")
    out: dict[tuple[str, str, str, str], RowMapping] = {}
    for i, rec in enumerate(reader, start=2):
        m = RowMapping(
            paper=rec["paper"].strip(), table=rec["table"].strip(), row=rec["row"].strip(),
            dataset=csv_dataset(rec["dataset"].strip()), run=(rec["run"] or "").strip(),
            metric=(rec.get("metric") or "").strip(), note=(rec.get("note") or "").strip(),
        )
        if m.paper not in known:
            raise ValueError(f"{source}, data line {i}: unknown paper {m.paper!r}; choices: {', '.join(sorted(known))}")
        key = (m.paper, m.table, m.row, m.dataset)
        if key in out:
            raise ValueError(f"{source}, data line {i}: duplicate mapping for {key}")
        out[key] = m
    return out


def parse_papers_yaml(text: str, source: str) -> dict:
    """Parse ``papers.yaml`` text, checking its three sections; ``source`` names it in errors."""
    data = yaml.safe_load(text) or {}
    for key in ("papers", "metrics"):
        if not isinstance(data.get(key), dict):
            raise ValueError(f"{source}: missing mapping section {key!r}")
    for name, p in data["papers"].items():
        for key in ("header", "short", "title"):
            if key not in p:
                raise ValueError(f"{source}: paper {name!r} lacks {key!r}")
    for n in data.get("column_notes") or []:
        if not {"paper", "table", "dataset", "metric", "note"} <= set(n):
            raise ValueError(f"{source}: column note {n} needs paper, table, dataset, metric and note")
    return data


def load_config(rows_path: str | Path | None = None, papers_path: str | Path | None = None) -> ReportConfig:
    """The report configuration: the packaged data files, or the files at the given paths."""
    if rows_path is None and papers_path is None:
        return _default_config()
    return _build_config(
        _read(papers_path) if papers_path else _data_text("papers.yaml"),
        _read(rows_path) if rows_path else _data_text("paper_rows.csv"),
    )


def _read(path: str | Path) -> tuple[str, str]:
    return Path(path).read_text(encoding="utf-8"), str(path)


@functools.cache
def _default_config() -> ReportConfig:
    return _build_config(_data_text("papers.yaml"), _data_text("paper_rows.csv"))


def _build_config(papers_src: tuple[str, str], rows_src: tuple[str, str]) -> ReportConfig:
    data = parse_papers_yaml(*papers_src)
    rows = parse_row_mappings(*rows_src, papers=data["papers"])
    papers = {k: {**v, "tables": {str(t): c for t, c in (v.get("tables") or {}).items()}}
              for k, v in data["papers"].items()}
    return ReportConfig(papers=papers, metrics=dict(data["metrics"]),
                        column_notes=tuple(data.get("column_notes") or ()), rows=rows,
                        unavailable=dict(data.get("unavailable_datasets") or {}),
                        released_code=parse_variants(data.get("released_code"), papers_src[1]))


def _papers() -> dict[str, str]:
    return {k: v["header"] for k, v in _default_config().papers.items()}


# Seed papers in column order, with the short column header used in the summary.
PAPERS: dict[str, str] = _papers()


def load_paper_numbers(path: str | Path) -> list[PaperNumber]:
    """Read the paper-numbers CSV at ``path`` into a list of :class:`PaperNumber`.

    Values are kept as the printed strings so the report shows "66.9" and "75.10"
    exactly as the papers do; a value that does not parse as a number is an error naming
    the file and line.
    """
    rows: list[PaperNumber] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for line, rec in enumerate(csv.DictReader(fh), start=2):
            value = rec["value"].strip()
            try:
                float(value)
            except ValueError:
                raise ValueError(f"{path}, line {line}: value {value!r} is not a number") from None
            rows.append(
                PaperNumber(
                    paper=rec["paper"].strip(),
                    table=int(rec["table"]),
                    dataset=rec["dataset"].strip(),
                    method=rec["method"].strip(),
                    metric=rec["metric"].strip(),
                    value=value,
                    note=(rec.get("note") or "").strip(),
                )
            )
    return rows


TABLE_COLUMNS = ("paper", "table", "row", "column", "value", "unit", "dataset", "metric", "backbone", "method")


def load_paper_tables(path: str | Path) -> list[TableCell]:
    """Read ``reference/paper_tables.csv`` (every numeric cell of the seed papers' tables).

    A missing column or a value that does not parse as a number is an error naming the file
    (and line).
    """
    cells: list[TableCell] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(TABLE_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line, rec in enumerate(reader, start=2):
            try:
                float(rec["value"])
                table = int(rec["table"])
            except ValueError:
                raise ValueError(f"{path}, line {line}: value {rec['value']!r} or table {rec['table']!r} is not a number") from None
            cells.append(TableCell(**{k: rec[k].strip() for k in TABLE_COLUMNS if k != "table"}, table=table,
                                   note=(rec.get("note") or "").strip()))
    return cells


def cells_from_numbers(numbers: Iterable[PaperNumber], config: ReportConfig) -> list[TableCell]:
    """Paper-numbers lines as table cells (row = method, column = dataset and metric), for pages
    rendered without the tables file."""
    return [TableCell(paper=n.paper, table=n.table, row=n.method, column=f"{n.dataset} {config.metric_header(n.metric)}",
                      value=n.value, unit="", dataset=n.dataset, metric=n.metric, backbone="", method=n.method)
            for n in numbers]


def dataset_label(dataset: str) -> str:
    """Display name of a registry dataset (its CSV spelling), or the registry name itself."""
    return DATASET_NAMES.get(dataset, dataset)


def method_label(method: str) -> str:
    """Display name of a registry method (the papers' name), or the registry name itself."""
    return METHOD_NAMES.get(method, method)


def run_label(run: str) -> str:
    """Display name of a run: ``ogm_ge`` → "OGM-GE", ``opm__sum`` → "OPM (Sum fusion)",
    ``concat__sum`` → "Sum", ``arl__mmtm`` → "ARL (MMTM backbone)", ``concat__mmtm`` → "MMTM",
    ``gmm_al__alpha0`` → "GMM-AL (α=0)"."""
    if "__" not in run:
        return method_label(run)
    base, variant = run.split("__", 1)
    for names, kind in ((FUSION_NAMES, "fusion"), (BACKBONE_NAMES, "backbone")):
        if variant in names:
            return names[variant] if base == "concat" else f"{method_label(base)} ({names[variant]} {kind})"
    return f"{method_label(base)} ({VARIANT_LABELS.get(variant, variant)})"


class PaperIndex:
    """Paper figures indexed by the run each row maps to (built once per report).

    ``figure(paper, dataset, run, metric)`` is the figure printed for the row mapped to
    ``run`` on ``dataset`` for the paper's ``metric``, from the lowest-numbered table. A row
    compared with another metric of the run (``probe:<modality>``: IPRM Tab. 5's per-modality
    rows) is not the run's figure and is left out.
    """

    def __init__(self, numbers: Iterable[PaperNumber], config: ReportConfig | None = None) -> None:
        self.config = config or load_config()
        self.numbers = list(numbers)
        self._by_run: dict[tuple[str, str, str, str], PaperNumber] = {}
        for n in self.numbers:
            m = self.config.row(n.paper, n.table, n.method, n.dataset)
            if m is None or not m.run or self._other_metric(m, n.metric):
                continue
            ours, run = m.target(n.dataset)
            key = (n.paper, csv_dataset(ours), run, n.metric)
            if key not in self._by_run or n.table < self._by_run[key].table:
                self._by_run[key] = n

    def _other_metric(self, mapping: RowMapping, paper_metric: str) -> bool:
        """Whether the row is compared with a metric other than the default for ``paper_metric``."""
        return bool(mapping.metric) and mapping.metric != self.config.our_metric(paper_metric)

    def figure(self, paper: str, dataset: str, run: str, metric: str = "acc") -> PaperNumber | None:
        """The paper's figure for ``run`` on registry or CSV ``dataset``, or None."""
        return self._by_run.get((paper, csv_dataset(dataset), run, metric))


def run_name(method: str, fusion: str | None = None) -> str:
    """The run name of a method trained with a fusion (``concat`` fusion: the method itself)."""
    return method if fusion in (None, "", "concat") else f"{method}__{fusion}"


def paper_figure(
    numbers: Iterable[PaperNumber] | PaperIndex,
    paper: str,
    dataset: str,
    method: str,
    fusion: str | None = None,
    metric: str = "acc",
) -> PaperNumber | None:
    """The figure ``paper`` reports for registry ``dataset`` and ``method`` (with ``fusion``).

    Looks the run up through the row mapping (``data/paper_rows.csv``); the row from the
    lowest table number (the paper's main table) wins.
    """
    index = numbers if isinstance(numbers, PaperIndex) else PaperIndex(numbers)
    return index.figure(paper, dataset, run_name(method, fusion), metric)
