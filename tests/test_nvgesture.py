"""NVGesture: list parsing, scan (splits, skips, errors), extraction, the mini generator, prepare."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance.datasets import DatasetLayoutError, get_dataset
from mmbalance.datasets.mini import get_generator
from mmbalance.datasets.mini.nvgesture import TRUTH_FILE
from mmbalance.datasets.nvgesture import CLASSES, LIST_FILES, NVGesture, parse_line, read_list, span_indices
from mmbalance.media import MediaError
from mmbalance.prepare import prepare
from mmbalance.train.data import load_split, make_batch

SPLIT = {"val_fraction": 0.25, "split_seed": 0}
RECIPE = {"frame_size": 16, "clip_frames": 3, "frames_per_clip": 1, "flow_algorithm": "farneback"}
TINY = {"seed": 0, "num_classes": 3, "subjects": 4, "test_subjects": 1, "repetitions": 2, "video_frames": 10,
        "gesture_frames": 5, "show_progress": False}
LINE = "path:./Video_data/class_01/subject13_r0 depth:sk_depth:138:218 color:sk_color:138:218 duo_left:duo_left:161:254 label:1"


def _line(cls: int, folder: str, start: int = 1, end: int = 5) -> str:
    return (f"path:./Video_data/class_{cls:02d}/{folder} depth:sk_depth:{start}:{end} color:sk_color:{start}:{end} "
            f"duo_left:duo_left:{start}:{end} label:{cls}")


def _layout(root: Path, train: list[str], test: list[str], on_disk: list[str] | None = None) -> Path:
    """Native layout with empty videos (scan never opens them); lists of ``_line`` strings."""
    (root / "Video_data").mkdir(parents=True)
    for split, lines in (("train", train), ("test", test)):
        (root / LIST_FILES[split]).write_text("".join(line + "\n" for line in lines))
    folders = on_disk if on_disk is not None else [ln.split()[0][len("path:./"):] for ln in train + test]
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in ("sk_color.avi", "sk_depth.avi", "duo_left.avi"):
            (root / folder / name).touch()
    return root


def test_registry_and_attributes():
    adapter = get_dataset("nvgesture")
    assert isinstance(adapter, NVGesture)
    assert adapter.modalities == ("rgb", "depth", "flow") and len(CLASSES) == 25
    assert adapter.kinds == {"rgb": "frames", "depth": "frames", "flow": "frames"}
    assert adapter.dequantize == {"flow": {"offset": 128.0, "scale": 20.0 / 128}}


def test_parse_line_of_the_release():
    entry = parse_line(LINE, 7)
    assert entry.folder == "Video_data/class_01/subject13_r0" and entry.label == 0 and entry.line == 7
    assert entry.sensors == {"depth": ("sk_depth", 138, 218), "color": ("sk_color", 138, 218), "duo_left": ("duo_left", 161, 254)}
    for bad, msg in [(LINE.replace("label:1", "label:2"), "disagrees with folder class_01"),
                     (LINE.replace("label:1", "label:26").replace("class_01", "class_26"), "outside 1-25"),
                     (LINE.replace(" label:1", ""), "'label:'"),
                     (LINE.replace("color:sk_color:138:218", ""), "no 'color:"),
                     (LINE.replace("depth:sk_depth:138:218", "depth:sk_depth:138"), "must be 'depth:<file>:<start>:<end>'"),
                     (LINE.replace("color:sk_color:138:218", "color:sk_color:138:139"), "fewer than 2 frames"),
                     (LINE.replace("Video_data", "Videos"), "is not ./Video_data/")]:
        with pytest.raises(ValueError, match=msg):
            parse_line(bad)


def test_span_indices():
    assert span_indices(138, 218, 3).tolist() == [138, 177, 216]  # the last kept frame has its successor at 217
    assert span_indices(2, 6, None).tolist() == [2, 3, 4]
    assert span_indices(2, 6, 10).tolist() == [2, 3, 4]


def test_read_list_skips_bad_and_repeated_lines(tmp_path):
    path = tmp_path / "x.lst"
    path.write_text(f"{_line(1, 'subject1_r0')}\n\n{_line(1, 'subject1_r0')}\n{_line(2, 'subject1_r0').replace('label:2', 'label:3')}\n")
    entries, skips = read_list(path)
    assert list(entries) == ["class_01_subject1_r0"]
    assert [(s.clip_id, s.path) for s in skips] == [("class_01_subject1_r0", f"{path}:3"), ("class_02_subject1_r0", f"{path}:4")]
    assert "listed again (first at line 1)" in skips[0].reason and "disagrees with folder class_02" in skips[1].reason
    with pytest.raises(DatasetLayoutError, match="list file is missing"):
        read_list(tmp_path / "nope.lst")


def test_scan_labels_splits_and_val(tmp_path):
    train = [_line(c, f"subject{s}_r{r}") for c in (1, 2) for s in (1, 2) for r in (0, 1)]
    test = [_line(c, f"subject3_r{r}") for c in (1, 2) for r in (0, 1)]
    clips, skips = get_dataset("nvgesture").scan(_layout(tmp_path, train, test), **SPLIT)
    assert skips == [] and [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    assert {s: sum(c.split == s for c in clips) for s in ("train", "val", "test")} == {"train": 6, "val": 2, "test": 4}
    assert {c.label for c in clips if c.split == "val"} == {0, 1}  # stratified
    first = clips[0]
    assert first.clip_id == "class_01_subject1_r0" and first.label == 0
    assert set(first.paths) == {"color", "depth", "list"} and first.paths["color"].name == "sk_color.avi"
    adapter = get_dataset("nvgesture")
    adapter.scan(tmp_path, **SPLIT)
    assert adapter.classes == CLASSES[:2]  # up to the highest label listed


def test_scan_skips_missing_unlisted_and_twice_listed(tmp_path):
    train = [_line(1, "subject1_r0"), _line(1, "subject1_r1"), _line(2, "subject1_r0")]
    test = [_line(2, "subject1_r0"), _line(2, "subject2_r0")]
    on_disk = ["Video_data/class_01/subject1_r0", "Video_data/class_02/subject1_r0", "Video_data/class_02/subject2_r0",
               "Video_data/class_02/subject9_r0"]
    clips, skips = get_dataset("nvgesture").scan(_layout(tmp_path, train, test, on_disk), val_fraction=0.0, split_seed=0)
    assert [(c.clip_id, c.split) for c in clips] == [("class_01_subject1_r0", "train"), ("class_02_subject1_r0", "train"),
                                                     ("class_02_subject2_r0", "test")]
    reasons = {s.clip_id: s.reason for s in skips}
    assert reasons["class_01_subject1_r1"].startswith("listed but missing") and "sk_color.avi" in reasons["class_01_subject1_r1"]
    assert "listed in both" in [s.reason for s in skips if s.clip_id == "class_02_subject1_r0"][0]
    assert reasons["class_02_subject9_r0"].startswith("not in nvgesture_train")


def test_scan_split_csv_and_layout_errors(tmp_path):
    root = _layout(tmp_path / "a", [_line(1, "subject1_r0"), _line(1, "subject2_r0")], [_line(1, "subject3_r0")])
    split_csv = tmp_path / "split.csv"
    split_csv.write_text("clip_id,split\nclass_01_subject1_r0,test\nclass_01_subject3_r0,train\nclass_09_x,val\n")
    clips, skips = get_dataset("nvgesture").scan(root, split_csv=split_csv, val_fraction=0.0, split_seed=0)
    assert [(c.clip_id, c.split) for c in clips] == [("class_01_subject1_r0", "test"), ("class_01_subject3_r0", "train")]
    assert {s.clip_id for s in skips} == {"class_01_subject2_r0", "class_09_x"}
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        get_dataset("nvgesture").scan(tmp_path / "none", **SPLIT)
    (tmp_path / "b").mkdir()
    with pytest.raises(DatasetLayoutError, match="Video_data: expected folder"):
        get_dataset("nvgesture").scan(tmp_path / "b", **SPLIT)
    (tmp_path / "b" / "Video_data").mkdir()
    with pytest.raises(DatasetLayoutError, match=f"{LIST_FILES['train']}: list file is missing"):
        get_dataset("nvgesture").scan(tmp_path / "b", **SPLIT)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("nvgesture") / "raw"
    get_generator("nvgesture")(root, **TINY)
    return root


def test_generator_layout_and_lists(mini):
    train = (mini / LIST_FILES["train"]).read_text().splitlines()
    test = (mini / LIST_FILES["test"]).read_text().splitlines()
    assert len(train) == 18 and len(test) == 6  # 3 classes x 4 subjects x 2 repetitions, 1 test subject
    entry = parse_line(train[0])
    assert set(entry.sensors) == {"color", "depth", "duo_left"} and entry.sensors["color"][2] - entry.sensors["color"][1] == 5
    assert sorted(p.name for p in (mini / entry.folder).iterdir()) == ["duo_left.avi", "sk_color.avi", "sk_depth.avi"]
    truth = list(csv.DictReader((mini / TRUTH_FILE).open()))
    assert len(truth) == 24 and {r["split"] for r in truth} == {"train", "test"}


def test_generator_is_deterministic_and_refuses_real_data(mini, tmp_path):
    get_generator("nvgesture")(tmp_path / "again", **TINY)

    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}

    assert digest(tmp_path / "again") == digest(mini)
    real = tmp_path / "real"
    (real / "Video_data").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not overwriting"):
        get_generator("nvgesture")(real, **TINY)


def test_extract_reads_the_gesture_frames(mini):
    adapter = get_dataset("nvgesture")
    clips, _ = adapter.scan(mini, **SPLIT)
    truth = {r["clip_id"]: r for r in csv.DictReader((mini / TRUTH_FILE).open())}
    moving = next(c for c in clips if truth[c.clip_id]["flow_informative"] == "1")
    out = adapter.extract(moving, RECIPE)
    assert out["rgb"].shape == (3, 16, 16, 3) and out["depth"].shape == (3, 16, 16, 1) and out["flow"].shape == (3, 16, 16, 2)
    assert all(a.dtype == np.uint8 for a in out.values())
    # the hand is in every kept frame: depth brighter than the background (code 128 - 40) somewhere
    assert (out["depth"].reshape(3, -1).max(axis=1) > 150).all()
    flow = (out["flow"].astype(np.float32) - 128) * 20 / 128
    assert np.abs(flow).max() > 0.3  # the hand moves
    only = adapter.extract(moving, {**RECIPE, "modalities": ["depth"]})
    assert list(only) == ["depth"] and np.array_equal(only["depth"], out["depth"])
    with pytest.raises(ValueError, match="non-empty subset"):
        adapter.extract(moving, {**RECIPE, "modalities": ["audio"]})


def test_extract_errors_name_the_file(mini, tmp_path):
    adapter = get_dataset("nvgesture")
    clip = adapter.scan(mini, **SPLIT)[0][0]
    lst = tmp_path / "short.lst"
    lst.write_text(_line(1, clip.clip_id.split("_", 2)[2], 2, 40) + "\n")  # the video has 10 frames
    with pytest.raises(MediaError, match="sk_color.avi: gesture frames end at 40"):
        adapter.extract(type(clip)(clip.clip_id, clip.label, clip.split, {**clip.paths, "list": lst}), RECIPE)
    broken = tmp_path / "sk_depth.avi"
    broken.write_bytes(b"not a video")
    with pytest.raises(MediaError, match="sk_depth.avi"):
        adapter.extract(type(clip)(clip.clip_id, clip.label, clip.split, {**clip.paths, "depth": broken}),
                        {**RECIPE, "modalities": ["depth"]})


def test_prepare_and_a_training_step(mini, tmp_path):
    """Shards hold the three modalities (flow with its de-quantisation); a three-modality run and
    the depth-only run train one epoch on them."""
    from mmbalance.params import load_params, resolve_run
    from mmbalance.train.run import run

    index = prepare("nvgesture", mini, tmp_path / "shards", RECIPE, {"split_csv": None, **SPLIT}, workers=1, shard_max_count=10)
    assert index["classes"] == list(CLASSES[:3]) and index["frames_per_clip"] == 1
    assert {s: v["count"] for s, v in index["splits"].items()} == {"train": 14, "val": 4, "test": 6}
    mods = index["modalities"]
    assert mods["depth"]["shape"] == [None, 16, 16, 1] and mods["flow"]["dequantize"] == NVGesture.dequantize["flow"]
    split = load_split(tmp_path / "shards", "test", ["rgb", "depth", "flow"])
    inputs, _ = make_batch(split, torch.arange(2), train=False, gen=torch.Generator().manual_seed(0))
    assert inputs["depth"].shape == (2, 1, 1, 16, 16) and inputs["flow"].shape == (2, 1, 2, 16, 16)
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    for run_name, expected in (("depth_only", {"depth"}), ("iprm", {"rgb", "depth", "flow"})):
        method, cfg, model = resolve_run(params, run_name)
        train = {**params["train"], "epochs": 1, "batch_size": 8}
        res = run(tmp_path / "shards", tmp_path / run_name, "nvgesture", method, cfg, model, train, [0], "mini", run_name=run_name)
        assert set(res["seeds"]["0"]["test"]["probe_acc"]) == expected
        assert np.isfinite(res["seeds"]["0"]["test"]["loss"])
