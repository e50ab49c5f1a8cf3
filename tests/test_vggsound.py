"""Tests for the VGGSound adapter (csv rows, clip names, class lists, splits, skips, extraction)
and its mini generator."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmbalance.datasets import DatasetLayoutError, get_dataset
from mmbalance.datasets.mini import get_generator
from mmbalance.datasets.vggsound import CLASS_LISTS, get_class_list, parse_row
from mmbalance.media import MediaError
from mmbalance.prepare import prepare

RECIPE = dict(sample_rate=16000, clip_seconds=10, n_fft=512, win_length=512, hop_length=159, window="tukey",
              scaling="density", normalize=True, frame_fps=1, frame_size=16, spec_dtype="float16")
MINI = dict(num_classes=3, clips_per_class=5, test_fraction=0.2, missing_videos=1, no_audio_clips=1, frame_size=16,
            show_progress=False)
VGG = CLASS_LISTS["vgg309"]


def _id(i: int) -> str:
    return f"yt{i:09d}"


def _layout(root: Path, rows: list[str], files: list[str]) -> Path:
    """``vggsound.csv`` from raw lines and empty mp4 files (the scan never opens them)."""
    root.mkdir(parents=True)
    (root / "vggsound.csv").write_text("".join(f"{r}\n" for r in rows))
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    return root


def test_class_list():
    assert len(VGG) == 309 and list(VGG) == sorted(VGG) and len(set(VGG)) == 309
    assert VGG[0] == "air conditioning noise" and "bird chirping, tweeting" in VGG
    assert {"playing timpani", "playing tympani"} <= set(VGG)  # two classes in the release
    with pytest.raises(KeyError, match="csv"):
        get_class_list("vgg310")
    adapter = get_dataset("vggsound")
    assert adapter.classes == VGG and adapter.frames_per_clip == 3
    assert adapter.kinds == {"audio": "spectrogram", "visual": "frames"}


def test_parse_row():
    row = parse_row(["---g-f_I2yQ", "1", "people marching", "test"], "x:1")
    assert (row.clip_id, row.label_name, row.split) == ("---g-f_I2yQ_000001", "people marching", "test")
    for bad, reason in [(["abc", "1", "hail", "train"], "malformed YouTube id"),
                        ([_id(1), "1.5", "hail", "train"], "not a non-negative integer"),
                        ([_id(1), "1", "hail", "val"], "not one of train, test"),
                        ([_id(1), "1", "hail"], "expected 4 fields")]:
        with pytest.raises(ValueError, match=reason):
            parse_row(bad, "x:1")


def test_scan_labels_splits_and_skips(tmp_path):
    rows = [f'{_id(i)},{i},"bird chirping, tweeting",train' for i in range(10)]
    rows += [f"{_id(i)},{i},hail,train" for i in range(10, 20)]
    rows += [f"{_id(30)},30,hail,test", f"{_id(31)},31,hail,test",  # 31: no video
             f"{_id(5)},5,hail,test",  # the same clip again: the first row is kept
             f"{_id(40)},40,juggling,train", f"{_id(41)},4x,hail,train"]
    files = [f"video/{_id(i)}_{i:06d}.mp4" for i in [*range(20), 30]]
    files += ["video/notes_000001.mp4", f"video/{_id(50)}_000050.mp4",  # bad name; not in the csv
              f"other/{_id(3)}_3.mp4"]  # OGM-GE's unpadded name for the same clip
    root = _layout(tmp_path / "vgg", rows, files)
    adapter = get_dataset("vggsound")
    clips, skips = adapter.scan(root, val_fraction=0.2, split_seed=0)
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    assert Counter((c.split, VGG[c.label]) for c in clips) == {
        ("train", "bird chirping, tweeting"): 8, ("val", "bird chirping, tweeting"): 2,
        ("train", "hail"): 8, ("val", "hail"): 2, ("test", "hail"): 1}  # fmt: skip
    reasons = {s.clip_id: (s.path, s.reason) for s in skips}
    csv_file = root / "vggsound.csv"
    assert reasons[f"{_id(31)}_000031"][1].startswith(f"video missing: expected {root / 'video' / _id(31)}_000031.mp4")
    assert reasons[f"{_id(5)}_000005"] == (f"{csv_file}:23", f"duplicate clip: {csv_file}:6 is kept")
    assert reasons[f"{_id(40)}_000040"] == (f"{csv_file}:24", "label 'juggling' not in class list 'vgg309'")
    assert "not a non-negative integer" in reasons[_id(41)][1]
    assert "does not match" in reasons["notes_000001"][1]
    assert reasons[f"{_id(50)}_000050"][1] == "not listed in vggsound.csv"
    # paths in sorted order: other/ comes before video/, so its copy is the one kept
    assert reasons[f"{_id(3)}_000003"] == (str(root / "video" / f"{_id(3)}_000003.mp4"),
                                           f"duplicate clip: {root / 'other' / _id(3)}_3.mp4 is kept")
    assert len(skips) == 7
    again, _ = adapter.scan(root, val_fraction=0.2, split_seed=0)
    assert again == clips  # the held-out val is seeded


def test_unpadded_names_header_and_csv_class_list(tmp_path):
    rows = ["youtube_id,start_seconds,label,split", f"{_id(1)},7,hail,train", f"{_id(2)},8,zebra braying,test",
            f"{_id(3)},9,juggling,train"]
    root = _layout(tmp_path / "vgg", rows, [f"train-set/{_id(1)}_7.mp4", f"test-set/{_id(2)}_8.mp4",
                                            f"train-set/{_id(3)}_9.mp4"])
    adapter = get_dataset("vggsound")
    clips, skips = adapter.scan(root, val_fraction=0.0)
    assert [(c.clip_id, c.split, VGG[c.label]) for c in clips] == [
        (f"{_id(1)}_000007", "train", "hail"), (f"{_id(2)}_000008", "test", "zebra braying")]
    assert [s.clip_id for s in skips] == [f"{_id(3)}_000009"]
    clips, skips = adapter.scan(root, val_fraction=0.0, class_list="csv")
    assert adapter.classes == ("hail", "juggling", "zebra braying") and skips == []
    assert [c.label for c in clips] == [0, 2, 1]
    with pytest.raises(ValueError, match="split_csv"):
        adapter.scan(root, split_csv=tmp_path / "s.csv")


def test_layout_errors_name_the_path(tmp_path):
    adapter = get_dataset("vggsound")
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "nope")):
        adapter.scan(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "empty" / "vggsound.csv")):
        adapter.scan(tmp_path / "empty")
    root = _layout(tmp_path / "vgg", [f"{_id(1)},1,hail,train"], [])
    with pytest.raises(DatasetLayoutError, match="no VGGSound clip"):
        adapter.scan(root)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini") / "vgg"
    get_generator("vggsound")(root, seed=0, **MINI)
    return root


def _truth(root: Path) -> list[dict[str, str]]:
    with (root / "mini_truth.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_mini_layout(mini):
    truth = _truth(mini)
    assert sorted(p.name for p in mini.iterdir()) == ["mini_truth.csv", "vggsound.csv", "video"]
    with (mini / "vggsound.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == sorted(rows, key=lambda r: (r[0], int(r[1]))) and all(len(r) == 4 for r in rows)
    assert Counter(r[3] for r in rows) == {"train": 12, "test": 3}
    assert {r[2] for r in rows} == set(VGG[:3])  # "alligators, crocodiles hissing" is not among them
    assert len(truth) == 14 and sum(r["has_audio"] == "0" for r in truth) == 1
    listed = {f"{r[0]}_{int(r[1]):06d}": r[2] for r in rows}
    for r in truth:
        assert (mini / r["path"]).is_file() and listed[r["clip_id"]] == VGG[int(r["label"])]
    assert sorted(p.stem for p in (mini / "video").iterdir()) == sorted(r["clip_id"] for r in truth)


def test_scan_of_mini_and_extract(mini):
    adapter = get_dataset("vggsound")
    clips, skips = adapter.scan(mini, val_fraction=0.0)
    assert len(clips) == 14 and [s.reason.split(":")[0] for s in skips] == ["video missing"]
    silent = {r["clip_id"] for r in _truth(mini) if r["has_audio"] == "0"}
    clip = next(c for c in clips if c.clip_id not in silent)
    arrays = adapter.extract(clip, RECIPE)
    assert arrays["audio"].shape == (257, 1004) and arrays["visual"].shape == (10, 16, 16, 3)
    assert np.isfinite(arrays["audio"]).all()
    mute = next(c for c in clips if c.clip_id in silent)
    with pytest.raises(MediaError, match="no audio stream"):
        adapter.extract(mute, RECIPE)


def _digests(root: Path) -> dict[str, str]:
    files = (p for p in sorted(root.rglob("*")) if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_generator_is_deterministic_and_safe(mini, tmp_path):
    get_generator("vggsound")(tmp_path / "again", seed=0, **MINI)
    assert _digests(tmp_path / "again") == _digests(mini)
    get_generator("vggsound")(tmp_path / "again", seed=1, **MINI)  # replaces its own earlier output
    assert set(_digests(tmp_path / "again")) != set(_digests(mini))
    with pytest.raises(ValueError, match="num_classes"):
        get_generator("vggsound")(tmp_path / "x", seed=0, clips_per_class=5, num_classes=400)
    with pytest.raises(ValueError, match="missing_videos"):
        get_generator("vggsound")(tmp_path / "x", seed=0, clips_per_class=2, missing_videos=30)
    assert not (tmp_path / "x").exists()  # settings are checked before anything is written
    real = tmp_path / "real"
    real.mkdir()
    (real / "vggsound.csv").write_text(f"{_id(1)},1,hail,train\n")
    with pytest.raises(FileExistsError, match="not overwriting"):
        get_generator("vggsound")(real, seed=0, **MINI)


@pytest.fixture(scope="module")
def shards(mini, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shards")
    split = {"split_csv": None, "val_fraction": 0.25, "split_seed": 0}
    index = prepare("vggsound", mini, out, {**RECIPE, "frames_per_clip": 3}, split, workers=1, shard_max_count=4)
    return out, index


def test_prepare_round_trip(shards):
    _, index = shards
    counts = {s: v["count"] for s, v in index["splits"].items()}
    assert counts["test"] == 3 and counts["train"] + counts["val"] == 10  # 11 train clips, 1 mute
    assert index["classes"] == list(VGG) and index["frames_per_clip"] == 3
    assert index["modalities"]["audio"]["shape"] == [257, 1004]
    assert index["modalities"]["visual"]["length"] == [10, 10]
    reasons = [s["reason"] for s in index["skipped"]]
    assert len(reasons) == 2 and sum("no audio stream" in r for r in reasons) == 1
    assert sum(r.startswith("video missing") for r in reasons) == 1


def test_one_training_epoch_on_the_shards(shards, tmp_path):
    """Concat trains end to end on the prepared shards: both probes reported, finite loss."""
    from mmbalance.params import load_params, resolve_run
    from mmbalance.train.run import run

    out, _ = shards
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    method, cfg, model = resolve_run(params, "concat")
    train = {**params["train"], "epochs": 1, "batch_size": 4}
    res = run(out, tmp_path / "out", "vggsound", method, cfg, model, train, [0], "mini", run_name="concat")
    test = res["seeds"]["0"]["test"]
    assert set(test["probe_acc"]) == {"audio", "visual"} and np.isfinite(test["loss"])
