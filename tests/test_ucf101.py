"""UCF-101: list parsing, scan (splits, skips, errors), extraction, the mini generator, prepare."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance.datasets import DatasetLayoutError, get_dataset
from mmbalance.datasets.mini import get_generator
from mmbalance.datasets.mini.ucf101 import TRUTH_FILE
from mmbalance.datasets.ucf101 import UCF101, UCF101Three, parse_video_name, read_class_index, read_list
from mmbalance.media import MediaError
from mmbalance.media.flow import dequantize, read_frame_pairs
from mmbalance.media.video import read_frames
from mmbalance.prepare import prepare
from mmbalance.shards import read_index
from mmbalance.train.data import load_split, make_batch

CLASSES = ("ApplyEyeMakeup", "Basketball", "HandstandPushups")
SPLIT = {"val_fraction": 0.25, "split_seed": 0}
RECIPE = {"frame_fps": 1, "frame_size": 16, "modalities": ["rgb", "flow", "rgb_diff"], "flow_algorithm": "farneback"}


def _name(cls: str, g: int, c: int) -> str:
    file_cls = "HandStandPushups" if cls == "HandstandPushups" else cls  # the real data's spelling
    return f"{cls}/v_{file_cls}_g{g:02d}_c{c:02d}.avi"


def _layout(root: Path, train: list[str], test: list[str], on_disk: list[str] | None = None,
            class_lines: list[str] | None = None) -> Path:
    """Native layout with empty .avi files (scan never opens them) and split-1 lists (CRLF)."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (root / "UCF-101").mkdir()
    lines = class_lines or [f"{i} {c}" for i, c in enumerate(CLASSES, start=1)]
    (lists / "classInd.txt").write_bytes("".join(f"{x}\r\n" for x in lines).encode())
    (lists / "trainlist01.txt").write_text("".join(f"{r} {CLASSES.index(r.split('/')[0]) + 1}\n" for r in train))
    (lists / "testlist01.txt").write_text("".join(f"{r}\n" for r in test))
    for rel in on_disk if on_disk is not None else train + test:
        (root / "UCF-101" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "UCF-101" / rel).touch()
    return root


def _grid(groups, clips=2):
    return [_name(c, g, k) for c in CLASSES for g in groups for k in range(1, clips + 1)]


def test_registry_and_attributes():
    adapter = get_dataset("ucf101")
    assert isinstance(adapter, UCF101)
    assert adapter.modalities == ("rgb", "flow", "rgb_diff")
    assert adapter.kinds == {"rgb": "frames", "flow": "frames", "rgb_diff": "frames"}
    assert adapter.frames_per_clip == 3 and adapter.official_split == 1
    assert adapter.dequantize == {"flow": {"offset": 128.0, "scale": 20.0 / 128}, "rgb_diff": {"offset": 128.0, "scale": 1 / 255}}


def test_parse_video_name():
    assert parse_video_name("v_ApplyEyeMakeup_g08_c01") == ("ApplyEyeMakeup", 8, 1)
    for bad in ("ApplyEyeMakeup_g08_c01", "v_ApplyEyeMakeup_g8_c01", "v_Apply-Eye_g08_c01", "v_X_g08_c01_extra"):
        with pytest.raises(ValueError, match="does not match"):
            parse_video_name(bad)


def test_read_class_index(tmp_path):
    path = tmp_path / "classInd.txt"
    path.write_bytes(b"\xef\xbb\xbf1 ApplyEyeMakeup\r\n2 Basketball\r\n\r\n")
    assert read_class_index(path) == ("ApplyEyeMakeup", "Basketball")
    for text, msg in [("1 A\n3 B\n", "index 3 out of order"), ("1 A B\n", "line 1 must be"), ("1 A\n2 A\n", "listed twice"),
                      ("", "no class listed")]:
        path.write_text(text)
        with pytest.raises(DatasetLayoutError, match=msg):
            read_class_index(path)
    with pytest.raises(DatasetLayoutError, match="missing"):
        read_class_index(tmp_path / "nope.txt")


def test_read_list_with_and_without_label_column(tmp_path):
    path = tmp_path / "trainlist01.txt"
    path.write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
        "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\r\n"  # real spelling: accepted
        "Basketball/v_Basketball_g08_c01.avi 1\n"  # wrong label column
        "Biking/v_Biking_g08_c01.avi 4\n"  # class not in classInd
        "Basketball/v_ApplyEyeMakeup_g08_c02.avi 2\n"  # folder and name disagree
        "Basketball/v_Basketball_g8_c01.avi 2\n"  # malformed name
        "Basketball/v_Basketball_g08_c02.avi 2 7\n"  # extra column
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"  # repeated
    )
    entries, skips = read_list(path, CLASSES)
    assert entries == {"v_ApplyEyeMakeup_g08_c01": ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 1),
                       "v_HandStandPushups_g08_c01": ("HandstandPushups/v_HandStandPushups_g08_c01.avi", 2)}
    reasons = {(s.path.rsplit(":", 1)[1], s.reason.split(" ")[0]) for s in skips}
    assert reasons == {("3", "label"), ("4", "class"), ("5", "file"), ("6", "file"), ("7", "expected"), ("8", "listed")}
    test = tmp_path / "testlist01.txt"
    test.write_text("Basketball/v_Basketball_g01_c01.avi\n")
    assert read_list(test, CLASSES) == ({"v_Basketball_g01_c01": ("Basketball/v_Basketball_g01_c01.avi", 1)}, [])


def test_scan_labels_splits_and_val(tmp_path):
    train, test = _grid(range(8, 12)), _grid(range(1, 3))
    adapter = get_dataset("ucf101")
    clips, skips = adapter.scan(_layout(tmp_path, train, test), split_csv=None, **SPLIT)
    assert skips == [] and adapter.classes == CLASSES
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    counts = Counter(c.split for c in clips)
    assert counts == {"train": 18, "val": 6, "test": 12}
    assert Counter(c.label for c in clips if c.split == "val") == {0: 2, 1: 2, 2: 2}  # stratified
    by_id = {c.clip_id: c for c in clips}
    hand = by_id["v_HandStandPushups_g01_c01"]
    assert hand.label == 2 and hand.split == "test"
    assert hand.paths["video"] == tmp_path / "UCF-101" / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi"
    again, _ = get_dataset("ucf101").scan(tmp_path, split_csv=None, **SPLIT)
    assert again == clips  # deterministic


def test_scan_skips_missing_unlisted_and_bad_files(tmp_path):
    train, test = _grid(range(8, 10), 1), _grid(range(1, 2), 1)
    extra = [_name("Basketball", 20, 1), "Basketball/v_Basketball_g20_c02.mp4", "Basketball/v_Biking_g20_c01.avi",
             "Biking/v_Biking_g08_c01.avi"]
    root = _layout(tmp_path, train, test, on_disk=train[1:] + test + extra)
    clips, skips = get_dataset("ucf101").scan(root, split_csv=None, **SPLIT)
    assert len(clips) == len(train) - 1 + len(test)
    reasons = {s.clip_id: s.reason for s in skips}
    assert reasons[Path(train[0]).stem].startswith("listed but missing: expected")
    assert reasons["v_Basketball_g20_c01"] == "not in trainlist01.txt or testlist01.txt"
    assert "not <Class>/<name>.avi" in reasons["v_Basketball_g20_c02"]
    assert "names class 'Biking' but sits in folder 'Basketball'" in reasons["v_Biking_g20_c01"]
    assert reasons["Biking"] == "class folder 'Biking' is not in classInd.txt"


def test_scan_official_split_number_and_csv(tmp_path):
    root = _layout(tmp_path, _grid(range(8, 10)), _grid(range(1, 2)))
    lists = root / "ucfTrainTestlist"
    (lists / "trainlist02.txt").write_text("".join(f"{r}\n" for r in _grid(range(1, 2))))  # label column optional
    (lists / "testlist02.txt").write_text("".join(f"{r}\n" for r in _grid(range(8, 10))))
    clips, _ = get_dataset("ucf101").scan(root, split_csv=None, official_split=2, **SPLIT)
    assert {c.clip_id for c in clips if c.split == "test"} == {Path(r).stem for r in _grid(range(8, 10))}
    with pytest.raises(ValueError, match="official split must be 1, 2 or 3"):
        get_dataset("ucf101").scan(root, split_csv=None, official_split=4, **SPLIT)
    with pytest.raises(DatasetLayoutError, match="trainlist03.txt: list file is missing"):
        get_dataset("ucf101").scan(root, split_csv=None, official_split=3, **SPLIT)
    csv = tmp_path / "split.csv"
    csv.write_text("clip_id,split\nv_Basketball_g01_c01,test\nv_Basketball_g08_c01,val\nv_Basketball_g09_c01,train\nv_Nope_g01_c01,test\n")
    clips, skips = get_dataset("ucf101").scan(root, split_csv=csv, **SPLIT)
    assert {c.clip_id: c.split for c in clips} == {"v_Basketball_g01_c01": "test", "v_Basketball_g08_c01": "val",
                                                   "v_Basketball_g09_c01": "train"}
    assert {s.reason for s in skips} == {"listed in split file but no video found", "not in split file"}


def test_scan_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        get_dataset("ucf101").scan(tmp_path / "nope", split_csv=None, **SPLIT)
    (tmp_path / "UCF-101").mkdir()
    with pytest.raises(DatasetLayoutError, match="ucfTrainTestlist: expected folder is missing"):
        get_dataset("ucf101").scan(tmp_path, split_csv=None, **SPLIT)
    empty = _layout(tmp_path / "empty", [], [], class_lines=["1 ApplyEyeMakeup"])
    with pytest.raises(DatasetLayoutError, match="no UCF-101 video"):
        get_dataset("ucf101").scan(empty, split_csv=None, **SPLIT)


# --- the mini generator and extraction on its real .avi files -------------------------------------

MINI = dict(clips_per_class=21, groups=21, seed=0, classes=["ApplyEyeMakeup", "HandstandPushups"], show_progress=False)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw") / "ucf101"
    get_generator("ucf101")(root, **MINI)
    return root


def test_generator_layout_and_lists(mini):
    lists = mini / "ucfTrainTestlist"
    assert read_class_index(lists / "classInd.txt") == ("ApplyEyeMakeup", "HandstandPushups")
    assert (mini / "UCF-101" / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi").is_file()
    assert len(list((mini / "UCF-101").rglob("*.avi"))) == 42
    for split in (1, 2, 3):
        train, _ = read_list(lists / f"trainlist{split:02d}.txt", ("ApplyEyeMakeup", "HandstandPushups"))
        test, _ = read_list(lists / f"testlist{split:02d}.txt", ("ApplyEyeMakeup", "HandstandPushups"))
        assert len(train) == 28 and len(test) == 14 and not train.keys() & test.keys()
    assert (lists / "trainlist01.txt").read_bytes().endswith(b" 2\r\n")


def test_generator_is_deterministic(mini, tmp_path):
    again = tmp_path / "again"
    get_generator("ucf101")(again, **MINI)
    for path in sorted((mini / "UCF-101").rglob("*.avi")):
        other = again / path.relative_to(mini)
        if path.read_bytes() != other.read_bytes():  # another encoder build may differ in bytes only
            assert np.array_equal(read_frames(path, fps=8, size=None), read_frames(other, fps=8, size=None)), path
    assert (mini / TRUTH_FILE).read_bytes() == (again / TRUTH_FILE).read_bytes()
    other_seed = tmp_path / "seed1"
    get_generator("ucf101")(other_seed, **{**MINI, "seed": 1})
    first = sorted((mini / "UCF-101").rglob("*.avi"))[0]
    assert first.read_bytes() != (other_seed / first.relative_to(mini)).read_bytes()


def test_generator_refuses_real_data(tmp_path):
    (tmp_path / "UCF-101" / "Basketball").mkdir(parents=True)
    (tmp_path / "UCF-101" / "Basketball" / "v_Basketball_g01_c01.avi").touch()
    with pytest.raises(FileExistsError, match="not overwriting"):
        get_generator("ucf101")(tmp_path, **MINI)


def test_extract_shapes_and_motion(mini, tmp_path):
    clean = tmp_path / "clean"  # no noise, no tint (no clipping), every clip moving: flow and flicker show the class
    get_generator("ucf101")(clean, **{**MINI, "noise_std": 0.0, "flow_uninformative_fraction": 0.0, "pattern_jitter_deg": 0.0,
                                            "flicker_jitter": 0.0, "colour_strength": 0.0, "colour_cast_std": 0.0})
    adapter = get_dataset("ucf101")
    clips, _ = adapter.scan(clean, split_csv=None, **SPLIT)
    for clip in (clips[0], clips[-1]):  # of 2 classes, class 0 expands (divergence > 0), class 1 contracts
        out = adapter.extract(clip, RECIPE)
        assert out["rgb"].shape == (3, 16, 16, 3) and out["flow"].shape == (3, 16, 16, 2) and out["rgb_diff"].shape == (3, 16, 16, 3)
        assert all(a.dtype == np.uint8 for a in out.values())
        full = dequantize(adapter.extract(clip, {**RECIPE, "frame_size": None})["flow"], **adapter.dequantize["flow"])
        div = (np.gradient(full[..., 0], axis=2) + np.gradient(full[..., 1], axis=1))[:, 6:-6, 6:-6].mean()
        assert (div > 0.05 if clip.label == 0 else div < -0.05), (clip.clip_id, div)
        red = dequantize(out["rgb_diff"], **adapter.dequantize["rgb_diff"])[..., 0].mean()  # class flicker: red up for 0
        assert (red > 0.005 if clip.label == 0 else red < -0.005), (clip.clip_id, red)
        path = clip.paths["video"]
        assert np.array_equal(out["rgb"], read_frames(path, fps=1, size=16))  # same frames as the other datasets
        _, pairs = read_frame_pairs(path)
        full = dequantize(adapter.extract(clip, {**RECIPE, "frame_size": None})["rgb_diff"], **adapter.dequantize["rgb_diff"])
        np.testing.assert_allclose(full, (pairs[:, 1].astype(np.float32) - pairs[:, 0]) / 255, atol=1e-6)


def test_extract_modality_choice_and_errors(mini, tmp_path):
    adapter = get_dataset("ucf101")
    clip = adapter.scan(mini, split_csv=None, **SPLIT)[0][0]
    assert set(adapter.extract(clip, {"frame_fps": 1, "frame_size": 16})) == {"rgb", "flow"}  # default set
    assert set(adapter.extract(clip, {**RECIPE, "modalities": ["flow"]})) == {"flow"}
    with pytest.raises(ValueError, match="subset of"):
        adapter.extract(clip, {**RECIPE, "modalities": ["rgb", "audio"]})
    with pytest.raises(ValueError, match="flow_algorithm"):
        adapter.extract(clip, {**RECIPE, "flow_algorithm": "lk"})
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"garbage")
    with pytest.raises(MediaError, match="broken.avi"):
        adapter.extract(type(clip)(clip.clip_id, clip.label, clip.split, {"video": broken}), RECIPE)


def test_ucf101_three_is_ucf101_with_three_modalities(mini, tmp_path):
    """``ucf101_three`` (TPAMI Tab. 11): the same videos and splits, RGB difference by default,
    its own params block named in errors; prepare writes all three modalities."""
    adapter = get_dataset("ucf101_three")
    assert isinstance(adapter, UCF101Three) and adapter.name == "ucf101_three"
    assert adapter.default_modalities == ("rgb", "flow", "rgb_diff") and get_dataset("ucf101").default_modalities == ("rgb", "flow")
    clips, _ = adapter.scan(mini, split_csv=None, **SPLIT)
    assert [c.clip_id for c in clips] == [c.clip_id for c in get_dataset("ucf101").scan(mini, split_csv=None, **SPLIT)[0]]
    assert set(adapter.extract(clips[0], {"frame_fps": 1, "frame_size": 16})) == {"rgb", "flow", "rgb_diff"}
    with pytest.raises(ValueError, match=r"datasets\.ucf101_three\.modalities must be"):
        adapter.extract(clips[0], {**RECIPE, "modalities": []})
    recipe = {k: v for k, v in RECIPE.items() if k != "modalities"}
    index = prepare("ucf101_three", mini, tmp_path, recipe, {"split_csv": None, "official_split": 1, **SPLIT},
                    workers=1, shard_max_count=50)
    assert index["dataset"] == "ucf101_three" and set(index["modalities"]) == {"rgb", "flow", "rgb_diff"}


def test_prepare_round_trip(mini, tmp_path):
    index = prepare("ucf101", mini, tmp_path, RECIPE, {"split_csv": None, "official_split": 1, **SPLIT},
                    workers=1, shard_max_count=10)
    assert index["classes"] == ["ApplyEyeMakeup", "HandstandPushups"] and index["frames_per_clip"] == 3
    assert {s: v["count"] for s, v in index["splits"].items()} == {"train": 21, "val": 7, "test": 14}
    mods = index["modalities"]
    assert mods["rgb"]["shape"] == [None, 16, 16, 3] and mods["flow"]["shape"] == [None, 16, 16, 2]
    assert mods["rgb_diff"]["shape"] == [None, 16, 16, 3] and mods["flow"]["length"] == [3, 3]
    for m in ("flow", "rgb_diff"):  # the loader de-quantises with these
        assert mods[m].get("dequantize") == UCF101.dequantize[m], f"{m}: index lacks the adapter's dequantize entry"
    assert "dequantize" not in mods["rgb"]
    assert read_index(tmp_path) == index
    split = load_split(tmp_path, "test", ["rgb", "flow", "rgb_diff"])
    inputs, labels = make_batch(split, torch.arange(4), train=False, gen=torch.Generator().manual_seed(0))
    assert inputs["flow"].shape == (4, 3, 2, 16, 16) and inputs["rgb"].shape == (4, 3, 3, 16, 16)
    assert inputs["flow"].abs().max() <= 20.0 and inputs["rgb_diff"].abs().max() <= 0.51
    assert labels.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("run_name", ["rgb_only", "flow_only", "rgb_diff_only", "ogm_ge"])
def test_runs_train_on_prepared_shards(mini, tmp_path, run_name):
    """The UCF-101 unimodal runs (and a balancing method over three modalities) train end to end
    on real shards: frames de-quantised, finite loss, metrics for the modalities they use."""
    from mmbalance.params import load_params, resolve_run
    from mmbalance.train.run import run

    prepare("ucf101", mini, tmp_path / "shards", RECIPE, {"split_csv": None, "official_split": 1, **SPLIT},
            workers=1, shard_max_count=50)
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    method, cfg, model = resolve_run(params, run_name)
    train = {**params["train"], "epochs": 1, "batch_size": 8}
    res = run(tmp_path / "shards", tmp_path / "out", "ucf101", method, cfg, model, train, [0], "mini", run_name=run_name)
    probes = res["seeds"]["0"]["test"]["probe_acc"]
    expected = {"rgb_only": {"rgb"}, "flow_only": {"flow"}, "rgb_diff_only": {"rgb_diff"}, "ogm_ge": {"rgb", "flow", "rgb_diff"}}
    assert set(probes) == expected[run_name]
    assert np.isfinite(res["seeds"]["0"]["test"]["loss"])
