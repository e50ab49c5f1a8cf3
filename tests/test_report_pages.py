"""Paper pages, the paper-row → run mapping data, derived metrics and plots of the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mmbalance.evaluate import curves as run_curves
from mmbalance.report import (
    PaperIndex,
    PaperNumber,
    TableCell,
    coverage_summary,
    load_config,
    load_paper_numbers,
    load_paper_tables,
    load_results,
    load_robustness,
    paper_cell,
    paper_table,
    summarize_robustness,
    render_paper_page,
    robustness_table,
)
from mmbalance.report.pages import OTHER_PROFILE, coverage_line, own_runs, paper_coverage
from mmbalance.report.papers import parse_row_mappings
from mmbalance.report.tables import dataset_table, our_values

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "report"
PAPER_CSV = ROOT / "reference" / "paper_numbers.csv"
TABLES_CSV = ROOT / "reference" / "paper_tables.csv"


@pytest.fixture(scope="module")
def runs():
    return load_results(sorted(FIXTURES.glob("results/*/*/results.json")))


@pytest.fixture(scope="module")
def config():
    return load_config()


def cells(page: str, table: str, row: str) -> list[str]:
    """Cells of ``row`` in the table under ``## Table <table>``."""
    body = page.split(f"## Table {table}", 1)[1].split("\n## ", 1)[0]
    for line in body.splitlines():
        if line.startswith(f"| {row} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row {row!r} in table {table}")


def test_every_paper_row_is_mapped(config):
    """Each cell of the paper tables on a dataset we have maps to a run or to a reason."""
    missing = {(c.paper, c.table, c.method, c.dataset) for c in load_paper_tables(TABLES_CSV)
               if not config.unavailable_reason(c.dataset) and config.row(c.paper, c.table, c.method, c.dataset) is None}
    assert not missing, sorted(missing)


def test_gmm_page_cells(runs, config):
    page = render_paper_page("gmm_adaptive_loss", load_paper_tables(TABLES_CSV), runs, config)
    # the paper's row label; concat alone in its column -> not bold
    assert cells(page, "1", "Baseline (Concat)") == ["Baseline (Concat)", "`concat`", "68.00 ± 2.83 (paper 67.47, +0.53)",
                                                     "not run (paper 64.56)"]
    # the paper prints "-" for G-Blending on AVE: no figure, and no run
    assert cells(page, "1", "G-Blending")[3] == "—"
    # AVE OGM-GE 0.655 / 0.6612 -> 65.81; 65.81 - 66.14 = -0.33
    assert cells(page, "1", "OGM-GE")[3] == "65.81 ± 0.44 (paper 66.14, -0.33)"
    # ablation row -> its own run: 0.63 / 0.67 -> 65.00 ± 2.83; 65.00 - 76.88 = -11.88
    assert cells(page, "2", "Ours w/o L_MM (α = 0)")[1:3] == ["`gmm_al__alpha0`", "65.00 ± 2.83 (paper 76.88, -11.88)"]
    assert "## Table 3: Optimizer settings and states" in page


def test_opm_ogm_page_best_and_notes(runs, config):
    page = render_paper_page("opm_ogm", load_paper_tables(TABLES_CSV), runs, config)
    # best of our means in the column in bold: Concat 68.00 beats Sum+OPM 64.50 (one seed)
    assert cells(page, "2", "Concatenation")[2] == "**68.00 ± 2.83** (paper 66.9, +1.10)"
    assert cells(page, "2", "Summation-OPM")[1:3] == ["`opm__sum`", "64.50 ± 0.00 (paper 63.4, +1.10)"]
    assert "| UCF-101 (RGB+Optical Flow) Acc† |" in page
    assert "† UCF-101 in the OPM/OGM paper uses ImageNet-pretrained" in page
    assert "event-localisation" in page  # page note: the paper's AVE table is not compared
    assert "Fig. 6" in page


def test_reasons_instead_of_gaps(runs, config):
    """A cell without our figure says why: dataset, model, task, or which profile trains it."""
    tables = load_paper_tables(TABLES_CSV)
    page = render_paper_page("opm_ogm", tables, runs, config)
    assert cells(page, "2", "Concatenation")[8] == "not run (paper 52.7)"  # VGGSound: no run in these results
    # AVE localisation: the row's run is on another of our datasets (ave_loc), named in the row
    assert cells(page, "7", "AVGA")[1:3] == ["`ave_loc/concat__avga`, `ave_loc/opm__avga`, `ave_loc/ogm__avga`, "
                                             "`ave_loc/opm_ogm__avga`", "not run (paper 73.6)"]
    # question answering: the rows' runs are on our MUSIC-AVQA (music_avqa)
    assert cells(page, "7", "AVSD")[1:3] == ["`music_avqa/concat__avsd`, `music_avqa/opm__avsd`, `music_avqa/ogm__avsd`, "
                                             "`music_avqa/opm_ogm__avsd`", "not run (paper 66.9)"]
    listed = render_paper_page("opm_ogm", tables, runs, config, expected={"ave_loc": ["concat__avga"]})
    assert cells(listed, "7", "AVGA")[2] == "not run yet (paper 73.6)"
    assert cells(listed, "7", "PSP")[2] == "not run: full profile (paper 74.4)"
    assert cells(page, "8", "I-vector")[1:3] == ["`concat__ivector`, `opm__ivector`, `ogm__ivector`", "not run (paper 67.4)"]
    assert cells(page, "3", "VATT")[1:3] == ["`concat__vatt`", "not run (paper 61.8)"]  # our VATT
    assert cells(page, "3", "CentralNet")[1:3] == ["`concat__centralnet`", "not run (paper 66.4)"]  # our CentralNet
    arl = render_paper_page("arl", tables, runs, config)
    assert cells(arl, "4", "Vanilla")[1:3] == ["`concat__swin`", "not run (paper 77.66)"]  # ARL Tab. 4: our Swin runs
    # with the expected runs known: a listed run "not run yet", another one the full profile's
    expected = {"cremad": ["concat", "arl"], "ave": ["concat"]}
    arl = render_paper_page("arl", tables, runs, config, expected=expected)
    assert cells(arl, "1", "ARL")[2] == "not run yet (paper 76.61)"
    assert cells(arl, "3", "MMTM")[2] == "not run: full profile (paper 51.86)"
    iprm = render_paper_page("iprm", tables, runs, config)
    assert cells(iprm, "1", "Concat")[6] == "not run (paper 82.37)"  # NVGesture: no run in these results
    iprm = render_paper_page("iprm", tables, runs, config)
    assert cells(iprm, "6", "CLIP")[1:3] == ["`concat__clip`", "not run (paper 74.82)"]  # IPRM Tab. 6: CLIP towers


def test_every_table_complete_with_coverage(runs, config):
    """Every table of every paper, each printed cell once (with ours or a reason), and the
    coverage line counting the cells with our figure."""
    tables = load_paper_tables(TABLES_CSV)
    for paper in config.papers:
        mine = [c for c in tables if c.paper == paper]
        page = render_paper_page(paper, tables, runs, config)
        for number in {c.table for c in mine}:
            assert f"## Table {number}" in page
        table_lines = "\n".join(ln for ln in page.splitlines() if ln.startswith("| "))
        assert table_lines.count("(paper ") - table_lines.count("(paper —)") == len(mine), paper
        got, printed = paper_coverage(paper, tables, runs, config)
        assert printed == len(mine)
        assert page.splitlines()[2] == coverage_line(got, printed)
    # GMM-AL: Concat on CREMA-D, OGM-GE on AVE, GMM-AL α=0 on CREMA-D (3 cells of 32)
    assert paper_coverage("gmm_adaptive_loss", tables, runs, config) == (3, 32)
    summary = coverage_summary(tables, runs, config)
    assert "[GMM-AL](gmm_adaptive_loss.md) 3 / 32" in summary


def test_coverage_counts_this_profiles_own_runs_apart(runs, config):
    """With benchmark lists, the coverage says how many reproduced cells come from runs this
    profile trains; the others carry the other-profile mark on the page."""
    tables = load_paper_tables(TABLES_CSV)
    expected = {"cremad": ["concat"]}  # GMM-AL: of Concat, OGM-GE (AVE), GMM-AL α=0 only Concat is this profile's
    mine = own_runs(runs, expected)
    assert {(r.dataset, r.run) for r in mine} == {("cremad", "concat")}
    got, printed = paper_coverage("gmm_adaptive_loss", tables, runs, config, expected)
    here = paper_coverage("gmm_adaptive_loss", tables, mine, config, expected)[0]
    assert (got, printed, here) == (3, 32, 1)
    line = coverage_line(got, printed, here)
    assert "1 of them come from runs this profile trains, the other 2 (marked °)" in line
    page = render_paper_page("gmm_adaptive_loss", tables, runs, config, expected=expected)
    assert page.splitlines()[2] == line and page.count(OTHER_PROFILE) >= 2
    assert "[GMM-AL](gmm_adaptive_loss.md) 3 / 32 (1 by this profile's runs)" in coverage_summary(tables, runs, config, expected)
    assert coverage_line(3, 32, 3) == coverage_line(3, 32)


def test_transposed_table_keeps_every_column(runs, config):
    """IPRM Tab. 1 prints methods as columns; the page shows them as rows in printed order,
    with "D/T" (no figure on the first datasets) after the other unimodal columns."""
    page = render_paper_page("iprm", load_paper_tables(TABLES_CSV), runs, config)
    body = page.split("## Table 1", 1)[1].split("\n## ", 1)[0]
    labels = [ln.split("|")[1].strip() for ln in body.splitlines() if ln.startswith("| ")][1:]
    assert labels == ["A/A/R/A/I (unimodal)", "V/V/O/V/T (unimodal)", "D/T (unimodal)", "Concat", "Sum", "Weight", "IPRM"]
    assert "rows and columns are swapped" in body
    assert cells(page, "1", "D/T (unimodal)")[2] == "—"  # N/A in the paper, no run either


def test_ave_event_localisation_column_is_marked(runs, config):
    """A figure from the OPM/OGM paper's AVE table (event localisation) carries a note wherever it shows."""
    numbers = load_paper_numbers(PAPER_CSV)
    ave = {(r.dataset, r.run): r for r in runs}
    cell = next(c for c in load_paper_tables(TABLES_CSV) if c.paper == "opm_ogm" and c.table == 7 and c.column == "w/ OPM")
    t, got, printed = paper_table("opm_ogm", 7, [cell], ave, config)
    assert t.headers[2] == "w/ OPM†" and (got, printed) == (0, 1)
    assert any("event-localisation" in n for n in t.notes)
    extra = numbers + [PaperNumber("opm_ogm", 7, "AVE", "OPM", "acc", "75.6")]
    summary = dataset_table("ave", [], ["opm"], PaperIndex(extra, config))
    # no runs, so no probe columns: Method, n seeds, Rank, 5 statistics columns, Macro-F1, mAP,
    # best-test, 4 papers, Run
    assert summary.rows[0][14] == "75.6†" and "event-localisation" in summary.notes[0]


def test_unmapped_rows_are_listed(config):
    cell = TableCell("arl", 9, "Mystery", "CREMA-D Acc", "50.0", "%", "CREMA-D", "acc", "", "Mystery")
    t, got, printed = paper_table("arl", 9, [cell], {}, config)
    assert t.rows == [["Mystery", "none", "no run mapped (paper 50.0)"]] and (got, printed) == (0, 1)
    assert "no run mapped" in t.notes[-1]


def test_derived_metrics(runs, config):
    by = {(r.dataset, r.run): r for r in runs}
    concat, opm_sum = by[("cremad", "concat")], by[("cremad", "opm__sum")]
    assert our_values(concat, "epoch_seconds") == pytest.approx([7.2 / 20, 7.4 / 20])
    # opm__sum ran seed 0 only: ratio over the seeds both ran
    assert our_values(opm_sum, "train_time_ratio", concat) == pytest.approx([8.0 / 7.2])
    assert our_values(opm_sum, "train_time_ratio", None) == []
    assert our_values(concat, "acc") == pytest.approx([66.0, 70.0])
    # IPRM Tab. 4 (RTX 4090 seconds): ours as a ratio to our Concat on the same machine, the
    # paper's seconds with their ratio to its Naive MML row (57.03 / 55.08 = 1.035)
    page = render_paper_page("iprm", load_paper_tables(TABLES_CSV), runs, config)
    assert cells(page, "4", "Naive MML")[3] == "1.00 ± 0.00× Concat (paper 55.08 s/epoch = 1.00× Naive MML)"
    assert cells(page, "4", "IPRM")[3] == "not run (paper 57.03)"
    assert "RTX 4090" in page and "not comparable" in page
    # with the costs stage's side-by-side step ratio beside the wall-time ratio
    from mmbalance.report.tables import CostsSummary, RunCosts, with_step_ratios

    timed = with_step_ratios(runs, {"cremad": CostsSummary("cremad", runs={"concat": RunCosts(10, 1.0, 1.0, 1)})})
    page = render_paper_page("iprm", load_paper_tables(TABLES_CSV), timed, config)
    assert cells(page, "4", "Naive MML")[3] == "1.00 ± 0.00× Concat; step 1.00× side by side (paper 55.08 s/epoch = 1.00× Naive MML)"
    timed = with_step_ratios(runs, {"cremad": CostsSummary("cremad", runs={"concat": RunCosts(10, 1.0, 1.0, 1, (0.9, 1.2))})})
    page = render_paper_page("iprm", load_paper_tables(TABLES_CSV), timed, config)
    assert "; step 1.00× [0.90, 1.20] side by side (paper" in cells(page, "4", "Naive MML")[3]


def test_paper_cell_forms():
    assert paper_cell(None, 0, "61.4") == ("not run (paper 61.4)", None)
    assert paper_cell(None, 0, None) == ("—", None)  # neither the paper nor we have the cell
    assert paper_cell([], 2, "61.4") == ("— (paper 61.4)", None)
    assert paper_cell([60.0, 62.0], 2, None)[0] == "61.00 ± 1.41 (paper —)"
    text, mean = paper_cell([60.0], 2, "61.4")
    assert text == "60.00 ± 0.00 (n=1) (paper 61.4, -1.40)" and mean == 60.0


def test_mapping_file_errors(tmp_path):
    head = "paper,table,row,dataset,run,metric,note\n"
    with pytest.raises(ValueError, match="rows.csv, data line 3: duplicate"):
        parse_row_mappings(head + "arl,*,Concat,*,concat,,\narl,*,Concat,*,x,,\n", "rows.csv", ["arl"])
    with pytest.raises(ValueError, match="unknown paper 'nope'"):
        parse_row_mappings(head + "nope,*,Concat,*,concat,,\n", "rows.csv", ["arl"])
    with pytest.raises(ValueError, match="header must have"):
        parse_row_mappings("paper,row\narl,Concat\n", "rows.csv", ["arl"])
    # comments are allowed; a registry dataset name is accepted for the CSV spelling
    rows = parse_row_mappings("# c\n" + head + "arl,2,Concat,cremad,concat__sum,,\n", "rows.csv", ["arl"])
    assert ("arl", "2", "Concat", "CREMA-D") in rows


def test_specific_mapping_beats_wildcard(tmp_path, config):
    rows = tmp_path / "rows.csv"
    rows.write_text("paper,table,row,dataset,run,metric,note\n"
                    "arl,*,Concat,*,concat,,\narl,2,Concat,*,concat_t2,,\narl,2,Concat,MOSI,concat_mosi,,\n")
    cfg = load_config(rows_path=rows)
    assert cfg.row("arl", 1, "Concat", "CREMA-D").run == "concat"
    assert cfg.row("arl", 2, "Concat", "UCF-101").run == "concat_t2"
    assert cfg.row("arl", 2, "Concat", "mosi").run == "concat_mosi"


def test_robustness_table_hand_checked():
    rob = load_robustness([FIXTURES / "results" / "cremad" / "robustness.json"])["cremad"]
    t = robustness_table(rob, ["concat", "audio_only"])
    assert t.headers[-3:] == ["p=0", "p=0.5", "p=1"]
    # visual dropped at p=1: 0.61 / 0.65 -> 63.00 ± 2.83 (only run with a visual input: not bold)
    assert ["Concat", "`concat`", "Visual", "2", "68.00 ± 2.83", "66.00 ± 2.83", "63.00 ± 2.83"] in t.rows
    bad = json.loads((FIXTURES / "results" / "cremad" / "robustness.json").read_text())
    bad["drop_probs"] = [0.0, 1.0]
    with pytest.raises(ValueError, match=r"bad.json: run \w+, seed 0, modality audio: 3 values for 2"):
        summarize_robustness(bad, "bad.json")


def test_plots_are_byte_identical_across_renders(tmp_path, runs):
    from mmbalance.report.plots import load_curves, render_dataset_plots

    rob = load_robustness([FIXTURES / "results" / "cremad" / "robustness.json"])["cremad"]
    by_run = {r.run: r for r in runs if r.dataset == "cremad"}
    curves = {r: load_curves(Path(s.source).parent) for r, s in by_run.items()}
    order = ["concat", "opm__sum", "audio_only"]
    out = []
    for name in ("a", "b"):
        links = render_dataset_plots("cremad", order, by_run, curves, rob, tmp_path / name, tmp_path / name)
        out.append({p: (tmp_path / name / p).read_bytes() for _, p in links})
    assert [p for p in out[0]] == ["cremad/curves.png", "cremad/probes.png", "cremad/per_class.png", "cremad/robustness.png",
                                   "cremad/robustness_fig6.png"]
    assert out[0] == out[1]
    for data in out[0].values():
        assert b"Software" not in data and b"Creation" not in data and b"matplotlib" not in data.lower()


def test_curves_mean_over_seeds():
    from mmbalance.report.plots import load_curves, mean_curve

    curves = load_curves(FIXTURES / "results" / "cremad" / "concat")
    assert set(curves["test/acc"]) == {"0", "1"}
    steps, mean = mean_curve(curves["test/acc"])
    assert steps == [0, 1, 2] and mean == pytest.approx([0.30, 0.555, 0.68])


def test_bad_tsv_names_the_file(tmp_path):
    from mmbalance.evaluate.curves import read_tsv

    f = tmp_path / "acc.tsv"
    f.write_text("step\tacc\n0\tx\n")
    with pytest.raises(ValueError, match="acc.tsv, line 2"):
        read_tsv(f)


@pytest.mark.slow
def test_report_stage_is_fast_for_100_runs(tmp_path):
    """~100 runs (5 datasets x 20 runs, 2 seeds x 20 epochs of curves): the stage with plots."""
    import resource
    import subprocess
    import sys

    paths = []
    for d, ds in enumerate(["cremad", "ave", "kinetics_sounds", "ucf101", "mosi"]):
        for k in range(20):
            run = tmp_path / "results" / ds / f"m{k:02d}"
            seeds, curves = {}, {}
            for s in range(2):
                acc = 0.5 + 0.01 * k + 0.001 * s
                seeds[str(s)] = {"test": {"acc": acc, "macro_f1": acc, "map": acc, "probe_acc": {"audio": 0.5, "visual": 0.3}},
                                 "epochs": 20, "wall_s": 5.0, "best_test_acc": acc}
                curves[str(s)] = {f"{split}/{name}": {"step": list(range(20)), "value": [math.exp(-i / 5) for i in range(20)]}
                                  for split, name in (("train", "train_loss"), ("val", "acc"), ("test", "acc"),
                                                      ("test", "probe_acc_audio"), ("test", "probe_acc_visual"),
                                                      ("val", "probe_acc_audio"), ("val", "probe_acc_visual"))}
            run_curves.write(run / "curves.json", curves)
            (run / "results.json").write_text(json.dumps({"dataset": ds, "method": "concat", "profile": "mini",
                                                          "modalities": ["audio", "visual"], "seeds": seeds}))
            paths.append(str(run / "results.json"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, str(ROOT / "stages" / "report.py"), "--results", *paths,
                    "--paper-numbers", str(PAPER_CSV), "--params", str(FIXTURES / "params.yaml"),
                    "--methods", "concat", "--git-rev", "x", "--out", str(tmp_path / "reports" / "README.md")],
                   check=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # a guard against accidental quadratic work, not a benchmark: CPU time of the stage process
    # (~10 s on 2 idle cores with the paper pages, costs and Shapley columns; wall time on a shared
    # machine says little), with room for a loaded machine
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 20.0


def test_cpu_model_from_cpuinfo(tmp_path):
    from mmbalance.report.provenance import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some  CPU @ 2.0GHz\n")
    assert cpu_model(info) == "Some CPU @ 2.0GHz"
    assert cpu_model(tmp_path / "absent")  # falls back to platform, never empty


def test_per_class_heatmap_matrix_and_many_classes(tmp_path, runs):
    """The per-class figure's rows are runs, its columns classes, its values the seed means in %;
    a prediction a run lacks is a blank (NaN) cell. VGGSound's 309 classes draw without labels."""
    import dataclasses
    import math

    from mmbalance.report import plots

    run = next(r for r in runs if r.dataset == "cremad" and r.per_class)
    other = dataclasses.replace(run, run="other", per_class={"fused": {"A": [0.5, 0.7]}})
    table = {run.run: run, "other": other}
    matrix = plots._class_matrix([run.run, "other"], table, "fused", ["A", "B"])
    assert matrix[1][0] == 60.0 and math.isnan(matrix[1][1])
    assert plots.plot_per_class("cremad", [run.run, "other"], table, tmp_path / "p.png")
    many = {k: {f"class_{i:03d}": [i / 400, (i + 1) / 400] for i in range(309)} for k in run.per_class}
    assert plots.plot_per_class("vggsound", [run.run], {run.run: dataclasses.replace(run, per_class=many)}, tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 0


def test_time_columns_bold_the_lowest(config):
    """OPM/OGM Tab. 4's training time: the fastest of our runs is the best (bold), not the slowest."""
    from mmbalance.report.tables import RunSummary

    def run(name: str, wall: float) -> RunSummary:
        return RunSummary(dataset="cremad", method=name, fusion=None, profile="mini", selection=None,
                          modalities=["audio", "visual"], n_seeds=1, run=name, wall={"0": wall}, epochs={"0": 20})

    runs = {("cremad", "concat"): run("concat", 10.0), ("cremad", "opm"): run("opm", 12.0)}
    tab4 = [c for c in load_paper_tables(TABLES_CSV) if c.paper == "opm_ogm" and c.table == 4]
    table, _, _ = paper_table("opm_ogm", 4, tab4, runs, config)
    by_row = {r[0]: r[2] for r in table.rows}
    assert by_row["Concatenation"].startswith("**1.00") and not by_row["OPM"].startswith("**")
