"""Tests for mmbalance.media: spectrogram recipe, tiling, audio/video decoding, errors."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from mmbalance.datasets.mini import get_generator
from mmbalance.media import MediaError
from mmbalance.media.audio import fit_length, load_audio, log_spectrogram, log_stft_magnitude
from mmbalance.media.video import read_frames

SR = 16000


def _fixed_signal(n: int) -> np.ndarray:
    """Deterministic test wave: 440 Hz tone + noise, float64 [n]."""
    t = np.arange(n) / SR
    return 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).normal(size=n)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    """A 6-clip mini CREMA-D (one clip per class), AAC audio track in the .flv."""
    root = tmp_path_factory.mktemp("mini")
    get_generator("cremad")(root, clips_per_class=1, seed=3, show_progress=False)
    return root


def _first(root: Path, folder: str) -> Path:
    return sorted((root / folder).iterdir())[0]


@pytest.mark.parametrize(("n", "frames"), [(48_000, 299), (160_000, 1004)])
def test_spectrogram_shape(n, frames):
    spec = log_spectrogram(_fixed_signal(n))
    assert spec.shape == (257, frames)
    assert spec.dtype == np.float32


def test_spectrogram_matches_scipy_recipe():
    x = _fixed_signal(48_000)
    _, _, s = signal.spectrogram(x, SR, nperseg=512, noverlap=353)  # scipy defaults = recipe
    raw = np.log(s + 1e-7)
    np.testing.assert_allclose(log_spectrogram(x, normalize=False), raw, rtol=1e-5, atol=1e-5)
    z = (raw - raw.mean()) / (raw.std() + 1e-9)
    spec = log_spectrogram(x)
    np.testing.assert_allclose(spec, z, rtol=1e-4, atol=1e-4)
    assert abs(spec.mean()) < 1e-4 and abs(spec.std() - 1) < 1e-4


def test_spectrogram_options():
    x = _fixed_signal(48_000)
    _, _, s = signal.spectrogram(
        x, SR, window="hann", nperseg=512, noverlap=353, scaling="spectrum", mode="magnitude"
    )
    got = log_spectrogram(x, window="hann", scaling="spectrum", mode="magnitude", normalize=False)
    np.testing.assert_allclose(got, np.log(s + 1e-7), rtol=1e-5, atol=1e-5)


def test_log_stft_magnitude_ogm_shape_and_values():
    x = _fixed_signal(66_150)
    got = log_stft_magnitude(x)
    assert got.shape == (257, 188)
    # scipy.signal.stft with zero boundary = librosa's centred, constant-padded STFT / sum(win)
    _, _, z = signal.stft(x, nperseg=512, noverlap=512 - 353, window="hann", detrend=False)
    ref = np.log(np.abs(z) * signal.get_window("hann", 512).sum() + 1e-7)[:, :188]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_fit_length_tiles_then_crops():
    np.testing.assert_array_equal(fit_length(np.array([1, 2, 3]), 7), [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(fit_length(np.arange(10), 4), [0, 1, 2, 3])
    assert fit_length(np.ones(48_000), 48_000).shape == (48_000,)
    with pytest.raises(ValueError):
        fit_length(np.array([]), 5)


def test_load_audio_wav(mini):
    wav = _first(mini, "AudioWAV")
    x = load_audio(wav, SR)
    assert x.dtype == np.float32 and x.ndim == 1
    assert x.shape == (40_000,)  # 2.5 s at 16 kHz, exact for PCM
    assert 0.5 < np.abs(x).max() <= 1.0
    assert load_audio(wav, 22_050).shape == (55_125,)  # resampled 16 k -> 22.05 k


def test_load_audio_stereo_wav_is_downmixed(tmp_path):
    stereo = np.stack([np.full(1600, 0.5), np.full(1600, -0.1)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, SR)
    x = load_audio(tmp_path / "s.wav", SR)
    np.testing.assert_allclose(x, 0.2, atol=1e-3)


def test_load_audio_flv_track(mini):
    flv = _first(mini, "VideoFlash")
    x = load_audio(flv, SR)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size - 40_000) < 0.06 * 40_000  # AAC priming adds ~1-2k samples
    # same waveform as the wav, shifted by the AAC encoder delay (1024 samples)
    ref = load_audio(_first(mini, "AudioWAV"), SR)
    corr = np.corrcoef(ref[:30_000], x[1024:31_024])[0, 1]
    assert corr > 0.9


def test_load_audio_mp3_flv(tmp_path):
    get_generator("cremad")(
        tmp_path, clips_per_class=1, seed=0, flv_audio_codec="mp3", show_progress=False
    )
    x = load_audio(_first(tmp_path, "VideoFlash"), SR)  # MP3 22.05 kHz -> 16 kHz
    assert abs(x.size - 40_000) < 0.06 * 40_000


def test_read_frames_one_per_second(mini):
    flv = _first(mini, "VideoFlash")
    frames = read_frames(flv)  # 1 fps, 224: 2.5-s clip -> frames at t = 0, 1, 2
    assert frames.shape == (3, 224, 224, 3) and frames.dtype == np.uint8
    assert read_frames(flv, fps=1.0, size=None).shape == (3, 32, 32, 3)
    assert read_frames(flv, fps=2.0, size=(48, 64)).shape == (5, 48, 64, 3)
    assert read_frames(flv, fps=10.0, size=None).shape == (25, 32, 32, 3)


def test_read_frames_keeps_first_frame_of_each_second(mini):
    flv = _first(mini, "VideoFlash")
    every = read_frames(flv, fps=10.0, size=None)  # all 25 frames
    np.testing.assert_array_equal(read_frames(flv, fps=1.0, size=None), every[[0, 10, 20]])


def test_corrupt_files_raise_media_error(tmp_path):
    bad = tmp_path / "x.flv"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    for fn in (lambda: read_frames(bad), lambda: load_audio(bad, SR)):
        with pytest.raises(MediaError, match=str(bad)):
            fn()
    bad_wav = tmp_path / "x.wav"
    bad_wav.write_bytes(b"RIFF garbage")
    with pytest.raises(MediaError, match=str(bad_wav)):
        load_audio(bad_wav, SR)
    assert issubclass(MediaError, ValueError)


def test_missing_and_empty_media_raise(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        load_audio(tmp_path / "none.wav", SR)
    with pytest.raises(MediaError, match="does not exist"):
        read_frames(tmp_path / "none.flv")
    sf.write(tmp_path / "empty.wav", np.zeros(0), SR)
    with pytest.raises(MediaError, match="zero samples"):
        load_audio(tmp_path / "empty.wav", SR)


def test_video_without_audio_stream(tmp_path):
    path = tmp_path / "v.flv"
    with av.open(str(path), "w", format="flv") as c:
        s = c.add_stream("flv", rate=10)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for _ in range(5):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), "rgb24")))
        c.mux(s.encode(None))
    with pytest.raises(MediaError, match="no audio stream"):
        load_audio(path, SR)
    assert read_frames(path, size=None).shape == (1, 32, 32, 3)


def _moving_video(path: Path, codec: str, fmt: str, gop: int, n: int = 75, fps: int = 30, **options) -> Path:
    """A moving gradient, ``n`` frames at ``fps``, a key frame every ``gop`` frames."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps, options=options)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        s.gop_size = gop
        y, x = np.mgrid[0:64, 0:64]
        for i in range(n):
            img = np.stack([(x * 4 + i * 3) % 256, (y * 4 + i * 5) % 256, (x + y + i) % 256], -1).astype(np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, "rgb24")))
        c.mux(s.encode(None))
    return path


def _every_frame_reference(path: Path, fps: float) -> list[np.ndarray]:
    """The first frame of each interval with every frame decoded (the rule read_frames keeps)."""
    kept, last = [], -1
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            interval = int(np.floor(frame.time * fps + 1e-6))
            if interval > last:
                kept.append(frame.to_ndarray(format="rgb24"))
                last = interval
    return kept


@pytest.mark.parametrize("codec, fmt, options", [
    ("flv", "flv", {}),  # FLV1, as CREMA-D: P frames only
    ("libx264", "mp4", {"bf": "2", "threads": "1"}),  # B frames: decode order differs from display order
    ("libx264", "mp4", {"bf": "2", "threads": "1", "x264-params": "open-gop=1"}),
])
def test_partial_decode_equals_decoding_every_frame(tmp_path, codec, fmt, options):
    from mmbalance.media import video

    path = _moving_video(tmp_path / f"v.{fmt}", codec, fmt, gop=12, **options)
    for fps in (1.0, 2.0, 7.0, 30.0):
        ours = read_frames(path, fps=fps, size=None)
        ref = _every_frame_reference(path, fps)
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref):
            np.testing.assert_array_equal(a, b)
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
        wanted, runs = video._plan(packets, c.streams.video[0].time_base, 1.0)
    assert len(wanted) == 3 and sum(len(r) for r in runs) < len(packets) / 2  # 1 fps of 30: most groups skipped


def test_partial_decode_falls_back_without_timestamps_plan():
    from mmbalance.media import video

    class P:  # a packet without pts: nothing to plan from
        pts, is_keyframe = None, True

    assert video._plan([P()], None, 1.0) is None
    assert video._plan([], None, 1.0) is None
