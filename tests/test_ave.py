"""Tests for the AVE adapter (layout, labels, splits, duplicates, skips, extraction) and its mini generator."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from mmbalance.datasets import Clip, DatasetLayoutError, get_dataset
from mmbalance.datasets.ave import CLASSES, EventClip, parse_line
from mmbalance.datasets.mini import get_generator
from mmbalance.media import MediaError
from mmbalance.media.audio import load_audio
from mmbalance.prepare import prepare

RECIPE = dict(sample_rate=16000, clip_seconds=10, n_fft=512, win_length=512, hop_length=159, window="tukey",
              scaling="density", normalize=True, frame_fps=1, frame_size=16, spec_dtype="float16")
MINI = dict(num_classes=2, clips_per_class=5, duplicate_lines=1, frame_size=16, show_progress=False)
HEADER = "Category&VideoID&Quality&StartTime&EndTime\n"


def _write(root: Path, train: list[str], val: list[str], test: list[str], videos=(), annotations=None) -> Path:
    """An AVE layout with empty mp4 files (the scan never opens them)."""
    (root / "AVE").mkdir(parents=True)
    for name, lines in [("trainSet.txt", train), ("valSet.txt", val), ("testSet.txt", test)]:
        (root / name).write_text("".join(f"{line}\n" for line in lines))
    listed = {line.split("&")[1] for line in train + val + test if line.count("&") == 4}
    for vid in sorted(listed | set(videos)):
        (root / "AVE" / f"{vid}.mp4").touch()
    lines = annotations if annotations is not None else train + val + test
    (root / "Annotations.txt").write_text(HEADER + "".join(f"{line}\n" for line in lines))
    return root


def _by_reason(skips, text):
    return sorted(s.clip_id for s in skips if text in s.reason)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini") / "ave"
    get_generator("ave")(root, seed=0, **MINI)
    return root


def test_registry_and_classes():
    adapter = get_dataset("ave")
    assert adapter.classes == tuple(sorted(CLASSES)) and len(CLASSES) == 28
    assert "Baby cry, infant cry" in CLASSES and "Fixed-wing aircraft, airplane" in CLASSES
    assert adapter.kinds == {"audio": "spectrogram", "visual": "frames"} and adapter.frames_per_clip == 3


def test_parse_line():
    ann = parse_line("Violin, fiddle&-9_5_2i4igQ&good&2&7", "f:1")
    assert (ann.video_id, CLASSES[ann.label], ann.start_s, ann.end_s, ann.where) == ("-9_5_2i4igQ", "Violin, fiddle", 2.0, 7.0, "f:1")
    for bad, msg in [("Bark&abc&good&0", "5 '&'-separated fields"), ("Barking&abc&good&0&10", "unknown category"),
                     ("Bark&abc&good&x&10", "not numbers"), ("Bark&abc&good&0&0", "empty"),
                     ("Bark&a.b&good&0&10", "malformed video id")]:
        with pytest.raises(ValueError, match=msg):
            parse_line(bad, "f:1")


def test_scan_labels_splits_and_skips(tmp_path):
    train = ["Bark&vidA000001&good&0&10", "Cat&vidB000002&good&2&7", "Dog&vidC000003&good&0&10",
             "Bark&vidD000004&good&0&0", "Cat&vidE000005&good", "Cat&vidA000001&good&0&10",
             "Shofar&vidM000009&good&0&10"]
    val = ["Bus&vidF000006&good&1&9", "Goat&vidA000001&good&0&10"]
    test = ["Horse&vidG000007&good&0&10", "Bus&vidB000002&good&0&10"]
    root = _write(tmp_path / "ave", train, val, test, videos=["vidX000099"],
                  annotations=train + val + test + ["Bark&vidZ000100&good&0&10"])
    (root / "AVE" / "vidM000009.mp4").unlink()
    clips, skips = get_dataset("ave").scan(root)
    got = [(c.clip_id, c.split, CLASSES[c.label], c.start_s, c.end_s) for c in clips]
    assert got == [("vidA000001", "train", "Bark", 0, 10), ("vidA000001", "val", "Goat", 0, 10),
                   ("vidB000002", "test", "Bus", 0, 10), ("vidB000002", "train", "Cat", 2, 7),
                   ("vidF000006", "val", "Bus", 1, 9), ("vidG000007", "test", "Horse", 0, 10)]
    assert all(isinstance(c, EventClip) and c.paths["video"] == root / "AVE" / f"{c.clip_id}.mp4" for c in clips)
    (dup,) = [s for s in skips if "duplicate" in s.reason]
    assert dup.path == f"{root / 'trainSet.txt'}:6" and f"{root / 'trainSet.txt'}:1 is kept" in dup.reason
    assert _by_reason(skips, "unknown category") == ["vidC000003"]
    assert _by_reason(skips, "empty") == ["vidD000004"]
    assert _by_reason(skips, "5 '&'-separated") == ["vidE000005"]
    assert _by_reason(skips, "video missing") == ["vidM000009"]
    assert _by_reason(skips, "not listed in any split file") == ["vidX000099"]
    assert _by_reason(skips, "listed in no split file") == ["vidZ000100"]
    assert len(skips) == 7


def test_global_duplicates_keep_the_first_split(tmp_path):
    root = _write(tmp_path / "ave", ["Bark&vidA000001&good&0&10"], ["Goat&vidA000001&good&0&10"],
                  ["Bus&vidA000001&good&0&10", "Cat&vidB000002&good&0&10"])
    clips, skips = get_dataset("ave").scan(root, duplicates="global")
    assert [(c.clip_id, c.split) for c in clips] == [("vidA000001", "train"), ("vidB000002", "test")]
    assert [s.path for s in skips] == [f"{root / 'testSet.txt'}:1", f"{root / 'valSet.txt'}:1"]
    with pytest.raises(ValueError, match="duplicates"):
        get_dataset("ave").scan(root, duplicates="last")
    with pytest.raises(ValueError, match="split_csv"):
        get_dataset("ave").scan(root, split_csv=tmp_path / "s.csv")


def test_layout_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "nope")):
        get_dataset("ave").scan(tmp_path / "nope")
    root = _write(tmp_path / "ave", ["Bark&vidA000001&good&0&10"], [], [])
    (root / "valSet.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="valSet.txt"):
        get_dataset("ave").scan(root)
    (root / "valSet.txt").touch()
    (root / "AVE" / "vidA000001.mp4").unlink()
    with pytest.raises(DatasetLayoutError, match="no AVE clip"):
        get_dataset("ave").scan(root)
    (root / "AVE").rmdir()
    with pytest.raises(DatasetLayoutError, match=str(root / "AVE")):
        get_dataset("ave").scan(root)


def _truth(root: Path) -> list[dict[str, str]]:
    with (root / "mini_truth.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_extract_cuts_the_event_span(mini):
    adapter = get_dataset("ave")
    row = next(r for r in _truth(mini) if r["distractor"] != "-1")  # a partial span
    start, end = float(row["start_s"]), float(row["end_s"])
    path = mini / row["path"]
    arrays = adapter.extract(EventClip(row["clip_id"], int(row["label"]), row["split"], {"video": path}, start, end), RECIPE)
    assert arrays["audio"].shape == (257, 1004) and arrays["audio"].dtype == np.float16
    assert arrays["visual"].shape == (end - start, 16, 16, 3) and arrays["visual"].dtype == np.uint8
    whole = adapter.extract(Clip(row["clip_id"], 0, "train", {"video": path}), RECIPE)
    assert whole["visual"].shape[0] == 10
    np.testing.assert_array_equal(whole["visual"][int(start) : int(end)], arrays["visual"])
    late = EventClip(row["clip_id"], 0, "train", {"video": path}, 10.0, 12.0)
    with pytest.raises(MediaError, match="no frame inside the event span"):
        adapter.extract(late, RECIPE)


def _pitch_class(wave: np.ndarray, pitches: list[float], sr: int = 16000) -> int:
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / sr)
    return int(np.argmax([power[np.abs(freqs / p - 1) < 0.06].sum() for p in pitches]))


def test_mini_layout_and_span_signal(mini):
    rows = _truth(mini)
    assert sorted(p.name for p in mini.iterdir()) == ["AVE", "Annotations.txt", "mini_truth.csv", "testSet.txt", "trainSet.txt", "valSet.txt"]
    assert len(rows) == 10 and {CLASSES[int(r["label"])] for r in rows} == set(CLASSES[:2])
    assert (mini / "Annotations.txt").read_text().startswith(HEADER)
    assert len((mini / "trainSet.txt").read_text().splitlines()) == 8 + 1  # 4 train per class + 1 duplicate line
    pitches = list(np.geomspace(180.0, 1400.0, 2))
    for r in rows:
        if r["distractor"] == "-1" or r["audio_informative"] == "0":
            continue
        wave = load_audio(mini / r["path"], 16000)
        a, b = int(float(r["start_s"]) * 16000), int(float(r["end_s"]) * 16000)
        assert _pitch_class(wave[a:b], pitches) == int(r["tone_class"])
        outside = np.concatenate([wave[: max(a - 1600, 0)], wave[b + 1600 : 160000]])  # 0.1 s margin (codec delay)
        assert _pitch_class(outside, pitches) == int(r["distractor"])


def test_prepare_round_trip(mini, tmp_path):
    index = prepare("ave", mini, tmp_path, {**RECIPE, "frames_per_clip": 3}, {"split_csv": None}, workers=1, shard_max_count=4)
    counts = {s: v["count"] for s, v in index["splits"].items()}
    assert counts == {"train": 8, "test": 2}  # round(0.1 * 5) = 0 val clips
    assert index["classes"] == list(CLASSES) and index["frames_per_clip"] == 3
    assert index["modalities"]["audio"]["shape"] == [257, 1004]
    assert index["modalities"]["visual"]["shape"] == [None, 16, 16, 3]
    spans = [float(r["end_s"]) - float(r["start_s"]) for r in _truth(mini)]
    assert index["modalities"]["visual"]["length"] == [min(spans), max(spans)]
    (dup,) = index["skipped"]
    assert "duplicate video id" in dup["reason"]


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generator_is_deterministic(mini, tmp_path):
    get_generator("ave")(tmp_path / "again", seed=0, **MINI)
    assert _digests(tmp_path / "again") == _digests(mini)
    get_generator("ave")(tmp_path / "again", seed=1, **MINI)  # replaces the previous mini dataset
    assert set(_digests(tmp_path / "again")) != set(_digests(mini))
    real = tmp_path / "real"
    (real / "AVE").mkdir(parents=True)
    with pytest.raises(FileExistsError, match=str(real)):
        get_generator("ave")(real, seed=0, **MINI)
