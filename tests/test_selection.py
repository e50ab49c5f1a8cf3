"""Model folders the evaluate and costs stages score: only the profile's benchmark runs."""

import json

import pytest

from mmbalance.evaluate.selection import listed_models, manifest_runs


def test_folders_of_unlisted_runs_are_skipped_and_logged(tmp_path):
    for run in ("concat", "ogm_ge", "gmm_al__alpha0"):
        (tmp_path / run).mkdir()
    manifest = tmp_path / "cremad.json"
    manifest.write_text(json.dumps({"dataset": "cremad", "runs": ["concat", "ogm_ge"], "files": {}}))
    logs = []
    got = listed_models(sorted(p for p in tmp_path.iterdir() if p.is_dir()) + [tmp_path / "no_match_*"], manifest, logs.append)
    assert [p.name for p in got] == ["concat", "ogm_ge"]
    assert logs == ["skipped 1 model folder(s) of runs not in this profile's benchmark list: gmm_al__alpha0"]


def test_without_a_list_every_folder_is_kept(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "file.txt").write_text("")
    assert [p.name for p in listed_models(sorted(tmp_path.iterdir()), None)] == ["a"]


def test_manifest_runs_reads_the_dataset_manifest(tmp_path):
    path = tmp_path / "cremad.json"
    path.write_text(json.dumps({"dataset": "cremad", "runs": ["arl", "concat"], "files": {}}))
    assert manifest_runs(path) == ["arl", "concat"]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit, match="bad.json: not a dataset manifest"):
        manifest_runs(tmp_path / "bad.json")
