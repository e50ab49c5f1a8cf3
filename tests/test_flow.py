"""Optical flow, RGB difference, uint8 quantisation and frame-pair decoding (mmbalance.media.flow)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mmbalance.media import MediaError
from mmbalance.media.flow import (
    dequantize,
    optical_flow,
    quantization,
    quantize,
    read_frame_pairs,
    resize_field,
    rgb_difference,
    tvl1_available,
)
from mmbalance.media.video import read_frames


def _texture(size: int = 48, seed: int = 0) -> np.ndarray:
    """Periodic smooth grey texture, float [S, S] with unit std (so np.roll is a clean translation)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    t = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-2 * (np.pi * 2.0) ** 2 * (fx**2 + fy**2))).real
    return t / t.std()


def _pair(dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames of the texture and the texture moved dx px right and dy px down."""
    t = _texture()
    first = np.clip(128 + 40 * t, 0, 255).astype(np.uint8)
    second = np.clip(128 + 40 * np.roll(t, (dy, dx), axis=(0, 1)), 0, 255).astype(np.uint8)
    return np.repeat(first[..., None], 3, axis=2), np.repeat(second[..., None], 3, axis=2)


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -1), (-1, 1)])
def test_farneback_sign_and_magnitude(dx, dy):
    flow = optical_flow(*_pair(dx, dy), algorithm="farneback")
    assert flow.shape == (48, 48, 2) and flow.dtype == np.float32
    inner = flow[8:-8, 8:-8]  # away from the borders
    np.testing.assert_allclose(inner[..., 0].mean(), dx, atol=0.15)
    np.testing.assert_allclose(inner[..., 1].mean(), dy, atol=0.15)


def test_tvl1_sign_and_magnitude():
    if not tvl1_available():
        pytest.skip("cv2.optflow missing: TV-L1 needs opencv-contrib-python-headless")
    flow = optical_flow(*_pair(1, -1), algorithm="tvl1")
    np.testing.assert_allclose(flow[8:-8, 8:-8].mean(axis=(0, 1)), [1.0, -1.0], atol=0.15)


def test_flow_rejects_bad_input():
    a, b = _pair(1, 0)
    with pytest.raises(ValueError, match="unknown flow algorithm 'lk'.*farneback, tvl1"):
        optical_flow(a, b, algorithm="lk")
    with pytest.raises(ValueError, match="differ in size"):
        optical_flow(a, b[:-2])
    assert np.array_equal(optical_flow(a[..., 0], b[..., 0]), optical_flow(a, b))  # grey input works too


def test_quantisation_round_trip_and_clipping():
    q = quantization(20.0)
    assert q == {"offset": 128.0, "scale": 20.0 / 128}
    x = np.linspace(-20, 20 - q["scale"], 1001).astype(np.float32)
    codes, returned = quantize(x, 20.0)
    assert codes.dtype == np.uint8 and returned == q
    back = dequantize(codes, **q)
    assert np.abs(back - x).max() <= q["scale"] / 2 + 1e-6
    zero, _ = quantize(np.zeros(3), 20.0)
    assert (zero == 128).all()  # no motion is stored exactly
    far, _ = quantize(np.array([-100.0, 100.0]), 20.0)
    assert far.tolist() == [0, 255]
    with pytest.raises(ValueError, match="bound"):
        quantization(0.0)


def test_rgb_difference_and_resize_field():
    a = np.full((4, 6, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0] = [255, 0, 100]
    d = rgb_difference(a, b)
    assert d.dtype == np.float32 and d.shape == (4, 6, 3)
    np.testing.assert_allclose(d[0, 0], [155 / 255, -100 / 255, 0.0])
    assert not d[1:].any()
    with pytest.raises(ValueError, match="differ in shape"):
        rgb_difference(a, b[:2])
    field = np.full((40, 60, 2), 3.5, np.float32)
    small = resize_field(field, (10, 12))
    assert small.shape == (10, 12, 2) and np.allclose(small, 3.5)  # vectors are not rescaled
    assert resize_field(field, None) is field


def _write_avi(path: Path, count: int, fps: float = 8.0) -> None:
    """A constant-colour MJPG video whose frame i has grey level 10 * i (identifiable after decoding)."""
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (16, 16))
    for i in range(count):
        writer.write(np.full((16, 16, 3), 10 * i, np.uint8))
    writer.release()


def _levels(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 10)) for f in frames]


def test_read_frame_pairs_keeps_read_frames_choice_and_the_next_frame(tmp_path):
    path = tmp_path / "v.avi"
    _write_avi(path, 20)  # 2.5 s at 8 fps: kept frames 0, 8, 16
    frames, pairs = read_frame_pairs(path, fps=1.0)
    assert frames.shape == (3, 16, 16, 3) and pairs.shape == (3, 2, 16, 16, 3)
    assert _levels(frames) == [0, 8, 16]
    assert [_levels(p) for p in pairs] == [[0, 1], [8, 9], [16, 17]]
    assert np.array_equal(frames, read_frames(path, fps=1.0, size=None))


def test_read_frame_pairs_last_frame_pairs_backwards(tmp_path):
    path = tmp_path / "v.avi"
    _write_avi(path, 17)  # frame 16 is kept and is the last one
    frames, pairs = read_frame_pairs(path, fps=1.0)
    assert _levels(frames) == [0, 8, 16]
    assert _levels(pairs[-1]) == [15, 16]


def test_read_frame_pairs_errors_name_the_file(tmp_path):
    with pytest.raises(MediaError, match="missing.avi: video file does not exist"):
        read_frame_pairs(tmp_path / "missing.avi")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video")
    with pytest.raises(MediaError, match="junk.avi"):
        read_frame_pairs(junk)
    single = tmp_path / "single.avi"
    _write_avi(single, 1)
    with pytest.raises(MediaError, match="single.avi: fewer than 2 decodable"):
        read_frame_pairs(single)
