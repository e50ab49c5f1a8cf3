"""dvc.lock pruning (``make profile``): entries of stages dvc.yaml no longer defines are dropped
line by line; every kept entry stays byte for byte."""

import pytest

from mmbalance.lockfile import group_by_file, prune, prune_file

LOCK = """schema: '2.0'
stages:
  generate@cremad:
    cmd: python stages/generate.py --dataset cremad --out data/raw/cremad
      --params params.yaml
    deps:
    - path: stages/generate.py
      md5: 0a1b
  train-cremad@cremad-concat:
    cmd: python stages/train.py
    outs:
    - path: results/cremad/concat.json
      md5: ff00
  'train-cremad@cremad-arl':
    cmd: python stages/train.py --run arl
  report:
    cmd: python stages/report.py
"""


def test_prune_drops_only_the_missing_stages():
    text, dropped = prune(LOCK, {"generate@cremad", "report"})
    assert dropped == ["train-cremad@cremad-concat", "train-cremad@cremad-arl"]
    assert text == LOCK.split("  train-cremad@cremad-concat:")[0] + "  report:\n    cmd: python stages/report.py\n"


def test_prune_file_keeps_a_lock_with_nothing_to_drop(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(LOCK)
    keep = {"generate@cremad", "train-cremad@cremad-concat", "train-cremad@cremad-arl", "report", "other"}
    assert prune_file(lock, keep) == [] and lock.read_text() == LOCK
    assert prune_file(lock, {"report"}) == ["generate@cremad", "train-cremad@cremad-concat", "train-cremad@cremad-arl"]
    assert lock.read_text() == "schema: '2.0'\nstages:\n  report:\n    cmd: python stages/report.py\n"
    assert prune_file(tmp_path / "missing.lock", {"report"}) == []


def test_prune_file_refuses_an_unexpected_layout(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n    report:\n        cmd: x\n    other:\n        cmd: y\n")  # 4-space indent
    before = lock.read_text()
    with pytest.raises(ValueError, match="unexpected layout"):
        prune_file(lock, {"report"})
    assert lock.read_text() == before


def test_stage_addresses_grouped_by_their_dvc_yaml():
    """`dvc stage list --all` names a stage outside ./dvc.yaml by its file: each lock is pruned
    against the stages of the dvc.yaml beside it."""
    from pathlib import Path

    grouped = group_by_file(["report", "generate@cremad", "pipelines/ave/dvc.yaml:train-ave@ave-concat",
                             "pipelines/ave/dvc.yaml:train-ave@ave-arl", "pipelines/mosi/dvc.yaml:train-mosi@mosi-concat"])
    assert grouped == {Path("dvc.yaml"): {"report", "generate@cremad"},
                       Path("pipelines/ave/dvc.yaml"): {"train-ave@ave-concat", "train-ave@ave-arl"},
                       Path("pipelines/mosi/dvc.yaml"): {"train-mosi@mosi-concat"}}
