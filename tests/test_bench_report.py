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
