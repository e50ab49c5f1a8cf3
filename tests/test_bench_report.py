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


def test_skipped_run_replaces_only_the_lock_rows(tmp_path):
    """Lock rewrites need no up-to-date pipeline: a skipped no-op keeps its previous rows and
    takes the lock rows just measured, once, with the note saying so."""
    from common import Measurement

    report = tmp_path / "performance.md"
    report.write_text(f"{p4_noop_repro.SECTION}\n\n| measurement | value |\n|---|---|\n| no-op dvc repro (CPU) | 11.1 s |\n"
                      "| dvc.lock read for update and written back, once | 4.4 s CPU |\n\n## Next\n")
    lock = Measurement("P4", "lock read for update and written back, once: top-level dvc.lock", 1.6, "s CPU", 0.3, "× one lock",
                       None, "8582 lines")
    results = [Measurement("P4", "no-op dvc repro", 0.0, "s", None, "", None, p4_noop_repro.SKIPPED), lock]
    for _ in range(2):  # a second skipped run replaces the rows the first one wrote
        p4_noop_repro.update_report(report, p4_noop_repro.report_section(results, report))
        text = report.read_text()
        assert "11.1 s" in text and "4.4 s CPU" not in text and text.count("top-level dvc.lock | 1.6 s CPU") == 1
        assert text.count(p4_noop_repro.CARRIED_NOTE_LOCKS) == 1 and p4_noop_repro.CARRIED_NOTE not in text
        assert text.endswith("## Next\n")


def test_p2_shares_one_load_between_the_epochs_of_a_run():
    # a run loads its split once: per epoch, a 20th of the load plus that epoch's batches
    import p2_loading

    assert p2_loading.per_epoch_of_run([2.0, 4.0], [0.5, 0.25], 20) == [0.6, 0.45]


def test_p2_batches_epoch_sees_every_training_sample_once():
    import p2_loading

    from conftest import tiny_split

    assert p2_loading.batches_epoch(tiny_split(13), 4, 0) == 13
