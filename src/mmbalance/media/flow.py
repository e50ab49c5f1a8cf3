"""Motion features from decoded video: optical flow, RGB differences and their uint8 storage.

Pure functions, no dataset knowledge. ``read_frame_pairs`` decodes a video once and returns the
frame kept at each 1/fps-second step (the same rule as ``mmbalance.media.video.read_frames``)
together with the decoded frame that follows it; ``optical_flow`` computes the dense flow of
such a pair with OpenCV, Farneback (``cv2.calcOpticalFlowFarneback``, main module) or TV-L1
(``cv2.optflow.DualTVL1OpticalFlow_create``, opencv-contrib: the algorithm of the usual
UCF-101 flow dumps, ~100x slower); ``rgb_difference`` gives the frame difference of a pair.

Storage: a float field x is kept as uint8 ``q = clip(round(128 + x / scale), 0, 255)`` with
``scale = bound / 128``, so zero is exactly 128 and ``x ≈ (q - 128) * scale`` for
``-bound <= x < bound`` (values beyond are clipped, as the common ±20-px flow dumps do).
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from mmbalance.media.errors import MediaError
from mmbalance.media.video import check_complete

__all__ = [
    "FLOW_ALGORITHMS",
    "QUANT_OFFSET",
    "dequantize",
    "optical_flow",
    "quantization",
    "quantize",
    "read_frame_pairs",
    "resize_field",
    "rgb_difference",
    "tvl1_available",
]

FLOW_ALGORITHMS = ("farneback", "tvl1")
QUANT_OFFSET = 128.0  # uint8 code of zero
_TIME_EPS = 1e-6  # a frame stamped 0.9999999 s still belongs to second 1 (as read_frames)
# Farneback settings of OpenCV's own sample (pyramid scale 0.5, 3 levels, 15-px window,
# 3 iterations, 5-px polynomial neighbourhood, sigma 1.2): the common default in flow dumps.
_FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2, "flags": 0}


def tvl1_available() -> bool:
    """True when OpenCV's contrib module with TV-L1 (``cv2.optflow``) is installed."""
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def _grey(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W] luminance of an RGB [H, W, 3] frame (a grey [H, W] frame passes through)."""
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an RGB [H, W, 3] or grey [H, W] frame, got shape {frame.shape}")


def optical_flow(first: np.ndarray, second: np.ndarray, algorithm: str = "farneback") -> np.ndarray:
    """Dense flow from ``first`` to ``second`` (uint8 RGB [H, W, 3] or grey [H, W]).

    Returns float32 [H, W, 2] = (u, v) in pixels: the content at (x, y) in ``first`` is at
    (x + u, y + v) in ``second`` (u > 0: moving right, v > 0: moving down). ``algorithm``:
    "farneback" or "tvl1" (needs opencv-contrib; raises RuntimeError saying so when missing).
    """
    a, b = _grey(first), _grey(second)
    if a.shape != b.shape:
        raise ValueError(f"frames differ in size: {a.shape} vs {b.shape}")
    if algorithm == "farneback":
        p = _FARNEBACK
        flow = cv2.calcOpticalFlowFarneback(a, b, None, p["pyr_scale"], p["levels"], p["winsize"],
                                            p["iterations"], p["poly_n"], p["poly_sigma"], p["flags"])
    elif algorithm == "tvl1":
        if not tvl1_available():
            raise RuntimeError("flow_algorithm 'tvl1' needs cv2.optflow: install opencv-contrib-python-headless "
                               "instead of opencv-python-headless")
        flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None)
    else:
        raise ValueError(f"unknown flow algorithm {algorithm!r}; choices: {', '.join(FLOW_ALGORITHMS)}")
    return flow.astype(np.float32, copy=False)


def rgb_difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(second - first) / 255 per pixel and channel: float32 [H, W, C] in [-1, 1]."""
    if first.shape != second.shape:
        raise ValueError(f"frames differ in shape: {first.shape} vs {second.shape}")
    return (second.astype(np.float32) - first.astype(np.float32)) / 255.0


def quantization(bound: float) -> dict[str, float]:
    """The ``{"offset", "scale"}`` that maps a stored uint8 code back: x = (q - offset) * scale."""
    if not bound > 0:
        raise ValueError(f"quantisation bound must be > 0, got {bound}")
    return {"offset": QUANT_OFFSET, "scale": float(bound) / 128.0}


def quantize(x: np.ndarray, bound: float) -> tuple[np.ndarray, dict[str, float]]:
    """float field → (uint8 codes of the same shape, ``quantization(bound)``); |x| ≥ bound clips."""
    q = quantization(bound)
    codes = np.clip(np.rint(q["offset"] + np.asarray(x, dtype=np.float64) / q["scale"]), 0, 255)
    return codes.astype(np.uint8), q


def dequantize(codes: np.ndarray, offset: float, scale: float) -> np.ndarray:
    """uint8 codes → float32 values, (q - offset) * scale (what the training loader does)."""
    return ((codes.astype(np.float32) - np.float32(offset)) * np.float32(scale)).astype(np.float32)


def resize_field(field: np.ndarray, size: tuple[int, int] | int | None) -> np.ndarray:
    """Resize an [H, W, C] array (any C, uint8 frames or float fields) to size=(height, width)
    (int → square, None → unchanged) with INTER_AREA, as ``read_frames`` resizes; values are
    not rescaled (flow stays in pixels of the decoded frame)."""
    if size is None:
        return field
    h, w = (size, size) if isinstance(size, int) else size
    if field.shape[:2] == (h, w):
        return field
    out = np.stack([cv2.resize(np.ascontiguousarray(field[..., c]), (w, h), interpolation=cv2.INTER_AREA)
                    for c in range(field.shape[2])], axis=-1)  # per channel: cv2 caps channels at 4
    return out.astype(field.dtype, copy=False)


def read_frame_pairs(path: Path, fps: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``path`` once; return (frames [T, H, W, 3], pairs [T, 2, H, W, 3]), uint8 RGB, native size.

    ``frames[t]`` is the first frame of the t-th 1/fps-second interval (``read_frames``' rule,
    so the same frames); ``pairs[t]`` = (frames[t], the next decoded frame), the pair whose
    flow / difference stands for time t. When frames[t] is the video's last frame, its pair is
    (previous frame, last frame), so every kept time has a forward pair. Raises MediaError
    naming the path when the file is missing, corrupt, has no video stream or fewer than two
    decodable frames.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: video file does not exist")
    frames: list[np.ndarray] = []
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    last, prev, before_prev = -1, None, None  # [frame, its RGB array or None] of the last two decoded
    to_rgb = VideoReformatter()  # one swscale context for the clip (see media.video)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: file has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            decoded, t = 0, 0.0
            for index, frame in enumerate(container.decode(stream)):
                # only kept frames, their successors and the last two frames are converted to RGB
                current = [frame, None]
                if len(pairs) < len(frames):  # the previous frame was kept: this one follows it
                    pairs.append((_rgb(prev, to_rgb), _rgb(current, to_rgb)))
                t = frame.time if frame.time is not None else index / rate
                interval = math.floor(max(t, 0.0) * fps + _TIME_EPS)
                if interval > last:
                    frames.append(_rgb(current, to_rgb))
                    last = interval
                before_prev, prev = prev, current
                decoded += 1
            if decoded:
                check_complete(path, container, stream, decoded, t + 1.0 / rate)
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot decode video ({err})") from None
    if before_prev is None:
        raise MediaError(f"{path}: fewer than 2 decodable video frames (flow needs a frame pair)")
    if len(pairs) < len(frames):  # the last kept frame is the video's last frame
        pairs.append((_rgb(before_prev, to_rgb), _rgb(prev, to_rgb)))
    return np.stack(frames), np.stack([np.stack(p) for p in pairs])


def _rgb(slot: list, to_rgb: VideoReformatter) -> np.ndarray:
    """The RGB array [H, W, 3] of ``slot`` = [decoded frame, array or None], converted once."""
    if slot[1] is None:
        slot[1] = to_rgb.reformat(slot[0], format="rgb24").to_ndarray()
    return slot[1]
