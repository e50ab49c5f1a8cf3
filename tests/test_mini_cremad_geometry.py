"""The mini CREMA-D generator at a non-square frame geometry (the full-size option)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
import yaml

from mmbalance.datasets.mini import get_generator
from mmbalance.profiles import deep_merge

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "fullsize.yaml"


def test_non_square_frames_and_fps(tmp_path):
    """frame_width x frame_height at video_fps reach the .flv; the summary records them."""
    summary = get_generator("cremad")(tmp_path, clips_per_class=1, seed=0, show_progress=False,
                                      frame_width=64, frame_height=48, video_fps=30, duration_s=0.5)
    assert (summary["frame_width"], summary["frame_height"]) == (64, 48)
    flv = sorted((tmp_path / "VideoFlash").iterdir())[0]
    with av.open(str(flv)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert float(stream.average_rate) == 30
    assert len(frames) == 15 and frames[0].shape == (48, 64, 3)


def test_odd_geometry_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="frame_height"):
        get_generator("cremad")(tmp_path, clips_per_class=1, seed=0, show_progress=False, frame_height=45)


def test_fullsize_profile_selects_cremad_geometry():
    """The profile merges into params.yaml's generate block with CREMA-D's real geometry."""
    base = yaml.safe_load((PROFILE.parents[1] / "params.yaml").read_text())
    merged = deep_merge(base, yaml.safe_load(PROFILE.read_text()))
    gen = merged["generate"]["cremad"]
    assert (gen["frame_width"], gen["frame_height"], gen["video_fps"]) == (480, 360, 30)
    assert gen["sample_rate"] == 16000 and 6 * gen["clips_per_class"] >= 7000
    assert merged["generate"]["mosi"] == base["generate"]["mosi"]  # other datasets untouched
