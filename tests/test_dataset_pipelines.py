"""Per-dataset training pipelines: pipelines/<dataset>/dvc.yaml are the template's rendering for
every benchmark dataset, and each dataset's training stages live in its own file (and lock)."""

from pathlib import Path

import yaml

from mmbalance.pipelines import differences, expected, main, render, write

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "# @DATASET@\nstages:\n  train-@DATASET@:\n    cmd: python stages/train.py --dataset @DATASET@\n"


def test_render_replaces_every_placeholder():
    assert render(TEMPLATE, "ave") == "# ave\nstages:\n  train-ave:\n    cmd: python stages/train.py --dataset ave\n"


def test_render_refuses_a_template_without_placeholder():
    import pytest

    with pytest.raises(ValueError, match="@DATASET@"):
        render("stages: {}\n", "ave")


def test_write_then_check(tmp_path):
    files = expected(TEMPLATE, ["ave", "mosi"])
    assert sorted(differences(tmp_path, files)) == [f"{tmp_path}/ave/dvc.yaml: missing", f"{tmp_path}/mosi/dvc.yaml: missing"]
    assert len(write(tmp_path, files)) == 2 and write(tmp_path, files) == []
    assert differences(tmp_path, files) == []
    (tmp_path / "ave" / "dvc.yaml").write_text("edited\n")
    (tmp_path / "old" ).mkdir()
    (tmp_path / "old" / "dvc.yaml").write_text("x\n")
    assert differences(tmp_path, files) == [f"{tmp_path}/ave/dvc.yaml: differs from the template",
                                            f"{tmp_path}/old/dvc.yaml: dataset not in params benchmark (remove its folder, with its dvc.lock)"]


def test_repository_files_match_the_template(capsys):
    """`make pipelines` has been run after the last edit of the template or of the dataset list."""
    status = main(["--template", str(ROOT / "pipelines" / "train.template.yaml"), "--params", str(ROOT / "params.yaml"),
                   "--out", str(ROOT / "pipelines"), "--check"])
    assert status == 0, capsys.readouterr().out


def test_each_dataset_trains_in_its_own_file(resolved_stages):
    benchmark = yaml.safe_load((ROOT / "params.yaml").read_text())["benchmark"]
    trains = {name: st for name, st in resolved_stages.items() if name.startswith("train-")}
    assert len(trains) == sum(len(runs) for runs in benchmark.values())
    for name, st in trains.items():
        dataset = name.split("@")[0][len("train-"):]
        assert st["dvcfile"] == f"pipelines/{dataset}/dvc.yaml", name
    others = {st["dvcfile"] for name, st in resolved_stages.items() if not name.startswith("train-")}
    assert others == {"dvc.yaml"}
