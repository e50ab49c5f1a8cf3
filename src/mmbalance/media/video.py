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
    """Return the first RGB frame [H, W, 3] of each 1/fps-second interval of the first video stream.

    The packets are read first (demuxing does not decode). Only the groups of pictures that hold
    a kept frame are decoded, each from its key frame: at one frame per second of 30 fps video
    with a key frame every 12 frames, about 9 of 75 frames. The kept frames and their pixels are
    the same as decoding every frame; where the timestamps do not allow the plan (no pts, no key
    frame first, duplicate pts) or a kept frame does not come out of the partial decode, every
    frame is decoded.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: file has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            packets = [p for p in container.demux(stream) if p.size]  # decode order
            kept = _decode_planned(stream, packets, fps)
            if kept is None:
                stream.codec_context.flush_buffers()
                kept, decoded, end_s = _decode_every(stream, packets, fps, rate)
            else:
                decoded, end_s = len(packets), max(p.pts for p in packets) * stream.time_base + 1.0 / rate
            if decoded:
                check_complete(path, container, stream, decoded, float(end_s))
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot decode video ({err})") from None
    return kept


def _interval(t: float, fps: float) -> int:
    """Index of the 1/fps-second interval a frame stamped ``t`` seconds falls in."""
    return math.floor(max(t, 0.0) * fps + _TIME_EPS)


def _decode_every(stream, packets: list, fps: float, rate: float) -> tuple[list[np.ndarray], int, float]:
    """Decode every packet; keep the first frame of each interval in output order.
    Returns (frames, frames decoded, end time in seconds of the last frame)."""
    kept: list[np.ndarray] = []
    last, decoded, t = -1, 0, 0.0
    # one converter for the clip: frame.to_ndarray(format=...) builds a new swscale context for
    # every frame it converts; a shared one gives the same pixels without re-initialising
    to_rgb = VideoReformatter()
    for frame in _frames(stream.codec_context, packets):
        t = frame.time if frame.time is not None else decoded / rate
        decoded += 1
        if _interval(t, fps) > last:
            kept.append(to_rgb.reformat(frame, format="rgb24").to_ndarray())  # [H, W, 3]
            last = _interval(t, fps)
    return kept, decoded, t + 1.0 / rate


def _frames(codec, packets: list):
    """Decode ``packets`` in order and drain the decoder (frames held back for reordering)."""
    for packet in packets:
        yield from codec.decode(packet)
    yield from codec.decode(None)


def _decode_planned(stream, packets: list, fps: float) -> list[np.ndarray] | None:
    """Decode only the groups of pictures that hold a kept frame; None when that cannot be planned
    or a kept frame is missing from the output (the caller then decodes every frame)."""
    plan = _plan(packets, stream.time_base, fps)
    if plan is None:
        return None
    wanted, runs = plan
    codec, to_rgb, got = stream.codec_context, VideoReformatter(), {}
    for run in runs:
        shown = []
        for frame in _frames(codec, run):
            if frame.pts is None:
                return None
            if frame.pts in wanted and frame.pts not in got:
                got[frame.pts] = to_rgb.reformat(frame, format="rgb24").to_ndarray()  # [H, W, 3]
            shown.append(frame.pts)
        codec.flush_buffers()  # the next run starts at a key frame with no reference pictures
        if shown != sorted(shown):
            return None  # frames not output in pts order: the interval rule needs the full decode
    if set(got) != wanted:
        return None
    return [got[pts] for pts in sorted(wanted)]  # [H, W, 3] each, in time order


def _plan(packets: list, time_base, fps: float) -> tuple[set[int], list[list]] | None:
    """(pts of the kept frames, runs of packets to decode) from the packets' timestamps and key
    flags; None when a packet has no pts, two share one, or the first is not a key frame."""
    if not packets or time_base is None or any(p.pts is None for p in packets) or not packets[0].is_keyframe:
        return None
    if len({p.pts for p in packets}) != len(packets):
        return None
    wanted, last = set(), -1
    for pts in sorted(p.pts for p in packets):  # presentation order
        if _interval(float(pts * time_base), fps) > last:
            wanted.add(pts)
            last = _interval(float(pts * time_base), fps)
    starts = [i for i, p in enumerate(packets) if p.is_keyframe] + [len(packets)]
    gops = [packets[a:b] for a, b in zip(starts, starts[1:])]  # groups of pictures, decode order
    need = set()
    for g, gop in enumerate(gops):
        shown = wanted & {p.pts for p in gop}
        need |= {g} if shown else set()
        # a frame shown before its group's key frame (open GOP) may reference the previous group
        if g and shown and min(shown) < gop[0].pts:
            need.add(g - 1)
    runs: list[list] = []
    for g in sorted(need):
        if runs and g - 1 in need:
            runs[-1].extend(gops[g])  # consecutive groups decode as one run
        else:
            runs.append(list(gops[g]))
    return wanted, runs


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
