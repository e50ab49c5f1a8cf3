"""Tests for the Kinetics-Sounds adapter (class lists, folders, splits, skips, extraction) and its mini generator."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from mmbalance.datasets import DatasetLayoutError, get_dataset
from mmbalance.datasets.kinetics_sounds import CLASS_LISTS, get_class_list
from mmbalance.datasets.mini import get_generator
from mmbalance.media import MediaError
from mmbalance.prepare import prepare

RECIPE = dict(sample_rate=16000, clip_seconds=10, n_fft=512, win_length=512, hop_length=159, window="tukey",
              scaling="density", normalize=True, frame_fps=1, frame_size=16, spec_dtype="float16")
MINI = dict(num_classes=2, clips_per_class=5, val_fraction=0.0, no_audio_clips=1, frame_size=16, show_progress=False)
KS31 = CLASS_LISTS["ks31"]


def _clip(i: int) -> str:
    return f"yt{i:09d}_{i:06d}_{i + 10:06d}"


def _layout(root: Path, files: dict[str, list[str]]) -> Path:
    """``{"<split>/<class folder>": [file names]}`` as empty files (the scan never opens them)."""
    for folder, names in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).touch()
    return root


def test_class_lists():
    assert len(KS31) == 31 and list(KS31) == sorted(KS31) and KS31[0] == "blowing_nose"
    arl = get_class_list("arl33")
    assert len(arl) == 33 and arl[7] == "tying_tie" and arl[17] == "finger_snapping"
    l3 = get_class_list("l3_34")
    assert len(l3) == 34 and "mowing_the_lawn_by_pushing_lawnmower" in l3 and "patting" in l3
    assert set(KS31) - set(arl) == set()  # the ARL list extends the 31
    with pytest.raises(KeyError, match="arl33"):
        get_class_list("ks32")
    adapter = get_dataset("kinetics_sounds")
    assert adapter.classes == KS31 and adapter.frames_per_clip == 3


def test_scan_labels_splits_and_skips(tmp_path):
    root = _layout(tmp_path / "ks", {
        "train/blowing_nose": [_clip(i) + ".mp4" for i in range(10)] + ["notes.txt", "bad_name.mp4"],
        "train/playing drums": [_clip(i) + ".mp4" for i in range(10, 20)],  # space = underscore
        "train/juggling": [_clip(99) + ".mp4"],
        "test/blowing_nose": [_clip(30) + ".mp4", _clip(5) + ".mp4"],  # clip 5 is also in train
        "test/tickling": ["-3Mwkq-7TV4_2.mp4"],  # the <id>_<n> test naming
    })  # fmt: skip
    (root / "train" / "stray.mp4").touch()
    adapter = get_dataset("kinetics_sounds")
    clips, skips = adapter.scan(root, val_fraction=0.2, split_seed=0)
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    assert Counter((c.split, KS31[c.label]) for c in clips) == {
        ("train", "blowing_nose"): 8, ("val", "blowing_nose"): 2, ("train", "playing_drums"): 8,
        ("val", "playing_drums"): 2, ("test", "blowing_nose"): 1, ("test", "tickling"): 1}  # fmt: skip
    assert all(c.paths["video"].parent.parent.name in ("train", "test") for c in clips)
    reasons = {s.clip_id: s.reason for s in skips}
    assert "not in class list 'ks31' (1 entries)" in reasons["juggling"]
    assert "not a *.mp4" in reasons["notes"] and "does not match" in reasons["bad_name"]
    assert "outside a class folder" in reasons["stray"]
    assert reasons[_clip(5)] == f"duplicate clip id: {root / 'train' / 'blowing_nose' / (_clip(5) + '.mp4')} is kept"
    assert len(skips) == 5
    again, _ = adapter.scan(root, val_fraction=0.2, split_seed=0)
    assert again == clips  # the held-out val is seeded


def test_val_folder_and_class_list_choice(tmp_path):
    root = _layout(tmp_path / "ks", {"train/tying_tie": [_clip(1) + ".mp4"], "val/bowling": [_clip(2) + ".mp4"],
                                     "test/bowling": [_clip(3) + ".mp4"]})
    adapter = get_dataset("kinetics_sounds")
    clips, skips = adapter.scan(root, class_list="arl33")
    assert adapter.classes == get_class_list("arl33")
    assert [(c.split, c.label) for c in clips] == [("train", 7), ("val", 1), ("test", 1)] and skips == []
    clips, skips = get_dataset("kinetics_sounds").scan(root)  # ks31 has no tying_tie
    assert [s.clip_id for s in skips] == ["tying_tie"] and {c.split for c in clips} == {"val", "test"}
    with pytest.raises(ValueError, match="split_csv"):
        adapter.scan(root, split_csv=tmp_path / "s.csv")


def test_layout_errors_name_the_path(tmp_path):
    adapter = get_dataset("kinetics_sounds")
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "nope")):
        adapter.scan(tmp_path / "nope")
    root = _layout(tmp_path / "ks", {"train/bowling": [_clip(1) + ".mp4"]})
    with pytest.raises(DatasetLayoutError, match=str(root / "test")):
        adapter.scan(root)
    (root / "train" / "bowling" / (_clip(1) + ".mp4")).unlink()
    (root / "test").mkdir()
    with pytest.raises(DatasetLayoutError, match="no Kinetics-Sounds clip"):
        adapter.scan(root)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini") / "ks"
    get_generator("kinetics_sounds")(root, seed=0, **MINI)
    return root


def _truth(root: Path) -> list[dict[str, str]]:
    with (root / "mini_truth.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_mini_layout(mini):
    rows = _truth(mini)
    assert sorted(p.name for p in mini.iterdir()) == ["mini_truth.csv", "test", "train"]  # no val folder
    assert sorted(p.name for p in (mini / "train").iterdir()) == list(KS31[:2])
    assert Counter(r["split"] for r in rows) == {"train": 8, "test": 2}
    for r in rows:
        assert (mini / r["path"]).is_file() and r["path"].split("/")[1] == KS31[int(r["label"])]


def test_extract_shapes_and_missing_audio(mini):
    adapter = get_dataset("kinetics_sounds")
    clips, _ = adapter.scan(mini)
    silent = {r["clip_id"] for r in _truth(mini) if r["has_audio"] == "0"}
    clip = next(c for c in clips if c.clip_id not in silent)
    arrays = adapter.extract(clip, RECIPE)
    assert arrays["audio"].shape == (257, 1004) and arrays["visual"].shape == (10, 16, 16, 3)
    mute = next(c for c in clips if c.clip_id in silent)
    with pytest.raises(MediaError, match="no audio stream"):
        adapter.extract(mute, RECIPE)


def test_prepare_round_trip(mini, tmp_path):
    split = {"split_csv": None, "val_fraction": 0.25, "split_seed": 0}
    index = prepare("kinetics_sounds", mini, tmp_path, {**RECIPE, "frames_per_clip": 3}, split, workers=1, shard_max_count=4)
    counts = {s: v["count"] for s, v in index["splits"].items()}
    assert counts["test"] == 2 and counts["train"] + counts["val"] == 7  # 8 train clips, 1 without audio
    assert index["classes"] == list(KS31) and index["frames_per_clip"] == 3
    assert index["modalities"]["audio"]["shape"] == [257, 1004]
    assert index["modalities"]["visual"]["length"] == [10, 10]
    (skip,) = index["skipped"]
    assert "no audio stream" in skip["reason"]


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generator_is_deterministic(mini, tmp_path):
    get_generator("kinetics_sounds")(tmp_path / "again", seed=0, **MINI)
    assert _digests(tmp_path / "again") == _digests(mini)
    get_generator("kinetics_sounds")(tmp_path / "again", seed=1, **MINI)
    assert set(_digests(tmp_path / "again")) != set(_digests(mini))
    with pytest.raises(ValueError, match="num_classes"):
        get_generator("kinetics_sounds")(tmp_path / "x", seed=0, clips_per_class=5, num_classes=40)
    assert not (tmp_path / "x").exists()  # settings are checked before anything is written
