"""Archived costs and Shapley values of runs the profile does not evaluate (mmbalance.report.archive)."""

import json
import subprocess

import pytest

from mmbalance.report import archive
from mmbalance.report.render import archived_note
from mmbalance.report.tables import (
    summarize_costs,
    summarize_shapley,
    with_archived_costs,
    with_archived_shapley,
)


def _results(accs: list[float]) -> dict:
    return {"seeds": {str(s): {"test": {"acc": a}} for s, a in enumerate(accs)}}


def _shapley_entry(accs: list[float]) -> dict:
    seeds = {str(s): {"coalitions": [{"acc": 0.25, "present": []}, {"acc": 0.6, "present": ["a"]},
                                     {"acc": 0.5, "present": ["v"]}, {"acc": a, "present": ["a", "v"]}],
                      "shapley": {"a": (a - 0.25) * 0.6, "v": (a - 0.25) * 0.4}} for s, a in enumerate(accs)}
    return {"method": "m", "modalities": ["a", "v"], "seeds": seeds}


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _commit(repo, message):
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], cwd=repo, check=True)


@pytest.fixture
def repo(tmp_path):
    """Two commits: the full profile's evaluation of runs a, b and c, then the default's, which
    evaluates a only; c was retrained in between, so its old entries no longer describe it."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    res = tmp_path / "results" / "ds"
    for run, accs in {"a": [0.8, 0.7], "b": [0.6, 0.65], "c": [0.5, 0.55]}.items():
        _write(res / run / "results.json", _results(accs))
    _write(res / "costs.json", {"dataset": "ds", "device": "CPU X", "runs": {r: {"params": 10 + i, "step_ratio": 1.0}
                                                                          for i, r in enumerate("abc")}})
    _write(res / "shapley.json", {"dataset": "ds", "device": "CPU X", "empty_set": "zeros",
                                  "runs": {"a": _shapley_entry([0.8, 0.7]), "b": _shapley_entry([0.6, 0.65]),
                                           "c": _shapley_entry([0.5, 0.55])}})
    _commit(tmp_path, "full profile")
    _write(res / "c" / "results.json", _results([0.52, 0.55]))  # c retrained
    _write(res / "costs.json", {"dataset": "ds", "device": "CPU Y", "runs": {"a": {"params": 10, "step_ratio": 1.1}}})
    _write(res / "shapley.json", {"dataset": "ds", "device": "CPU Y", "runs": {"a": _shapley_entry([0.8, 0.7])}})
    _commit(tmp_path, "default profile")
    return tmp_path


def test_history_archives_the_newest_entry_that_still_describes_each_run(repo):
    logged = []
    counts = archive.archive(repo, repo / "results", repo / "results" / "archive", history=True, log=logged.append)
    assert counts == {"ds/costs": 2, "ds/shapley": 2}
    costs = json.loads((repo / "results" / "archive" / "ds" / "costs.json").read_text())
    assert sorted(costs["runs"]) == ["a", "b"]  # c was retrained after its only entry
    assert costs["runs"]["a"]["step_ratio"] == 1.1 and costs["runs"]["a"]["source"]["device"] == "CPU Y"
    assert costs["runs"]["b"]["params"] == 11 and costs["runs"]["b"]["source"]["device"] == "CPU X"
    assert any("ds/c" in m and "retrained" in m for m in logged)
    shapley = json.loads((repo / "results" / "archive" / "ds" / "shapley.json").read_text())
    assert sorted(shapley["runs"]) == ["a", "b"]


def test_head_only_keeps_what_was_archived_before(repo):
    archive.archive(repo, repo / "results", repo / "results" / "archive", history=True, log=lambda m: None)
    counts = archive.archive(repo, repo / "results", repo / "results" / "archive", history=False, log=lambda m: None)
    assert counts == {"ds/costs": 2, "ds/shapley": 2}  # b's entry kept from the earlier archive


def test_mismatch_checks_accuracies_and_the_full_coalition():
    now = {"0": 0.8, "1": 0.7}
    assert archive.mismatch("costs", {}, now, now) is None
    assert "retrained" in archive.mismatch("costs", {}, {"0": 0.8, "1": 0.71}, now)
    assert archive.mismatch("shapley", _shapley_entry([0.8, 0.7]), now, now) is None
    assert "full coalition" in archive.mismatch("shapley", _shapley_entry([0.8, 0.69]), now, now)


def test_report_fills_only_the_runs_the_current_files_lack():
    source = {"commit": "0123456789abcdef", "date": "2026-11-30", "device": "CPU X"}
    current = {"ds": summarize_costs({"dataset": "ds", "runs": {"a": {"params": 10, "step_ratio": 1.1}}})}
    arch = {"ds": summarize_costs({"dataset": "ds", "runs": {"a": {"params": 99, "source": source},
                                                               "b": {"params": 11, "step_ratio": 0.9, "source": source}}})}
    merged = with_archived_costs(current, arch)["ds"]
    assert merged.runs["a"].params == 10 and merged.runs["b"].params == 11
    assert merged.archived == {"b": source}
    note = archived_note(merged.archived, "costs", "results/archive/ds/costs.json")
    assert "1 runs outside" in note and "`01234567` (2026-11-30, CPU X)" in note
    assert with_archived_costs({}, arch)["ds"].runs.keys() == {"a", "b"}
    assert archived_note({}, "costs", "x") == ""


def test_report_merges_archived_shapley_values():
    source = {"commit": "abc", "date": "2026-11-30", "device": "CPU X"}
    current = {"ds": summarize_shapley({"dataset": "ds", "runs": {"a": _shapley_entry([0.8])}})}
    arch = {"ds": summarize_shapley({"dataset": "ds", "runs": {"b": {**_shapley_entry([0.6]), "source": source}}})}
    merged = with_archived_shapley(current, arch)["ds"]
    assert set(merged.values) == {"a", "b"} and merged.modalities["b"] == ["a", "v"]
    assert merged.archived == {"b": source}


def test_cli_refuses_a_folder_outside_git(tmp_path):
    with pytest.raises(SystemExit, match="not inside a git work tree"):
        archive.main(["--results", str(tmp_path)])
