"""Per-dataset cache granularity: generate@<key> / prepare@<key> depend on their own manifest of
the datasets and media files the step runs (data/dataset_sources/<step>/<key>.json), so adding or
editing one dataset's adapter re-runs that dataset's steps only."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from mmbalance.dataset_sources import SHARED, source_files, write_manifests
from mmbalance.datasets.base import DATASETS
from mmbalance.datasets.mini import GENERATORS

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mmbalance"


@pytest.fixture(scope="module")
def stages(resolved_stages) -> dict[str, list[str]]:
    """generate/prepare stages as DVC resolves them: name → dependency paths."""
    return {name: st["deps"] for name, st in resolved_stages.items() if name.startswith(("generate@", "prepare@"))}


def _names(paths):
    return [p.relative_to(SRC).as_posix() for p in paths]


def test_adapters_and_generators_list_their_own_files():
    assert _names(source_files(DATASETS.get("cremad"), SRC)) == ["datasets/cremad.py", "media/audio.py", "media/video.py"]
    # the UCF-101-Three adapter is a subclass in ucf101.py
    assert "datasets/ucf101.py" in _names(source_files(DATASETS.get("ucf101_three"), SRC))
    # mini Kinetics-Sounds: its module, the shared synthesis code and the adapter it imports
    gen = _names(source_files(GENERATORS.get("kinetics_sounds"), SRC))
    assert {"datasets/mini/kinetics_sounds.py", "datasets/mini/_av_synth.py", "datasets/kinetics_sounds.py"} <= set(gen)
    assert not set(gen) & set(SHARED)
    assert not any("cremad" in f for f in gen)


def test_every_step_depends_on_its_manifest_not_the_folders(stages):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    expected = {f"generate@{k}" for k in params["generate"]} | {f"prepare@{k}" for k in params["datasets"]}
    assert set(stages) == expected
    for name, deps in stages.items():
        step, key = name.split("@")
        assert f"data/dataset_sources/{step}/{key}.json" in deps, name
        assert "src/mmbalance/datasets" not in deps and "src/mmbalance/media" not in deps, name
        assert {f"src/mmbalance/{s}" for s in SHARED} <= set(deps), name


def test_editing_one_adapter_changes_only_its_manifests(tmp_path):
    """A dataset's own files appear in its manifests only: editing them changes no other
    dataset's manifest (the digests of the others stay as they are)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    written = write_manifests(list(params["generate"]), list(params["datasets"]), SRC, tmp_path)
    listed = {p.relative_to(tmp_path).with_suffix("").as_posix(): set(json.loads(p.read_text())["files"]) for p in written}
    own = {"datasets/mosi.py", "datasets/mini/mosi.py"}
    assert {name for name, files in listed.items() if files & own} == {"generate/mosi", "prepare/mosi"}
    assert {name for name, files in listed.items() if "datasets/cremad.py" in files} == {"generate/cremad", "prepare/cremad"}


def test_a_different_copy_is_refused(tmp_path):
    """A source folder whose adapter differs from the imported one cannot describe the code that
    runs: the manifest refuses it, naming the file."""
    src = tmp_path / "mmbalance"
    shutil.copytree(SRC / "datasets", src / "datasets", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SRC / "media", src / "media", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "datasets" / "mosi.py").write_text((SRC / "datasets" / "mosi.py").read_text() + "\n# edited\n")
    with pytest.raises(FileNotFoundError, match="byte-identical"):
        write_manifests([], ["mosi"], src, tmp_path / "out")
    assert write_manifests([], ["cremad"], src, tmp_path / "out")  # an identical copy is accepted
