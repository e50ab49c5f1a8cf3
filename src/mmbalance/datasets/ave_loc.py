"""AVE event localisation: the native AVE layout read as the supervised localisation task.

Same files as the ``ave`` adapter (``<root>/AVE/<video_id>.mp4``, ``Annotations.txt``, the
official trainSet/valSet/testSet.txt); what differs is the task (Tian et al., ECCV 2018, the
OPM/OGM paper's Table 7): a 10-s video is 10 one-second segments, and every segment is labelled
with the video's event category when it lies inside the annotated span [StartTime, EndTime) and
with *background* otherwise, so there are 28 + 1 classes and the metric is segment accuracy.

Stored per clip: the whole 10-s audio as one log-spectrogram [257, 1004] (the model cuts it into
the segments' columns), one frame per segment at 1 fps [10, H, W, 3] (the reference pipelines
take VGG-19 features of a frame of each second), and the per-segment labels [10] as ``targets``.
"""

from __future__ import annotations

import numpy as np

from mmbalance.datasets.ave import CLASSES as EVENT_CLASSES
from mmbalance.datasets.ave import Ave, EventClip
from mmbalance.datasets.base import Clip, register_dataset
from mmbalance.media import MediaError
from mmbalance.media.audio import audio_features
from mmbalance.media.video import read_frames

__all__ = ["BACKGROUND", "CLASSES", "SEGMENTS", "AveLocalisation", "segment_labels"]

BACKGROUND = "background"
CLASSES = (*EVENT_CLASSES, BACKGROUND)  # background last: index 28, as in the reference code
SEGMENTS = 10  # one-second segments of a 10-s video


def segment_labels(label: int, start_s: float, end_s: float, segments: int = SEGMENTS) -> np.ndarray:
    """[segments] int64: ``label`` for the segments [t, t+1) whose centre lies in [start_s,
    end_s), the background index for the others (annotations are whole seconds in the released
    files, where centre and whole-segment tests agree)."""
    centres = np.arange(segments) + 0.5
    inside = (centres >= start_s) & (centres < end_s)
    return np.where(inside, label, len(CLASSES) - 1).astype(np.int64)


@register_dataset("ave_loc")
class AveLocalisation(Ave):
    """The AVE layout as segment-level event localisation (classes: the 28 events + background)."""

    name = "ave_loc"
    classes = CLASSES
    frames_per_clip = SEGMENTS  # every stored frame: one per segment, in order
    segments = SEGMENTS

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """Whole-clip audio → log-spectrogram [257, 1004] (``clip_seconds`` 10); the first frame
        of each second → [10, H, W, 3] uint8. A video shorter than 10 frames at ``frame_fps``
        is a MediaError naming it (its segments would have no frame)."""
        video = clip.paths["video"]
        fps = float(recipe["frame_fps"])
        frames = read_frames(video, fps=fps, size=recipe["frame_size"])  # [T_all, H, W, 3]
        per_segment = int(round(fps))  # frames sampled per one-second segment
        if per_segment < 1 or frames.shape[0] < SEGMENTS * per_segment:
            raise MediaError(f"{video}: {frames.shape[0]} frames at {fps:g} fps; event localisation needs a frame "
                             f"in each of the {SEGMENTS} one-second segments (frame_fps >= 1, a 10-s video)")
        return {"audio": audio_features(video, recipe), "visual": frames[: SEGMENTS * per_segment : per_segment]}

    def targets(self, clip: Clip) -> np.ndarray:
        """Per-segment labels [10] of the clip's annotated span (``segment_labels``)."""
        start, end = (clip.start_s, clip.end_s) if isinstance(clip, EventClip) else (0.0, float(SEGMENTS))
        return segment_labels(clip.label, start, end)
