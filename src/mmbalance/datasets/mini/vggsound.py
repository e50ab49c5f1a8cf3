"""Mini VGGSound: a small synthetic dataset in the VGGSound release layout.

Writes ``vggsound.csv`` (``youtube_id,start_seconds,label,split`` rows, no header, sorted by
YouTube id as the release is; labels with commas quoted), ``video/<youtube_id>_<start:06d>.mp4``
(10-s H.264 video + mono AAC track) for the first ``num_classes`` classes of the chosen class
list, and ``mini_truth.csv`` (per-clip ground truth of the written clips; not part of the layout).
As in every real copy, some csv rows have no clip (``missing_videos`` train rows: videos taken
off YouTube) and ``no_audio_clips`` train clips carry no audio track; the adapter and the
prepare step skip and list both.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mmbalance.datasets.mini import register_generator
from mmbalance.datasets.mini._av_synth import (
    ClipSpec,
    prepare_root,
    run_jobs,
    summary_of,
    write_clip,
    write_truth,
)
from mmbalance.datasets.mini._youtube import draw_youtube_clips
from mmbalance.datasets.vggsound import CSV_FILE, DEFAULT_CLASS_LIST, VIDEO_DIR, VIDEO_EXT, clip_id, get_class_list

__all__ = ["TRUTH_FILE", "generate_vggsound"]

TRUTH_FILE = "mini_truth.csv"
_MAX_START_S = 600  # clip start times drawn in [0, 600] s of the (imaginary) source video


@register_generator("vggsound")
def generate_vggsound(
    root: Path,
    *,
    clips_per_class: int,
    seed: int,
    num_classes: int = 8,
    class_list: str = DEFAULT_CLASS_LIST,
    test_fraction: float = 0.15,
    missing_videos: int = 3,
    no_audio_clips: int = 2,
    duration_s: int = 10,
    audio_ambiguous_fraction: float = 0.06,
    visual_uninformative_fraction: float = 0.2,
    workers: int = 1,
    show_progress: bool = True,
    **signal,
) -> dict:
    """Write a mini VGGSound under ``root``; return a summary dict.

    ``**signal``: the signal knobs of ``_av_synth.build_recipe`` (its defaults apply).

    Per class: round(test_fraction * clips_per_class) test rows, the rest train (the csv has no
    validation split; the adapter holds one out of train). Signal as in the mini Kinetics-Sounds
    (``_av_synth``), the class present for the whole clip: tone at
    ``geomspace(pitch_min_hz, pitch_max_hz, num_classes)[class]`` in white noise at
    ``audio_snr_db``, a grating of amplitude ``visual_grating_amplitude`` in ``frame_size``²
    frames at ``video_fps``; exactly round(fraction * clips_per_class) clips per class have
    ambiguous audio or no grating. Deterministic for a seed whatever ``workers``; a previous mini
    dataset in ``root`` (recognised by its truth file) is replaced, real data is never deleted.
    """
    classes = get_class_list(class_list)
    recipe, rng, plans, ids, starts = draw_youtube_clips(
        classes, class_list, seed=seed, num_classes=num_classes, clips_per_class=clips_per_class,
        val_fraction=0.0, test_fraction=test_fraction, duration_s=duration_s,
        audio_ambiguous_fraction=audio_ambiguous_fraction,
        visual_uninformative_fraction=visual_uninformative_fraction, max_start_s=_MAX_START_S, signal=signal,
    )
    missing, silent = _train_picks(rng, plans, missing_videos, no_audio_clips)
    specs = []
    for i, (plan, vid, start) in enumerate(zip(plans, ids, starts, strict=True)):
        cid = clip_id(vid, start)
        specs.append(ClipSpec(
            index=i, clip_id=cid, path=f"{VIDEO_DIR}/{cid}{VIDEO_EXT}", label=plan.label, split=plan.split,
            tone_class=plan.tone_class, audio_informative=plan.audio_informative,
            visual_informative=plan.visual_informative, start_s=0.0, end_s=float(duration_s),
            distractor=-1, has_audio=i not in silent,
        ))  # fmt: skip
    written = [s for s in specs if s.index not in missing]
    prepare_root(root, TRUTH_FILE, (VIDEO_DIR, CSV_FILE))
    run_jobs(write_clip, [(Path(root), recipe, s) for s in written], workers, "mini vggsound", show_progress)
    _write_csv(Path(root) / CSV_FILE, specs, classes)
    write_truth(Path(root) / TRUTH_FILE, written)
    return {
        "dataset": "vggsound",
        "root": str(root),
        "class_list": class_list,
        "classes": list(classes[:num_classes]),
        "num_rows": len(specs),
        "num_clips": len(written),
        "clips_per_class": clips_per_class,
        "split_counts": {s: sum(c.split == s for c in specs) for s in ("train", "test")},
        "missing_videos": len(missing),
        "no_audio": sum(not c.has_audio for c in written),
        "audio_ambiguous": sum(not c.audio_informative for c in specs),
        "visual_uninformative": sum(not c.visual_informative for c in specs),
        **summary_of(recipe),
    }


def _train_picks(rng: np.random.Generator, plans: list, missing: int, silent: int) -> tuple[set[int], set[int]]:
    """Disjoint sets of train clip indices: ``missing`` rows without a video, ``silent`` clips
    without an audio track."""
    train = [i for i, p in enumerate(plans) if p.split == "train"]
    if missing < 0 or silent < 0 or missing + silent > len(train):
        raise ValueError(f"missing_videos + no_audio_clips must be in [0, {len(train)}], got {missing} + {silent}")
    picked = rng.choice(train, missing + silent, replace=False).tolist()
    return set(picked[:missing]), set(picked[missing:])


def _write_csv(path: Path, specs: list[ClipSpec], classes: tuple[str, ...]) -> None:
    """One ``youtube_id,start_seconds,label,split`` row per clip (unpadded start, as released),
    sorted by (YouTube id, start)."""
    rows = sorted((s.clip_id[:11], int(s.clip_id[12:]), classes[s.label], s.split) for s in specs)
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
