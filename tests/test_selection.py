"""Model folders the evaluate and costs stages score: only the profile's benchmark runs."""

import pytest

from mmbalance.evaluate.selection import benchmark_runs, listed_models


def test_folders_of_unlisted_runs_are_skipped_and_logged(tmp_path):
    for run in ("concat", "ogm_ge", "gmm_al__alpha0"):
        (tmp_path / run).mkdir()
    logs = []
    got = listed_models(sorted(tmp_path.iterdir()) + [tmp_path / "no_match_*"], ["concat", "ogm_ge"], logs.append)
    assert [p.name for p in got] == ["concat", "ogm_ge"]
    assert logs == ["skipped 1 model folder(s) of runs not in this profile's benchmark list: gmm_al__alpha0"]


def test_without_a_list_every_folder_is_kept(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "file.txt").write_text("")
    assert [p.name for p in listed_models(sorted(tmp_path.iterdir()), None)] == ["a"]


def test_benchmark_runs_reads_the_dataset_list():
    params = {"benchmark": {"cremad": ["concat", "arl"]}}
    assert benchmark_runs(params, "cremad") == ["concat", "arl"]
    assert benchmark_runs({}, "cremad") is None
    with pytest.raises(KeyError, match="benchmark.ave"):
        benchmark_runs(params, "ave")
