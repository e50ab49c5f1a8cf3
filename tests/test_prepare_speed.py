"""The prepare step's worker set-up and the decoders' shortcuts (no timing: what makes it fast
must not change what it writes).

- pool workers come from a fork server that already imported the decoding modules, and run
  OpenCV single-threaded;
- converting only the kept frames (and, for flow, their partners) to RGB, with one swscale
  context per clip, gives the arrays a per-frame ``to_ndarray`` gives.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import av
import cv2
import numpy as np

from mmbalance.media.flow import read_frame_pairs
from mmbalance.media.video import read_frames
from mmbalance.validate import _chunksize, worker_pool


def _worker_state(_: int) -> tuple[int, bool, bool]:
    """(OpenCV threads, scipy.signal already imported, torch imported) inside a pool worker."""
    return cv2.getNumThreads(), "scipy.signal" in sys.modules, "torch" in sys.modules


def test_workers_are_single_threaded_and_preloaded():
    with worker_pool(2) as pool:
        states = pool.map(_worker_state, range(4), chunksize=1)
    assert all(threads == 1 for threads, _, _ in states)
    assert all(preloaded for _, preloaded, _ in states)  # imported once in the fork server
    assert not any(torch for _, _, torch in states)  # workers never need torch


def test_one_worker_decodes_in_this_process():
    with worker_pool(1) as pool:
        assert pool is None


def test_chunksize_is_small_on_small_sets_and_bounded():
    assert _chunksize(0) == 1 and _chunksize(96) == 3 and _chunksize(100_000) == 8


def _write_video(path: Path, count: int, fps: int = 10, size: tuple[int, int] = (48, 64)) -> None:
    """An mpeg4 video with inter frames (gop 12) whose frame i is a distinct noise image."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.gop_size = 12
        for _ in range(count):
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def _every_frame_rgb(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every decoded frame converted on its own (the plain way) and its time in seconds."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        decoded = [(f.to_ndarray(format="rgb24"), f.time if f.time is not None else i / rate)
                   for i, f in enumerate(container.decode(stream))]
    return [image for image, _ in decoded], [t for _, t in decoded]


def _first_per_second(times: list[float]) -> list[int]:
    kept, last = [], -1
    for i, t in enumerate(times):
        if math.floor(max(t, 0.0) + 1e-6) > last:
            kept.append(i)
            last = math.floor(max(t, 0.0) + 1e-6)
    return kept


def test_read_frames_converts_only_kept_frames_to_the_same_pixels(tmp_path):
    path = tmp_path / "v.avi"
    _write_video(path, 35)
    images, times = _every_frame_rgb(path)
    expected = np.stack([images[i] for i in _first_per_second(times)])
    assert np.array_equal(read_frames(path, fps=1.0, size=None), expected)


def test_read_frame_pairs_gives_the_same_pairs(tmp_path):
    for count in (35, 31):  # 31 frames at 10 fps: the last kept frame (30) is the last one
        path = tmp_path / f"v{count}.avi"
        _write_video(path, count)
        images, times = _every_frame_rgb(path)
        kept = _first_per_second(times)
        partners = [(i, i + 1) if i + 1 < len(images) else (i - 1, i) for i in kept]
        frames, pairs = read_frame_pairs(path, fps=1.0)
        assert np.array_equal(frames, np.stack([images[i] for i in kept]))
        assert np.array_equal(pairs, np.stack([np.stack([images[a], images[b]]) for a, b in partners]))

