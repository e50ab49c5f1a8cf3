"""The benchmark report keeps the last no-op repro measurement, marked, when a run cannot measure it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import p4_noop_repro  # noqa: E402


def test_previous_section_is_kept_and_marked_once(tmp_path):
    report = tmp_path / "performance.md"
    table = "| measurement | value |\n|---|---|\n| no-op dvc repro (CPU) | 11.1 s |\n"
    report.write_text(f"# Bench\n\n## Results\n\nP1 ...\n\n{p4_noop_repro.SECTION}\n\n{table}")
    kept = p4_noop_repro.previous_section(report)
    assert kept.startswith(p4_noop_repro.SECTION) and "Not re-measured" in kept and table in kept
    report.write_text("# Bench\n\n" + kept)
    assert p4_noop_repro.previous_section(report).count("Not re-measured") == 1  # not stacked
    assert p4_noop_repro.previous_section(tmp_path / "none.md") is None


def test_skipped_run_keeps_the_previous_section_and_a_measured_one_replaces_it(tmp_path):
    from common import Measurement

    report = tmp_path / "performance.md"
    report.write_text(f"{p4_noop_repro.SECTION}\n\n| no-op dvc repro (CPU) | 11.1 s |\n")
    skipped = [Measurement("P4", "no-op dvc repro", 0.0, "s", None, "", None, p4_noop_repro.SKIPPED)]
    assert "11.1 s" in p4_noop_repro.report_section(skipped, report)
    measured = [Measurement("P4", "no-op dvc repro (CPU)", 4.2, "s", 4.2, "s CPU", ("<=", 5.0), "")]
    section = p4_noop_repro.report_section(measured, report)
    assert "11.1 s" not in section and "Not re-measured" not in section
