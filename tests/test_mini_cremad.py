"""Tests for the mini CREMA-D generator: layout, balance, determinism, truth, signal content."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from mmbalance.datasets.cremad import CLASSES, parse_clip_id
from mmbalance.datasets.mini import cremad as mini_cremad
from mmbalance.datasets.mini import get_generator, list_generators
from mmbalance.media.video import read_frames

KW = {"clips_per_class": 4, "show_progress": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two runs with seed 0, one with seed 1 (24 clips each)."""
    out = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        root = tmp_path_factory.mktemp(name)
        out[name] = root
        out[name + "_summary"] = get_generator("cremad")(root, seed=seed, **KW)
    return out


def _truth(root: Path) -> list[dict[str, str]]:
    with (root / "mini_truth.csv").open() as fh:
        return list(csv.DictReader(fh))


def _files(root: Path, folder: str) -> list[Path]:
    return sorted((root / folder).iterdir())


def test_registry():
    assert "cremad" in list_generators()
    assert get_generator("cremad") is mini_cremad.generate_cremad
    with pytest.raises(KeyError, match="cremad"):
        get_generator("nope")


def test_layout_and_balance(runs):
    root = runs["a"]
    wavs, flvs = _files(root, "AudioWAV"), _files(root, "VideoFlash")
    assert {p.suffix for p in wavs} == {".wav"} and {p.suffix for p in flvs} == {".flv"}
    stems = [p.stem for p in wavs]
    assert stems == [p.stem for p in flvs] and len(set(stems)) == 24
    parsed = [parse_clip_id(s) for s in stems]  # real-looking ids
    assert all(1001 <= int(actor) <= 1091 for actor, *_ in parsed)
    assert Counter(emo for _, _, emo, _ in parsed) == {c: 4 for c in CLASSES}
    assert sorted(p.name for p in root.iterdir()) == ["AudioWAV", "VideoFlash", "mini_truth.csv"]
    summary = runs["a_summary"]
    assert summary["num_clips"] == 24 and summary["class_counts"] == {c: 4 for c in CLASSES}


def test_wav_format(runs):
    info = sf.info(str(_files(runs["a"], "AudioWAV")[0]))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (
        16000,
        1,
        "PCM_16",
        40000,
    )


def test_deterministic_for_a_seed(runs):
    a, b, c = runs["a"], runs["b"], runs["c"]
    for folder in ("AudioWAV", "VideoFlash"):
        fa, fb = _files(a, folder), _files(b, folder)
        assert [p.name for p in fa] == [p.name for p in fb]
        assert all(p.read_bytes() == q.read_bytes() for p, q in zip(fa, fb, strict=True))
    assert (a / "mini_truth.csv").read_bytes() == (b / "mini_truth.csv").read_bytes()
    first_a, first_b = _files(a, "VideoFlash")[0], _files(b, "VideoFlash")[0]
    np.testing.assert_array_equal(read_frames(first_a, size=None), read_frames(first_b, size=None))
    assert [p.name for p in _files(a, "AudioWAV")] != [p.name for p in _files(c, "AudioWAV")]


def test_truth_csv_fractions(tmp_path):
    summary = get_generator("cremad")(
        tmp_path, seed=5, audio_ambiguous_fraction=0.25, visual_uninformative_fraction=0.5, **KW
    )
    rows = _truth(tmp_path)
    assert list(rows[0]) == ["clip_id", "label", "audio_informative", "visual_informative"]
    assert [r["clip_id"] for r in rows] == sorted(p.stem for p in _files(tmp_path, "AudioWAV"))
    for r in rows:
        assert CLASSES[int(r["label"])] == parse_clip_id(r["clip_id"])[2]
    # exactly round(fraction * clips_per_class) per class: 1 ambiguous, 2 without grating
    amb = Counter(r["label"] for r in rows if r["audio_informative"] == "0")
    blank = Counter(r["label"] for r in rows if r["visual_informative"] == "0")
    assert set(amb.values()) == {1} and len(amb) == 6
    assert set(blank.values()) == {2} and len(blank) == 6
    assert summary["audio_ambiguous"] == 6 and summary["visual_uninformative"] == 12


def _audio_class(wave: np.ndarray, sr: int = 16000) -> int:
    """Class whose pitch band (fundamental +/- 7 %) holds the most spectral power."""
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / sr)
    pitches = np.geomspace(180, 1050, 6)
    return int(np.argmax([power[np.abs(freqs / p - 1) < 0.07].sum() for p in pitches]))


def _visual_class(frames: np.ndarray, recipe) -> int:
    """Class whose grating (any phase) has the most energy in the mean luminance image."""
    img = frames.astype(float).mean(axis=(0, 3))
    img -= img.mean()
    energy = [
        np.sum(img * mini_cremad._grating(recipe, c, 0.0)) ** 2
        + np.sum(img * mini_cremad._grating(recipe, c, np.pi / 2)) ** 2
        for c in range(6)
    ]
    return int(np.argmax(energy))


def test_class_signal_survives_encoding(runs):
    """Informative audio and gratings are recoverable from the written files."""
    root = runs["a"]
    summary = runs["a_summary"]
    recipe = SimpleNamespace(
        frame_size=summary["frame_size"], grating_cycles=summary["grating_cycles"]
    )
    hits_a, hits_v = [], []
    for r in _truth(root):
        label = int(r["label"])
        if r["audio_informative"] == "1":
            wave, _ = sf.read(str(root / "AudioWAV" / f"{r['clip_id']}.wav"))
            hits_a.append(_audio_class(wave) == label)
        if r["visual_informative"] == "1":
            frames = read_frames(root / "VideoFlash" / f"{r['clip_id']}.flv", fps=10, size=None)
            hits_v.append(_visual_class(frames, recipe) == label)
    assert len(hits_a) >= 20 and all(hits_a)
    assert len(hits_v) >= 16 and all(hits_v)


def test_workers_give_identical_output(runs, tmp_path):
    get_generator("cremad")(tmp_path, seed=0, workers=2, **KW)
    for folder in ("AudioWAV", "VideoFlash"):
        fa, fw = _files(runs["a"], folder), _files(tmp_path, folder)
        assert all(p.read_bytes() == q.read_bytes() for p, q in zip(fa, fw, strict=True))


def test_regenerate_replaces_but_never_touches_real_data(tmp_path):
    gen = get_generator("cremad")
    gen(tmp_path / "m", seed=0, **KW)
    (tmp_path / "m" / "AudioWAV" / "1001_DFA_ANG_XX.wav").write_bytes(b"stale")
    gen(tmp_path / "m", seed=1, **KW)  # replaces the previous mini dataset
    assert len(_files(tmp_path / "m", "AudioWAV")) == 24
    real = tmp_path / "real"
    (real / "AudioWAV").mkdir(parents=True)
    (real / "AudioWAV" / "1001_DFA_ANG_XX.wav").write_bytes(b"real data")
    with pytest.raises(FileExistsError, match=str(real)):
        gen(real, seed=0, **KW)
    assert (real / "AudioWAV" / "1001_DFA_ANG_XX.wav").read_bytes() == b"real data"


def test_bad_settings(tmp_path):
    gen = get_generator("cremad")
    with pytest.raises(ValueError, match="clips_per_class"):
        gen(tmp_path, clips_per_class=0, seed=0)
    with pytest.raises(ValueError, match="Nyquist"):
        gen(tmp_path, clips_per_class=1, seed=0, sample_rate=4000)
    with pytest.raises(ValueError, match="flv_audio_codec"):
        gen(tmp_path, clips_per_class=1, seed=0, flv_audio_codec="pcm")
    with pytest.raises(ValueError, match="audio_ambiguous_fraction"):
        gen(tmp_path, clips_per_class=1, seed=0, audio_ambiguous_fraction=1.5)
    assert list(tmp_path.iterdir()) == []  # settings are checked before anything is written
