"""Published figures from the seed papers, and the name mappings needed to look them up.

The figures live in a CSV (``paper,table,dataset,method,metric,value,note``; values are
percentages as printed in the papers).  Everything in this module that maps our registry
names (``cremad``, ``ogm_ge``, ...) onto the spellings used in that CSV is plain data, so
adding a method or a paper means editing a dict, not code.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Seed papers in column order, with the short column header used in the report.
PAPERS: dict[str, str] = {
    "gmm_adaptive_loss": "GMM-AL paper",
    "arl": "ARL paper",
    "iprm": "IPRM paper",
    "opm_ogm": "OPM/OGM paper",
}

# Registry dataset name -> dataset spelling in the CSV (also used as the section title).
DATASET_NAMES: dict[str, str] = {
    "cremad": "CREMA-D",
    "ave": "AVE",
    "kinetics_sounds": "KS",
    "ucf101": "UCF-101",
    "mosi": "MOSI",
}

# Registry fusion name -> spelling the papers use (for "{fusion}" in PAPER_SPELLINGS).
FUSION_NAMES: dict[str, str] = {
    "concat": "Concat",
    "sum": "Sum",
    "film": "FiLM",
}

# Registry method name -> the name the papers use; also the row label in the report.
# ``unimodal_loss`` has no row in any seed paper's tables, so it maps to a label only.
METHOD_NAMES: dict[str, str] = {
    "audio_only": "Audio-only",
    "visual_only": "Visual-only",
    "concat": "Concat",
    "sum": "Sum",
    "film": "FiLM",
    "ogm_ge": "OGM-GE",
    "opm": "OPM",
    "ogm": "OGM",
    "opm_ogm": "OPM+OGM",
    "arl": "ARL",
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
    "unimodal_loss": "Unimodal loss",
}

# Per-paper spellings where a paper deviates from METHOD_NAMES.  Candidates are tried in
# order; "{fusion}" is replaced by FUSION_NAMES[run's fusion] (candidates with "{fusion}"
# are skipped when the fusion is unknown).  The OPM/OGM paper reports OPM and OGM per
# fusion ("Concat+OPM", "Sum+OGM", ...) on CREMA-D/KS/UCF-101 and bare ("OPM") on MOSI.
PAPER_SPELLINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "gmm_adaptive_loss": {"opm_ogm": ("OPM&OGM",)},
    "opm_ogm": {
        "opm": ("{fusion}+OPM", "OPM"),
        "ogm": ("{fusion}+OGM", "OGM"),
        "opm_ogm": ("OPM+OGM",),
    },
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


def load_paper_numbers(path: str | Path) -> list[PaperNumber]:
    """Read the paper-numbers CSV at ``path`` into a list of :class:`PaperNumber`.

    Values are kept as the printed strings so the report shows "66.9" and "75.10"
    exactly as the papers do; they are checked to parse as floats.
    """
    rows: list[PaperNumber] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            value = rec["value"].strip()
            float(value)  # fail loudly on a malformed figure
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


def dataset_label(dataset: str) -> str:
    """Display name of a registry dataset (its CSV spelling), or the registry name itself."""
    return DATASET_NAMES.get(dataset, dataset)


def method_label(method: str) -> str:
    """Display name of a registry method (the papers' name), or the registry name itself."""
    return METHOD_NAMES.get(method, method)


def paper_spellings(paper: str, method: str, fusion: str | None = None) -> tuple[str, ...]:
    """Candidate CSV spellings of registry ``method`` in ``paper``, most specific first.

    ``fusion`` (registry name, e.g. ``"concat"``) fills "{fusion}" templates; templated
    candidates are dropped when it is None or unknown.  Unknown methods yield ().
    """
    templates = PAPER_SPELLINGS.get(paper, {}).get(method)
    if templates is None:
        templates = (METHOD_NAMES[method],) if method in METHOD_NAMES else ()
    fusion_name = FUSION_NAMES.get(fusion) if fusion else None
    out: list[str] = []
    for t in templates:
        if "{fusion}" in t:
            if fusion_name is None:
                continue
            t = t.format(fusion=fusion_name)
        out.append(t)
    return tuple(out)


def paper_figure(
    numbers: Iterable[PaperNumber],
    paper: str,
    dataset: str,
    method: str,
    fusion: str | None = None,
    metric: str = "acc",
) -> PaperNumber | None:
    """The figure ``paper`` reports for registry ``dataset``/``method``, or None.

    Spelling candidates (see :func:`paper_spellings`) are tried in order; for the first
    that has any row, the row from the lowest table number (the paper's main table) wins.
    """
    ds = dataset_label(dataset)
    pool = [n for n in numbers if n.paper == paper and n.dataset == ds and n.metric == metric]
    for name in paper_spellings(paper, method, fusion):
        hits: Sequence[PaperNumber] = [n for n in pool if n.method == name]
        if hits:
            return min(hits, key=lambda n: n.table)
    return None
