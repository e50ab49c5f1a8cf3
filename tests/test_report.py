"""Tests for the report stage (src/mmbalance/report, stages/report.py): the summary page.

The fixture results under tests/fixtures/report/results are rendered through the real CLI and
compared with tests/fixtures/report/expected/*.md.  After an intended change of the output,
rewrite the expected files with ``UPDATE_EXPECTED=1 pytest tests/test_report.py`` and review
the diff.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmbalance.report import (
    NOT_RUN,
    Provenance,
    best_indices,
    competition_ranks,
    format_mean_std,
    git_revision,
    load_paper_numbers,
    load_results,
    mean_std,
    order_methods,
    paper_figure,
    params_hash,
    render_summary,
    run_label,
    summarize_run,
)
from mmbalance.report.render import backbone_note
from mmbalance.report.stats import StatsConfig
from mmbalance.report.tables import (
    format_bytes,
    format_count,
    format_interval,
    load_costs,
    load_shapley,
    seed_interval,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "report"
EXPECTED = FIXTURES / "expected"
PAPER_CSV = ROOT / "reference" / "paper_numbers.csv"
METHODS = ["audio_only", "visual_only", "concat", "ogm_ge"]
GIT_REV = "0123456789abcdef0123456789abcdef01234567"
PAGES = ["README.md", "gmm_adaptive_loss.md", "arl.md", "iprm.md", "opm_ogm.md", "tuned.md"]


def fixture_results() -> list[Path]:
    return sorted(FIXTURES.glob("results/*/*/results.json"))


def table_row(markdown: str, section: str, label: str) -> list[str]:
    """Cells of the row starting with ``label`` in the first table under ``## section``."""
    body = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    for line in body.splitlines():
        if line.startswith(f"| {label} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row {label!r} under {section!r}")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    """The fixture report (summary, pages, plots) rendered through the real CLI."""
    out = tmp_path_factory.mktemp("report") / "reports" / "README.md"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [
        sys.executable, str(ROOT / "stages" / "report.py"),
        "--results", *map(str, fixture_results()),
        "--robustness", *map(str, sorted(FIXTURES.glob("results/*/robustness.json"))),
        "--costs", *map(str, sorted(FIXTURES.glob("results/*/costs.json"))),
        "--shapley", *map(str, sorted(FIXTURES.glob("results/*/shapley.json"))),
        "--tuned", *map(str, sorted(FIXTURES.glob("tuned/*/*/results.json"))),
        "--paper-numbers", str(PAPER_CSV),
        "--paper-tables", str(ROOT / "reference" / "paper_tables.csv"),
        "--params", str(FIXTURES / "params.yaml"),
        "--methods", *METHODS,
        "--git-rev", GIT_REV,
        "--device", "Report CPU",
        "--out", str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out.parent


@pytest.fixture(scope="module")
def rendered(out_dir) -> str:
    return (out_dir / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", PAGES)
def test_fixture_pages_match_expected(out_dir, name):
    got = (out_dir / name).read_text(encoding="utf-8")
    if os.environ.get("UPDATE_EXPECTED"):
        EXPECTED.mkdir(parents=True, exist_ok=True)
        (EXPECTED / name).write_text(got, encoding="utf-8", newline="\n")
    assert got == (EXPECTED / name).read_text(encoding="utf-8")


def test_plots_written_and_linked(out_dir, rendered):
    for name in ("curves", "probes", "per_class", "shapley", "robustness"):
        png = out_dir / "plots" / "cremad" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(plots/cremad/{name}.png)" in rendered
    # AVE has no curves, per-class data or robustness file: no figures, no links
    assert not (out_dir / "plots" / "ave").exists()
    assert "plots/ave/" not in rendered


def test_hand_checked_cells(rendered):
    # CREMA-D concat, acc over seeds 0.66 and 0.70 (200 clips each, from its predictions):
    # mean 68.00 with a bootstrap interval; the reference of the vs-Concat column.
    concat = table_row(rendered, "CREMA-D", "Concat")
    assert concat[1:3] == ["2", "1"]
    assert concat[3].startswith("68.00 [") and concat[4:7] == ["—", "—", "reference"]
    # Visual probe 0.30 / 0.34 -> 32.00, sample std = sqrt((2^2 + 2^2) / 1) = 2.83, below
    # Visual-only's 53.50 (not bold).
    assert concat[11] == "32.00 ± 2.83"
    # Best-test acc 0.67 / 0.72 -> 69.50, std = 5 / sqrt(2) = 3.5355 -> 3.54.
    assert concat[12] == "**69.50 ± 3.54**"
    # Costs (costs.json): 47878 params, 7.5e6 FLOPs per sample, the reference of the step
    # times, 30198989 bytes = 28.8 MiB.
    assert concat[13:17] == ["47.9 k", "7.5 M", "1.00", "28.8 MiB"]
    # Shapley (shapley.json), seed 0: v(∅) 0.17, v(a) 0.60, v(v) 0.40, v(av) 0.66 →
    # φa = (0.60 − 0.17) / 2 + (0.66 − 0.40) / 2 = 0.345, φv = 0.145; seed 1: 0.17, 0.62, 0.42,
    # 0.70 → 0.365, 0.165. Mean 35.50 / 15.50 points, sem = 1.00, t(0.975, 1) = 12.706.
    assert concat[17:19] == ["35.50 [22.79, 48.21]", "15.50 [2.79, 28.21]"]
    # Paper columns: GMM-AL, ARL, IPRM, OPM/OGM concat baselines as printed; run name last.
    assert concat[19:] == ["67.47", "58.83", "63.61", "66.9", "`concat`"]

    # A fusion variant (folder opm__sum, method opm, sum fusion), one seed: Sum+OPM of OPM/OGM.
    # Against concat it is paired on seed 0 only (64.5 − 66.0 = −1.50); not significant, so
    # it shares rank 1.
    opm_sum = table_row(rendered, "CREMA-D", "OPM (Sum fusion)")
    assert opm_sum[1:3] == ["1", "1"] and opm_sum[3].startswith("64.50 [")
    assert opm_sum[4].startswith("-1.50 [") and opm_sum[6] == "no sig. diff."
    # step 52 ms against Concat's 40 ms; one seed: a Shapley mean without interval
    assert opm_sum[15] == "1.30" and opm_sum[17:19] == ["28.75", "18.75"]
    # not in the fixture's run list (--methods concat): marked as another profile's committed results
    assert opm_sum[19:] == ["—", "—", "—", "63.4", "`opm__sum`†"]
    # An ablation variant maps to its ablation row (GMM-AL Tab. 2, alpha = 0), not to GMM-AL.
    gmm = table_row(rendered, "CREMA-D", "GMM-AL (α=0)")
    assert gmm[19] == "76.88"
    assert gmm[13:19] == ["—"] * 6  # in neither the costs nor the Shapley file
    # Visual-only (52.00) is significantly worse than Concat (68.00) after Holm.
    visual = table_row(rendered, "CREMA-D", "Visual-only")
    assert visual[4].startswith("-16.00 [") and visual[6] == "worse" and visual[2] == "3"

    # AVE ogm_ge has no predictions: mean ± std accuracy, marked, no statistics.
    ogm = table_row(rendered, "AVE", "OGM-GE")
    assert ogm[3] == "65.81 ± 0.44 (no per-clip predictions)" and ogm[4:8] == ["—"] * 4
    assert ogm[13:19] == ["—"] * 6  # AVE has no costs or Shapley file: the columns stay, empty
    assert ogm[19:23] == ["66.14", "65.62", "—", "—"]

    # Unimodal run without a visual probe shows a dash, not zero; it is the best unimodal run.
    audio = table_row(rendered, "CREMA-D", "Audio-only")
    assert audio[11] == "—" and audio[7] == "reference"
    # ... and no Shapley value for the modality it does not take
    assert audio[17:19] == ["44.00 [31.29, 56.71]", "n/a"]


def test_leaderboard_is_ordered_by_rank(rendered):
    table = rendered.split("## CREMA-D\n\n", 1)[1].split("\n\n", 1)[0]
    labels = [ln.split("|")[1].strip() for ln in table.splitlines()[2:]]
    # rank 1 (no significant difference among them) by mean accuracy, then Visual-only (rank 3)
    assert labels == ["Concat", "GMM-AL (α=0)", "OPM (Sum fusion)", "Audio-only", "Visual-only", "OGM-GE"]


def test_missing_method_is_not_run(rendered):
    row = table_row(rendered, "CREMA-D", "OGM-GE")
    assert row[1] == NOT_RUN and row[2] == "—"
    assert row[3:19] == [NOT_RUN] * 16
    # The papers' figures are reference data and are still shown (IPRM's "OGM" is OGM-GE).
    assert row[19:23] == ["68.95", "64.34", "66.12", "—"]
    assert table_row(rendered, "AVE", "Concat")[3:19] == [NOT_RUN] * 16


def test_robustness_section(rendered):
    body = rendered.split("### Missing-modality robustness", 1)[1].split("\n## ", 1)[0]
    # concat, audio dropped at p=0.5: 0.45 / 0.47 -> 46.00 ± 1.41, best of the two runs -> bold
    assert "| Concat | `concat` | Audio | 2 | **68.00 ± 2.83** | **46.00 ± 1.41** | **26.00 ± 1.41** |" in body
    # the audio-only model has no visual input; a run asked for without models is "not run"
    assert "| Audio-only | `audio_only` | Visual | n/a | n/a | n/a | n/a |" in body
    assert "| OPM | `opm` | Audio | not run | not run | not run | not run |" in body


def test_notes_and_provenance(rendered):
    assert "Mini profile: synthetic data" in rendered
    assert "(GMM-AL 67.47, ARL 58.83, IPRM 63.61, OPM/OGM 66.9)" in rendered
    assert f"`{GIT_REV}`" in rendered
    assert f"`{params_hash(FIXTURES / 'params.yaml')}`" in rendered
    # two fixture files record their device; the report machine is not needed then
    assert "| Device | Fixture CPU |" in rendered
    assert "| `cremad/concat` | train | 2 | 14.6 |" in rendered  # 7.2 + 7.4
    assert "| `cremad/robustness` | evaluate | 2 |" in rendered
    assert rendered.index("## CREMA-D") < rendered.index("## AVE") < rendered.index("## Provenance")
    for page in PAGES[1:]:
        assert f"]({page})" in rendered


def test_shapley_plot_and_notes(out_dir, rendered):
    png = out_dir / "plots" / "cremad" / "shapley.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[modality contribution (Shapley)](plots/cremad/shapley.png)" in rendered
    cremad = rendered.split("## CREMA-D\n", 1)[1].split("\n## ", 1)[0]
    assert "FlopCounterMode" in cremad and "one batch of 64 test clips on Fixture CPU" in cremad
    assert "empty set is the model's prediction with all modalities masked" in cremad
    assert "Not computed for `gmm_al__alpha0`: its method needs training-time state." in cremad
    # AVE has neither file: its columns are empty and its section carries no such notes
    ave = rendered.split("## AVE\n", 1)[1]
    assert "FlopCounterMode" not in ave and not (out_dir / "plots" / "ave" / "shapley.png").exists()


def test_cost_and_shapley_columns_only_with_their_files():
    text = render_summary(load_results(fixture_results()), [], METHODS, Provenance())
    assert "| Params |" not in text and "Shapley" not in text


@pytest.mark.parametrize("loader", [load_costs, load_shapley])
def test_malformed_cost_and_shapley_files_name_the_file(tmp_path, loader):
    bad = tmp_path / "x.json"
    bad.write_text('{"runs": {}}')
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*no 'dataset' key"):
        loader([bad])
    bad.write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        loader([bad])


def test_cost_and_interval_formats():
    assert [format_count(x) for x in (47878, 7.5e6, 1.82e9, 512, None)] == ["47.9 k", "7.5 M", "1.82 G", "512", "—"]
    assert format_bytes(30198989) == "28.8 MiB" and format_bytes(3 * 2**30) == "3.00 GiB" and format_bytes(None) == "—"
    assert format_interval([0.5]) == "50.00" and format_interval([]) == "—"
    # two seeds 0.1 / 0.3: mean 20, sem = 10, t(0.975, 1) = 12.7062 → ± 127.06
    assert format_interval([0.1, 0.3]) == "20.00 [-107.06, 147.06]"
    mean, lo, hi = seed_interval([1.0, 2.0, 3.0], 0.9)  # sem 1/sqrt(3)·1, t(0.95, 2) = 2.91999
    assert mean == 2.0 and hi - mean == pytest.approx(2.919986 / 3**0.5, rel=1e-6) and mean - lo == pytest.approx(hi - mean)


def test_tuned_page(out_dir):
    """The equal-budget page: the tuned runs against the *tuned* Concat, the untuned accuracy
    beside them, the budget and the validation-selected values."""
    text = (out_dir / "tuned.md").read_text(encoding="utf-8")
    concat = table_row(text, "CREMA-D", "Concat")
    assert concat[6] == "reference" and concat[7] == "68.00 ± 2.83"
    assert concat[8:10] == ["2", "train.lr=0.005"]
    visual = table_row(text, "CREMA-D", "Audio-only")
    assert visual[4].startswith("-7.00 [") and visual[8] == "—"
    assert "Holm" in text and "validation" in text


def test_tuned_page_names_the_runs_another_profile_tuned():
    """Tuned runs that params ``tune.runs`` does not list are named as another profile's results."""
    from mmbalance.report.tuned import other_profile_runs, render_tuned_page

    runs = load_results(sorted(FIXTURES.glob("tuned/*/*/results.json")))
    names = [r.run for r in runs if r.dataset == "cremad"]
    assert names and other_profile_runs("cremad", runs, None) == []
    assert other_profile_runs("cremad", runs, {"cremad": names}) == []
    assert other_profile_runs("cremad", runs, {"cremad": names[1:]}) == names[:1]
    text = render_tuned_page(runs, {}, StatsConfig(bootstrap=10), [], {}, tuned_here={"cremad": []})
    assert "Not tuned by this profile (params `tune.runs.cremad`): " + ", ".join(f"`{r}`" for r in names) in text


def test_device_falls_back_to_the_report_machine():
    run = summarize_run({"dataset": "cremad", "method": "concat", "seeds": {"0": {"test": {"acc": 0.5}}}})
    text = render_summary([run], [], ["concat"], Provenance(device="Some CPU"))
    assert "| Device | Some CPU (the machine that rendered this report; the results files record none) |" in text


def test_render_is_deterministic_and_order_independent():
    numbers = load_paper_numbers(PAPER_CSV)
    prov = Provenance(git_rev=GIT_REV, params_hash="x")
    a = render_summary(load_results(fixture_results()), numbers, METHODS, prov)
    b = render_summary(load_results(reversed(fixture_results())), numbers, METHODS, prov)
    assert a == b


def test_per_dataset_method_lists():
    runs = load_results(fixture_results())
    text = render_summary(runs, [], {"cremad": ["concat", "ogm_ge"], "ave": ["ogm_ge"]}, Provenance())
    assert "| OGM-GE | not run |" in text.split("## AVE", 1)[0]
    assert "| Concat | not run |" not in text.split("## AVE", 1)[1]


def test_format_mean_std():
    assert format_mean_std([0.66, 0.70]) == "68.00 ± 2.83"
    assert format_mean_std([0.61]) == "61.00 ± 0.00"  # single seed: std 0
    assert format_mean_std([]) == "—"
    assert format_mean_std([0.5], n_expected=2) == "50.00 ± 0.00 (n=1)"
    mean, std = mean_std([0.1, 0.2, 0.3])
    assert mean == pytest.approx(20.0) and std == pytest.approx(10.0)  # ddof=1


def test_best_indices_and_ranks():
    assert best_indices([None, 50.0, 70.0, 65.0]) == {2}
    assert best_indices([70.001, 69.999, 70.004]) == {0, 1, 2}  # tie at 2 decimals
    assert best_indices([None, 55.0]) == set()  # a single value is not "best"
    assert best_indices([]) == set()
    assert competition_ranks([60.0, None, 70.0, 60.001, 50.0]) == [2, None, 1, 2, 4]


def test_order_methods():
    assert order_methods(["b", "a", "c"], {"zz", "a", "y", "c"}) == ["b", "a", "c", "y", "zz"]


def test_unlisted_run_is_ranked_with_listed_ones():
    run = summarize_run({
        "dataset": "cremad", "method": "concat", "fusion": "sum", "profile": "mini",
        "modalities": ["audio", "visual"],
        "seeds": {"0": {"test": {"acc": 0.6}, "wall_s": 1.0}},
    }, run="concat__sum")
    text = render_summary([run], [], ["concat"], Provenance())
    lines = [ln for ln in text.splitlines() if ln.startswith(("| Concat |", "| Sum |"))]
    assert [ln.split("|")[1].strip() for ln in lines] == ["Sum", "Concat"]
    assert "60.00 ± 0.00 (no per-clip predictions)" in text and "`unknown`" in text
    assert "Mini profile" in text


def test_run_names_come_from_folders(tmp_path):
    src = (FIXTURES / "results" / "cremad" / "concat" / "results.json").read_text()
    for name in ("concat", "concat__sum"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(src)
    runs = load_results(sorted(tmp_path.glob("*/results.json")))
    assert sorted(r.run for r in runs) == ["concat", "concat__sum"]
    assert {r.method for r in runs} == {"concat"}


def test_run_labels():
    assert run_label("ogm_ge") == "OGM-GE"
    assert run_label("concat__sum") == "Sum"
    assert run_label("opm__film") == "OPM (FiLM fusion)"
    assert run_label("gmm_al__alpha0") == "GMM-AL (α=0)"
    assert run_label("new_method__x") == "new_method (x)"
    assert run_label("concat__mmtm") == "MMTM"
    assert run_label("arl__swin") == "ARL (Swin, gated fusion)"
    assert run_label("arl__mmformer") == "ARL (mmFormer backbone)"


def test_intermediate_backbone_runs_get_a_probe_note(tmp_path):
    result = json.loads((FIXTURES / "results" / "cremad" / "concat" / "results.json").read_text())
    for name, backbone in (("concat", None), ("arl__mmtm", "mmtm")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({**result, **({"backbone": backbone} if backbone else {})}))
    runs = load_results(sorted(tmp_path.glob("*/results.json")))
    assert backbone_note(runs[:1] if runs[0].run == "concat" else runs[1:]) is None
    note = backbone_note(runs)
    assert note.startswith("Intermediate-fusion runs (`arl__mmtm`)") and "probe columns" in note


def test_paper_lookup_spellings():
    n = load_paper_numbers(PAPER_CSV)
    assert paper_figure(n, "gmm_adaptive_loss", "cremad", "opm_ogm").value == "75.10"  # OPM&OGM
    assert paper_figure(n, "opm_ogm", "cremad", "opm_ogm").value == "76.7"  # OPM+OGM, table 12
    assert paper_figure(n, "opm_ogm", "cremad", "opm", "concat").value == "75.1"  # Concat+OPM
    assert paper_figure(n, "opm_ogm", "cremad", "ogm", "sum").value == "63.4"  # Sum+OGM
    assert paper_figure(n, "opm_ogm", "cremad", "concat", "film").value == "61.8"  # FiLM
    assert paper_figure(n, "opm_ogm", "mosi", "opm", "concat").value == "77.6"  # bare OPM
    assert paper_figure(n, "iprm", "kinetics_sounds", "concat").value == "64.55"
    assert paper_figure(n, "arl", "cremad", "arl").table == 1  # lowest table wins over 5
    assert paper_figure(n, "iprm", "cremad", "ogm_ge").value == "66.12"  # IPRM's OGM = OGM-GE
    assert paper_figure(n, "iprm", "cremad", "g_blending").value == "64.65"  # OGR-GB
    assert paper_figure(n, "iprm", "cremad", "ogm") is None
    assert paper_figure(n, "arl", "cremad", "unimodal_loss") is None
    assert paper_figure(n, "opm_ogm", "mosi", "concat", metric="f1").value == "76.0"


def test_duplicate_results_rejected(tmp_path):
    src = fixture_results()[0].read_text()
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(src)
    with pytest.raises(ValueError, match="duplicate"):
        load_results(sorted(tmp_path.glob("*.json")))


def test_malformed_results_name_the_file(tmp_path):
    bad = tmp_path / "x" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_results([bad])
    bad.write_text('{"seeds": {}}')
    with pytest.raises(ValueError, match="no 'dataset' key"):
        load_results([bad])


def test_git_revision_outside_repo(tmp_path):
    assert git_revision(tmp_path) == "unknown"
