"""IPRM Tab. 5 (Tri-CLS vs Single-CLS on trimodal data) in the report: which run and which metric
each row is compared with, and the paper figure each run is indexed under."""

from dataclasses import replace
from pathlib import Path

import pytest

from mmbalance.report import PaperIndex, load_config, load_paper_numbers, load_paper_tables, summarize_run
from mmbalance.report.pages import show_cell
from mmbalance.report.papers import registry_dataset, run_label

ROOT = Path(__file__).resolve().parents[1]
TABLE5 = [c for c in load_paper_tables(ROOT / "reference" / "paper_tables.csv") if c.paper == "iprm" and c.table == 5]
MODS = {"NVGesture": ["rgb", "flow", "depth"], "IEMOCAP": ["audio", "video", "text"]}


def _run(dataset, run, probes):
    """A two-seed results summary: fused accuracy 0.80 / 0.90, the same ``probes`` in each seed."""
    seeds = {str(k): {"test": {"acc": acc, "probe_acc": probes}} for k, acc in enumerate((0.8, 0.9))}
    return summarize_run({"dataset": registry_dataset(dataset), "method": "iprm", "modalities": MODS[dataset],
                          "seeds": seeds}, run=run)


def test_rows_map_to_the_two_strategies_and_their_metrics():
    config = load_config()
    assert len(TABLE5) == 16
    for c in TABLE5:
        m = config.row(c.paper, c.table, c.method, c.dataset)
        assert m.run == ("iprm" if c.method.startswith("Tri-CLS") else "iprm__single_cls"), c.method
        # "Tri-CLS (RGB)": the RGB head's probe accuracy; "(Multi)": the run's accuracy (default)
        col = c.method.split("(")[1].rstrip(")")
        want = {"Multi": "acc", "RGB": "probe:rgb", "OF": "probe:flow", "Depth": "probe:depth",
                "Audio": "probe:audio", "Video": "probe:video", "Text": "probe:text"}[col]
        assert config.our_metric(c.metric, m) == want
    assert run_label("iprm__single_cls") == "IPRM (Single-CLS)"


@pytest.mark.parametrize("dataset", ["NVGesture", "IEMOCAP"])
def test_cells_show_the_probe_or_the_fused_accuracy(dataset):
    config = replace(load_config(), unavailable={})  # as once the dataset has an adapter
    probes = dict(zip(MODS[dataset], (0.5, 0.6, 0.7)))
    runs = {(registry_dataset(dataset), r): _run(dataset, r, probes) for r in ("iprm", "iprm__single_cls")}
    cells = [c for c in TABLE5 if c.dataset == dataset]
    shown = {c.method: show_cell(c, cells, runs, config).mean for c in cells}
    for prefix in ("Tri-CLS", "Single-CLS"):
        got = [shown[f"{prefix} ({col})"] for col in {"NVGesture": ("RGB", "OF", "Depth", "Multi"),
                                                          "IEMOCAP": ("Audio", "Video", "Text", "Multi")}[dataset]]
        assert got == pytest.approx([50.0, 60.0, 70.0, 85.0])  # probes in %, then mean(80, 90)


@pytest.mark.parametrize("dataset, name", [("NVGesture", "nvgesture"), ("IEMOCAP", "iemocap")])
def test_probe_metrics_name_the_adapters_modalities(dataset, name):
    """The ``probe:<modality>`` metrics of Tab. 5 name the modalities the dataset's adapter stores."""
    from mmbalance.datasets import get_dataset, list_datasets

    if name not in list_datasets():
        pytest.skip(f"no {name} adapter")
    assert set(get_dataset(name).modalities) == set(MODS[dataset])


def test_a_probe_row_is_not_the_runs_paper_figure():
    """The leaderboard's paper figure of ``iprm__single_cls`` is Tab. 5's Multi cell, not a
    per-modality cell of the same row group."""
    index = PaperIndex(load_paper_numbers(ROOT / "reference" / "paper_numbers.csv"), load_config())
    assert index.figure("iprm", "NVGesture", "iprm__single_cls").value == "85.89"
    assert index.figure("iprm", "IEMOCAP", "iprm__single_cls").value == "78.95"
    assert index.figure("iprm", "IEMOCAP", "iprm").table < 5  # the main table's IPRM row
