"""What the YouTube-clip datasets share (Kinetics-Sounds, VGGSound): one 10-s mp4 per clip, whose
audio track and frames are the two modalities, decoded the same way for both."""

from __future__ import annotations

import numpy as np

from mmbalance.datasets.base import Clip, DatasetAdapter
from mmbalance.media.audio import audio_features
from mmbalance.media.video import read_frames

__all__ = ["YoutubeClipAdapter"]


class YoutubeClipAdapter(DatasetAdapter):
    """Base of the adapters whose clip is one mp4 (``clip.paths["video"]``) with an audio track.

    The model sees 3 of the clip's 1-fps frames, uniformly spaced (TPAMI §4.2; the ARL code
    also uses 3). Subclasses provide ``name``, ``classes`` and ``scan``.
    """

    modalities = ("audio", "visual")
    kinds = {"audio": "spectrogram", "visual": "frames"}
    frames_per_clip = 3

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """Audio track → log-spectrogram [257, 1004] (10 s); 1-fps frames → [T, H, W, 3] uint8.

        A file without an audio stream raises MediaError (the clip is skipped and listed).
        """
        video = clip.paths["video"]
        return {
            "audio": audio_features(video, recipe),
            "visual": read_frames(video, fps=recipe["frame_fps"], size=recipe["frame_size"]),
        }
