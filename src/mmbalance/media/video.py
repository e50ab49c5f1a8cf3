"""Video frame extraction (decode once with PyAV, resize with OpenCV)."""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from mmbalance.media.errors import MediaError

__all__ = ["MediaError", "check_complete", "read_frames"]

_TIME_EPS = 1e-6  # a frame stamped 0.9999999 s still belongs to second 1
# How far the decoded frames may fall short of the declared length before the file counts as
# truncated: a tenth of it, at least one frame / one second (container metadata is approximate).
_SHORT_FRACTION, _SHORT_FRAMES, _SHORT_S = 0.1, 1, 1.0


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
    last, decoded, t = -1, 0, 0.0
    # one converter for the clip: frame.to_ndarray(format=...) builds a new swscale context for
    # every frame it converts; a shared one gives the same pixels without re-initialising
    to_rgb = VideoReformatter()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: file has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            for index, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else index / rate
                decoded += 1
                interval = math.floor(max(t, 0.0) * fps + _TIME_EPS)
                if interval > last:
                    kept.append(to_rgb.reformat(frame, format="rgb24").to_ndarray())  # [H, W, 3]
                    last = interval
            if decoded:
                check_complete(path, container, stream, decoded, t + 1.0 / rate)
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot decode video ({err})") from None
    return kept


def check_complete(path: Path, container, stream, decoded: int, end_s: float) -> None:
    """Raise MediaError when a video decoded ``decoded`` frames ending at ``end_s`` seconds,
    well short of what the file declares: a truncated file decodes its first part without any
    decoder error. The stream's frame count is used where the container stores one (mp4, avi);
    otherwise (flv) the container's duration (which also covers the audio track)."""
    declared = int(stream.frames or 0)
    if declared > 0:
        if decoded < declared - max(_SHORT_FRAMES, _SHORT_FRACTION * declared):
            raise MediaError(f"{path}: truncated video: {decoded} of the {declared} frames the file declares decode")
        return
    if container.duration:
        duration = container.duration / av.time_base
        if end_s < duration - max(_SHORT_S, _SHORT_FRACTION * duration):
            raise MediaError(f"{path}: truncated video: frames decode up to {end_s:.2f} s of the {duration:.2f} s "
                             "the file declares")


def _resize(frame: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """Resize [H, W, 3] to size=(height, width) (int -> square) with INTER_AREA."""
    h, w = (size, size) if isinstance(size, int) else size
    if frame.shape[:2] == (h, w):
        return frame
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)  # cv2 takes (width, height)
