"""Every numeric cell of every table of the four seed papers is in the reference data.

The seed texts live in ../shared/seeds beside the repository; where that folder is absent the
committed copies of just their tables (reference/seed_tables/<paper>.md, captions above the
tables) are read instead.  Cells are counted here from the printed tab-separated lines with a
reader of its own, independent of the hand-checked spec the extraction uses.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mmbalance.report import load_config, load_paper_numbers, load_paper_tables
from mmbalance.report.extract_tables import extract, load_spec, number_rows
from mmbalance.report.papers import registry_dataset

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT.parent / "shared" / "seeds"
COPIES = ROOT / "reference" / "seed_tables"
TABLES_CSV = ROOT / "reference" / "paper_tables.csv"
NUMBERS_CSV = ROOT / "reference" / "paper_numbers.csv"
FULL_PROFILE = ROOT / "profiles" / "full.yaml"
SPEC = load_spec()
CAPTION = re.compile(r"^(?:Table|TABLE)\s+(\d+)\b")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
ANNOTATION = re.compile(r"\(\s*\$\\(?:up|down)arrow[^)]*\)|\$\\downarrow\$|\$\\pm\$\s*[\d.]+|</?\w+>")


def numbers_in(field: str) -> list[str]:
    """The figures of one printed field ("84.27% ( $\\uparrow 17.74\\%$ )" → ["84.27"]); none
    for a label ("FiLM [46]", "$ B_t = 32, \\eta = 1e-5$") or a missing mark ("N/A", "-")."""
    tokens = ANNOTATION.sub(" ", field).replace("%", " ").replace("×", " ").split()
    return tokens if tokens and all(NUMBER.fullmatch(t) for t in tokens) else []


def printed_cells(text: str, captions_above: bool) -> dict[int, list[str]]:
    """Table number → every figure printed in its tab-separated lines, in order."""
    lines = text.splitlines()
    captions = [(i, int(m.group(1))) for i, ln in enumerate(lines) if (m := CAPTION.match(ln.strip()))]
    out: dict[int, list[str]] = {}
    for i, line in enumerate(lines):
        if "\t" not in line:
            continue
        if captions_above:
            number = [n for j, n in captions if j < i][-1]
        else:
            number = next(n for j, n in captions if j > i)
        out.setdefault(number, []).extend(v for f in line.split("\t") for v in numbers_in(f))
    return out


def sources() -> dict[str, dict[int, list[str]]]:
    """Per paper, its printed figures by table: from the seed texts, else the committed copies."""
    out = {}
    for paper, meta in SPEC.items():
        if SEEDS.is_dir():
            out[paper] = printed_cells((SEEDS / meta["file"]).read_text(encoding="utf-8"), meta["captions"] == "above")
        else:
            out[paper] = printed_cells((COPIES / f"{paper}.md").read_text(encoding="utf-8"), True)
    return out


@pytest.fixture(scope="module")
def cells():
    return load_paper_tables(TABLES_CSV)


def test_every_numeric_cell_of_every_table(cells):
    """Per table: as many cells as figures printed, with the same values."""
    printed = sources()
    ours: dict[tuple[str, int], list[str]] = {}
    for c in cells:
        ours.setdefault((c.paper, c.table), []).append(c.value)
    expected = {(p, t): v for p, tables in printed.items() for t, v in tables.items()}
    assert sorted(ours) == sorted(expected)
    for key, values in expected.items():
        assert len(ours[key]) == len(values), f"{key}: {len(ours[key])} cells, {len(values)} printed"
        assert Counter(ours[key]) == Counter(values), key
    # the four papers: 3 + 5 + 6 + 15 tables, 772 cells
    assert len(expected) == 29 and len(cells) == 772


@pytest.mark.skipif(not SEEDS.is_dir(), reason="seed texts not beside the repository")
def test_copies_and_csv_follow_the_seeds(cells):
    """The committed table copies print the same figures as the seeds, and the extraction from
    the seeds gives exactly the committed CSV."""
    for paper, tables in sources().items():
        assert printed_cells((COPIES / f"{paper}.md").read_text(encoding="utf-8"), True) == tables, paper
    assert [c.__dict__ for c in extract(SPEC, SEEDS)] == [c.__dict__ for c in cells]


def test_paper_numbers_are_the_same_cells(cells):
    """reference/paper_numbers.csv (read by the summary) is the cells in its older form."""
    with open(NUMBERS_CSV, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    want = [{k: str(v) for k, v in row.items()} for row in number_rows(cells)]
    assert got == want
    assert len(load_paper_numbers(NUMBERS_CSV)) == len(cells)


def test_cells_are_identified(cells):
    keys = Counter((c.paper, c.table, c.dataset, c.method, c.metric) for c in cells)
    assert [k for k, n in keys.items() if n > 1] == []
    layout = Counter((c.paper, c.table, c.row, c.column) for c in cells)
    assert [k for k, n in layout.items() if n > 1] == []


def test_hand_checked_labels(cells):
    """Multi-level and garbled headers map to the right dataset, metric and method."""
    at = {(c.paper, c.table, c.row, c.column): c for c in cells}
    c = at[("iprm", 1, "NVGesture Macro-F1", "D/T (unimodal)")]
    assert (c.value, c.dataset, c.metric, c.method) == ("81.83", "NVGesture", "macro_f1", "Depth-only")
    c = at[("iprm", 1, "CREMA-D MAP", "Concat")]
    assert (c.value, c.metric, c.note) == ("68.41", "map", "printed with ↓ (below the best unimodal result)")
    c = at[("iprm", 4, "Naive MML", "Training time (second/epoch)")]
    assert (c.value, c.unit, c.metric, c.method) == ("55.08", "s/epoch", "epoch_seconds", "Concat")
    c = at[("opm_ogm", 11, "Concatenation", "CMU-MOSI (Audio+Visual+Text) F1")]
    assert (c.value, c.dataset, c.metric) == ("76.0", "MOSI", "f1")
    c = at[("opm_ogm", 12, "OPM+OGM", "UCF-101 mAP")]
    assert (c.value, c.dataset, c.metric) == ("87.8", "UCF-101", "map")
    c = at[("opm_ogm", 15, "ρ = mean score difference, z(x) = sigmoid(x)", "UCF-101 OGM")]
    assert (c.value, c.method) == ("80.9", "OGM (difference, sigmoid)")
    c = at[("opm_ogm", 2, "Audio/RGB-only", "UCF-101 (RGB+Optical Flow) Acc")]
    assert (c.value, c.method, c.backbone) == ("77.2", "RGB-only", "ResNet-18 (ImageNet-pretrained)")
    c = at[("opm_ogm", 4, "GBlending", "Training time")]
    assert (c.value, c.unit, c.metric) == ("1.50", "× Concatenation", "train_time_ratio")
    assert at[("gmm_adaptive_loss", 1, "Baseline (Concat)", "CREMA-D Accuracy (%)")].method == "Concat"
    assert at[("arl", 4, "ARL", "AVE")].backbone.startswith("Swin-B")


def test_every_cell_has_a_run_or_a_reason(cells):
    """A cell on a dataset we have is mapped to a run, or its mapping line says why not."""
    config = load_config()
    for c in cells:
        if config.unavailable_reason(c.dataset):
            continue
        m = config.row(c.paper, c.table, c.method, c.dataset)
        assert m is not None, (c.paper, c.table, c.method, c.dataset)
        assert m.run or m.note, (c.paper, c.table, c.method, c.dataset)
        assert config.our_metric(c.metric, m) is not None, c.metric


def test_mapped_runs_are_in_the_full_profile(cells):
    """Pages say "not run: full profile" for a mapped run without results: the full profile
    trains every mapped (dataset, run)."""
    config = load_config()
    bench = yaml.safe_load(FULL_PROFILE.read_text(encoding="utf-8"))["benchmark"]
    missing = set()
    for c in cells:
        m = config.row(c.paper, c.table, c.method, c.dataset)
        if m is not None and m.run and not config.unavailable_reason(c.dataset):
            ds, run = m.target(c.dataset)  # the row's results: on the paper's dataset or another of ours
            if run not in bench[ds]:
                missing.add((ds, run))
    assert not missing, sorted(missing)
