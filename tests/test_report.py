"""Tests for the report stage (src/mmbalance/report, stages/report.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmbalance.report import (
    NOT_RUN,
    Provenance,
    best_indices,
    format_mean_std,
    git_revision,
    load_paper_numbers,
    load_results,
    mean_std,
    order_methods,
    paper_figure,
    params_hash,
    render_summary,
    summarize_run,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "report"
PAPER_CSV = ROOT / "reference" / "paper_numbers.csv"
METHODS = ["audio_only", "visual_only", "concat", "ogm_ge"]
GIT_REV = "0123456789abcdef0123456789abcdef01234567"


def fixture_results() -> list[Path]:
    return sorted(FIXTURES.glob("results/*/*/results.json"))


def table_row(markdown: str, section: str, label: str) -> list[str]:
    """Cells of the row starting with ``label`` in the table under ``## section``."""
    body = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    for line in body.splitlines():
        if line.startswith(f"| {label} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row {label!r} under {section!r}")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> str:
    """The fixture report rendered through the real CLI (stages/report.py)."""
    out = tmp_path_factory.mktemp("report") / "reports" / "README.md"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [
        sys.executable, str(ROOT / "stages" / "report.py"),
        "--results", *map(str, fixture_results()),
        "--paper-numbers", str(PAPER_CSV),
        "--params", str(FIXTURES / "params.yaml"),
        "--methods", *METHODS,
        "--git-rev", GIT_REV,
        "--out", str(out),
    ]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True, text=True)
    return out.read_text(encoding="utf-8")


def test_fixture_report_matches_expected(rendered):
    expected = (FIXTURES / "expected_README.md").read_text(encoding="utf-8")
    assert rendered == expected


def test_hand_checked_cells(rendered):
    # CREMA-D concat, acc over seeds 0.66 and 0.70: mean 68.00,
    # sample std = sqrt((2^2 + 2^2) / 1) = 2.828... -> 2.83; best in column -> bold.
    concat = table_row(rendered, "CREMA-D", "Concat")
    assert concat[1] == "2"
    assert concat[2] == "**68.00 ± 2.83**"
    # Visual probe 0.30 / 0.34 -> 32.00 ± 2.83, below Visual-only's 53.50 (not bold).
    assert concat[6] == "32.00 ± 2.83"
    # Best-test acc 0.67 / 0.72 -> 69.50, std = 5 / sqrt(2) = 3.5355 -> 3.54.
    assert concat[7] == "**69.50 ± 3.54**"
    # Paper columns: GMM-AL, ARL, IPRM, OPM/OGM concat baselines as printed.
    assert concat[8:] == ["67.47", "58.83", "63.61", "66.9"]

    # AVE ogm_ge, acc 0.655 / 0.6612: mean 65.81, std = 0.62 / sqrt(2) = 0.438 -> 0.44.
    # Only row with values in its table, so nothing is bold.
    ogm = table_row(rendered, "AVE", "OGM-GE")
    assert ogm[2] == "65.81 ± 0.44"
    assert ogm[8:] == ["66.14", "65.62", "—", "—"]

    # Unimodal run without a visual probe shows a dash, not zero.
    assert table_row(rendered, "CREMA-D", "Audio-only")[6] == "—"


def test_missing_method_is_not_run(rendered):
    row = table_row(rendered, "CREMA-D", "OGM-GE")
    assert row[1:8] == [NOT_RUN] * 7
    # The papers' figures are reference data and are still shown.
    assert row[8:] == ["68.95", "64.34", "—", "—"]
    assert table_row(rendered, "AVE", "Concat")[1:8] == [NOT_RUN] * 7


def test_notes_and_provenance(rendered):
    assert "Mini profile: synthetic data" in rendered
    assert "(GMM-AL 67.47, ARL 58.83, IPRM 63.61, OPM/OGM 66.9)" in rendered
    assert f"`{GIT_REV}`" in rendered
    assert f"`{params_hash(FIXTURES / 'params.yaml')}`" in rendered
    assert "| `cremad/concat` | 2 | 14.6 |" in rendered  # 7.2 + 7.4
    assert rendered.index("## CREMA-D") < rendered.index("## AVE") < rendered.index("## Provenance")


def test_render_is_deterministic_and_order_independent():
    numbers = load_paper_numbers(PAPER_CSV)
    prov = Provenance(git_rev=GIT_REV, params_hash="x")
    a = render_summary(load_results(fixture_results()), numbers, METHODS, prov)
    b = render_summary(load_results(reversed(fixture_results())), numbers, METHODS, prov)
    assert a == b


def test_format_mean_std():
    assert format_mean_std([0.66, 0.70]) == "68.00 ± 2.83"
    assert format_mean_std([0.61]) == "61.00 ± 0.00"  # single seed: std 0
    assert format_mean_std([]) == "—"
    assert format_mean_std([0.5], n_expected=2) == "50.00 ± 0.00 (n=1)"
    mean, std = mean_std([0.1, 0.2, 0.3])
    assert mean == pytest.approx(20.0) and std == pytest.approx(10.0)  # ddof=1


def test_best_indices():
    assert best_indices([None, 50.0, 70.0, 65.0]) == {2}
    assert best_indices([70.001, 69.999, 70.004]) == {0, 1, 2}  # tie at 2 decimals
    assert best_indices([None, 55.0]) == set()  # a single value is not "best"
    assert best_indices([]) == set()


def test_order_methods():
    assert order_methods(["b", "a", "c"], {"zz", "a", "y", "c"}) == ["b", "a", "c", "y", "zz"]


def test_unlisted_method_follows_listed_ones():
    run = summarize_run({
        "dataset": "cremad", "method": "sum", "fusion": "sum", "profile": "mini",
        "modalities": ["audio", "visual"],
        "seeds": {"0": {"test": {"acc": 0.6}, "wall_s": 1.0}},
    })
    text = render_summary([run], [], ["concat"], Provenance())
    lines = [ln for ln in text.splitlines() if ln.startswith(("| Concat |", "| Sum |"))]
    assert [ln.split("|")[1].strip() for ln in lines] == ["Concat", "Sum"]
    assert "60.00 ± 0.00" in text and "`unknown`" in text
    assert "Mini profile" in text


def test_paper_lookup_spellings():
    n = load_paper_numbers(PAPER_CSV)
    assert paper_figure(n, "gmm_adaptive_loss", "cremad", "opm_ogm").value == "75.10"  # OPM&OGM
    assert paper_figure(n, "opm_ogm", "cremad", "opm_ogm").value == "76.7"  # OPM+OGM, table 12
    assert paper_figure(n, "opm_ogm", "cremad", "opm", "concat").value == "75.1"  # Concat+OPM
    assert paper_figure(n, "opm_ogm", "cremad", "ogm", "sum").value == "63.4"  # Sum+OGM
    assert paper_figure(n, "opm_ogm", "mosi", "opm", "concat").value == "77.6"  # bare OPM
    assert paper_figure(n, "iprm", "kinetics_sounds", "concat").value == "64.55"
    assert paper_figure(n, "arl", "cremad", "arl").table == 1  # lowest table wins over 5
    assert paper_figure(n, "iprm", "cremad", "ogm_ge") is None
    assert paper_figure(n, "arl", "cremad", "unimodal_loss") is None


def test_duplicate_results_rejected(tmp_path):
    src = fixture_results()[0].read_text()
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(src)
    with pytest.raises(ValueError, match="duplicate"):
        load_results(sorted(tmp_path.glob("*.json")))


def test_git_revision_outside_repo(tmp_path):
    assert git_revision(tmp_path) == "unknown"
