"""Tests for the CREMA-D adapter, the split helpers and the dataset registry."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from mmbalance.datasets import (
    Clip,
    DatasetLayoutError,
    Skip,
    get_dataset,
    list_datasets,
)
from mmbalance.datasets.base import register_dataset, splits_from_csv, stratified_holdout
from mmbalance.datasets.cremad import CLASSES, CremaD, parse_clip_id
from mmbalance.datasets.mini import get_generator

SPLIT = {"test_fraction": 0.1, "val_fraction": 0.1, "split_seed": 0}
SENT = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")


def _layout(root: Path, stems, audio_only=(), video_only=(), extra=()) -> Path:
    """Native layout of empty files (the adapter never opens them)."""
    (root / "AudioWAV").mkdir(parents=True)
    (root / "VideoFlash").mkdir()
    for stem in stems:
        (root / "AudioWAV" / f"{stem}.wav").touch()
        (root / "VideoFlash" / f"{stem}.flv").touch()
    for stem in audio_only:
        (root / "AudioWAV" / f"{stem}.wav").touch()
    for stem in video_only:
        (root / "VideoFlash" / f"{stem}.flv").touch()
    for rel in extra:
        (root / rel).touch()
    return root


def _stems(per_class: int) -> list[str]:
    """per_class distinct ids for each emotion."""
    return [f"{1001 + i}_{SENT[i % 12]}_{emo}_XX" for emo in CLASSES for i in range(per_class)]


def _scan(root, **kw):
    return get_dataset("cremad").scan(root, **{**SPLIT, **kw})


def test_registry():
    assert "cremad" in list_datasets() and list_datasets() == sorted(list_datasets())
    adapter = get_dataset("cremad")
    assert isinstance(adapter, CremaD)
    assert adapter.classes == ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
    assert adapter.modalities == ("audio", "visual")
    with pytest.raises(KeyError, match="cremad"):
        get_dataset("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("cremad")(CremaD)


def test_parse_clip_id():
    assert parse_clip_id("1001_DFA_ANG_XX") == ("1001", "DFA", "ANG", "XX")
    for bad, msg in [
        ("1001_DFA_ANG", "does not match"),
        ("abc", "does not match"),
        ("1001_DFA_XYZ_XX", "unknown emotion code 'XYZ'"),
        ("1001_ABC_ANG_XX", "unknown sentence code"),
        ("1001_DFA_ANG_ZZ", "unknown intensity level"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_clip_id(bad)


def test_labels_paths_and_order(tmp_path):
    stems = [
        "1091_WSI_ANG_HI",
        "1001_DFA_NEU_XX",
        "1002_IEO_HAP_LO",
        "1003_TIE_SAD_MD",
        "1004_IOM_FEA_XX",
        "1005_IWW_DIS_XX",
    ]
    root = _layout(tmp_path, stems)
    clips, skips = _scan(root, test_fraction=0.0, val_fraction=0.0)
    assert skips == []
    assert [c.clip_id for c in clips] == sorted(stems)
    labels = {c.clip_id: c.label for c in clips}
    assert labels == {
        "1001_DFA_NEU_XX": 0,
        "1002_IEO_HAP_LO": 1,
        "1003_TIE_SAD_MD": 2,
        "1004_IOM_FEA_XX": 3,
        "1005_IWW_DIS_XX": 4,
        "1091_WSI_ANG_HI": 5,
    }
    c = clips[0]
    assert isinstance(c, Clip) and c.split == "train"
    assert c.paths == {
        "audio": root / "AudioWAV" / f"{c.clip_id}.wav",
        "video": root / "VideoFlash" / f"{c.clip_id}.flv",
    }


def test_stratified_split_sizes_and_determinism(tmp_path):
    root = _layout(tmp_path, _stems(20))  # 120 clips
    clips, skips = _scan(root)
    assert skips == []
    counts = Counter(c.split for c in clips)
    assert counts == {"test": 12, "val": 11, "train": 97}  # 10 % of 120; 10 % of 108
    test_per_class = Counter(c.label for c in clips if c.split == "test")
    assert set(test_per_class.values()) == {2}  # stratified
    assert _scan(root) == (clips, skips)  # deterministic
    assert _scan(root, split_csv="") == (clips, skips)  # "" = no split file
    other, _ = _scan(root, split_seed=1)
    assert {c.clip_id for c in other if c.split == "test"} != {
        c.clip_id for c in clips if c.split == "test"
    }


def test_stratified_holdout_documented_ratio():
    # real CREMA-D class sizes: 1271 x 5 + NEU 1087 = 7442; 744 test clips
    ids = [f"{c}{i:05d}" for c, n in enumerate([1087] + [1271] * 5) for i in range(n)]
    labels = [int(i[0]) for i in ids]
    held = stratified_holdout(ids, labels, 744 / 7442, seed=0)
    assert len(held) == 744
    per_class = Counter(int(i[0]) for i in held)
    assert per_class[0] == 109 and all(per_class[c] == 127 for c in range(1, 6))
    assert held == stratified_holdout(ids, labels, 744 / 7442, seed=0)
    with pytest.raises(ValueError):
        stratified_holdout(ids, labels, 1.0, seed=0)


def _write_csv(path: Path, rows, header=("clip_id", "split"), bom=False) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\r\n" if bom else "\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_split_csv_without_val_holds_out_val(tmp_path):
    stems = _stems(10)  # 60 clips
    root = _layout(tmp_path / "d", stems)
    rows = [(s, "test" if i % 6 == 0 else "train") for i, s in enumerate(stems[:-1])]
    rows.append(("1090_DFA_ANG_XX", "train"))  # listed, no media
    csv_path = _write_csv(tmp_path / "split.csv", rows, bom=True)  # BOM + CRLF tolerated
    clips, skips = _scan(root, split_csv=csv_path)
    by_id = {c.clip_id: c.split for c in clips}
    assert len(clips) == 59
    assert all(by_id[s] == "test" for s, split in rows if split == "test" and s in by_id)
    n_train = sum(1 for _, split in rows[:-1] if split == "train")
    assert Counter(by_id.values())["val"] == round(0.1 * n_train)
    reasons = {k.clip_id: k.reason for k in skips}
    assert reasons == {
        stems[-1]: "not in split file",
        "1090_DFA_ANG_XX": "listed in split file but no media found",
    }
    assert next(k for k in skips if k.clip_id == stems[-1]).path.endswith(".wav")


def test_split_csv_with_val_is_used_as_is(tmp_path):
    stems = _stems(2)
    root = _layout(tmp_path / "d", stems)
    rows = [(s, ("train", "val", "test")[i % 3]) for i, s in enumerate(stems)]
    clips, skips = _scan(root, split_csv=_write_csv(tmp_path / "s.csv", rows))
    assert skips == []
    assert {c.clip_id: c.split for c in clips} == dict(rows)


def test_split_csv_errors(tmp_path):
    root = _layout(tmp_path / "d", _stems(1))
    bad_header = _write_csv(tmp_path / "h.csv", [], header=("clip", "CODE"))
    with pytest.raises(DatasetLayoutError, match=str(bad_header)):
        _scan(root, split_csv=bad_header)
    bad_split = _write_csv(tmp_path / "s.csv", [(_stems(1)[0], "dev")])
    with pytest.raises(DatasetLayoutError, match="line 2"):
        _scan(root, split_csv=bad_split)
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        _scan(root, split_csv=tmp_path / "missing.csv")


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "nope")):
        _scan(tmp_path / "nope")
    (tmp_path / "half" / "AudioWAV").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "half" / "VideoFlash")):
        _scan(tmp_path / "half")
    empty = _layout(tmp_path / "empty", [])
    with pytest.raises(DatasetLayoutError, match=f"{empty}: no CREMA-D clip"):
        _scan(empty)
    only_bad = _layout(tmp_path / "bad", [], audio_only=["garbage"])
    with pytest.raises(DatasetLayoutError, match="1 files skipped"):
        _scan(only_bad)


def test_every_bad_file_becomes_a_skip(tmp_path):
    good = _stems(1)
    root = _layout(
        tmp_path,
        [*good, "1001_DFA_XYZ_XX", "not_a_clip"],
        audio_only=["1002_IEO_ANG_XX"],
        video_only=["1003_TIE_HAP_XX"],
        extra=["AudioWAV/notes.txt"],
    )
    clips, skips = _scan(root, test_fraction=0.0, val_fraction=0.0)
    assert [c.clip_id for c in clips] == sorted(good)
    assert all(isinstance(k, Skip) for k in skips)
    got = sorted((k.clip_id, Path(k.path).parent.name, k.reason.split(" ")[0]) for k in skips)
    assert got == [
        ("1001_DFA_XYZ_XX", "AudioWAV", "unknown"),
        ("1001_DFA_XYZ_XX", "VideoFlash", "unknown"),
        ("1002_IEO_ANG_XX", "AudioWAV", "video"),
        ("1003_TIE_HAP_XX", "VideoFlash", "audio"),
        ("not_a_clip", "AudioWAV", "file"),
        ("not_a_clip", "VideoFlash", "file"),
        ("notes", "AudioWAV", "unexpected"),
    ]
    reasons = {(k.clip_id, Path(k.path).suffix): k.reason for k in skips}
    assert "emotion" in reasons[("1001_DFA_XYZ_XX", ".wav")]
    assert reasons[("1002_IEO_ANG_XX", ".wav")].startswith("video missing")
    assert reasons[("1003_TIE_HAP_XX", ".flv")].startswith("audio missing")


def test_scan_generated_mini(tmp_path):
    get_generator("cremad")(tmp_path, clips_per_class=4, seed=0, show_progress=False)
    clips, skips = _scan(tmp_path, test_fraction=0.25, val_fraction=0.34)
    assert skips == [] and len(clips) == 24
    with (tmp_path / "mini_truth.csv").open() as fh:
        truth = {r["clip_id"]: int(r["label"]) for r in csv.DictReader(fh)}
    assert {c.clip_id: c.label for c in clips} == truth
    assert Counter(c.split for c in clips) == {"test": 6, "val": 6, "train": 12}
    assert all(p.is_file() for c in clips for p in c.paths.values())


def test_splits_from_csv_skips_each_mismatch_once(tmp_path):
    """Listed-but-unusable ids are skipped against the split file (unless skipped before for a
    media problem), usable-but-unlisted ids against their own file; the usable order is kept."""
    csv = tmp_path / "split.csv"
    csv.write_text("clip_id,split\nb,test\na,train\ngone,train\nbroken,test\n")
    found = {"b": "b.wav", "a": "a.wav", "extra": "extra.wav"}
    splits, skips = splits_from_csv(csv, found, "listed in split file but no media found", already={"broken"})
    assert list(splits.items()) == [("b", "test"), ("a", "train")]
    assert skips == [Skip("gone", str(csv), "listed in split file but no media found"),
                     Skip("extra", "extra.wav", "not in split file")]
