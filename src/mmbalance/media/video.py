"""Video frame extraction (decode once with PyAV, resize with OpenCV)."""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np

from mmbalance.media.errors import MediaError

__all__ = ["MediaError", "read_frames"]

_TIME_EPS = 1e-6  # a frame stamped 0.9999999 s still belongs to second 1


def read_frames(
    path: Path, fps: float = 1.0, size: tuple[int, int] | int | None = 224
) -> np.ndarray:
    """Keep the first frame of each 1/fps-second interval; returns uint8 [T, H, W, 3] RGB.

    Intervals are found from frame timestamps (like the reference extractor that keeps the
    first frame of each second). size: (height, width), an int for a square, or None to keep
    the native size; resizing uses cv2.INTER_AREA. Raises MediaError naming the path when the
    file is missing, corrupt, has no video stream or no decodable frame.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: video file does not exist")
    frames = _decode_sampled(path, fps)
    if not frames:
        raise MediaError(f"{path}: no decodable video frame")
    if size is not None:
        frames = [_resize(f, size) for f in frames]
    return np.stack(frames)  # [T, H, W, 3]


def _decode_sampled(path: Path, fps: float) -> list[np.ndarray]:
    """Decode the first video stream once; return the first RGB frame [H, W, 3] per interval."""
    kept: list[np.ndarray] = []
    last = -1
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: file has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            for index, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else index / rate
                interval = math.floor(max(t, 0.0) * fps + _TIME_EPS)
                if interval > last:
                    kept.append(frame.to_ndarray(format="rgb24"))
                    last = interval
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot decode video ({err})") from None
    return kept


def _resize(frame: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """Resize [H, W, 3] to size=(height, width) (int -> square) with INTER_AREA."""
    h, w = (size, size) if isinstance(size, int) else size
    if frame.shape[:2] == (h, w):
        return frame
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)  # cv2 takes (width, height)
