"""Mini Kinetics-Sounds: a small synthetic dataset in the split/class folder layout.

Writes ``<split>/<class>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (10-s H.264 video + mono AAC
track) for the first ``num_classes`` classes of the chosen class list, and ``mini_truth.csv``
(per-clip ground truth; not part of the layout). A ``val`` folder is written only when
``val_fraction`` > 0 (otherwise the adapter holds validation out of train). ``no_audio_clips``
train clips are written without an audio track, as some downloaded Kinetics files are: the
prepare step skips them with the decoder's reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmbalance.datasets.kinetics_sounds import DEFAULT_CLASS_LIST, VIDEO_EXT, get_class_list
from mmbalance.datasets.base import SPLITS
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

__all__ = ["TRUTH_FILE", "generate_kinetics_sounds"]

TRUTH_FILE = "mini_truth.csv"
_MAX_START_S = 600  # clip start times drawn in [0, 600] s of the (imaginary) source video


@register_generator("kinetics_sounds")
def generate_kinetics_sounds(
    root: Path,
    *,
    clips_per_class: int,
    seed: int,
    num_classes: int = 8,
    class_list: str = DEFAULT_CLASS_LIST,
    val_fraction: float = 0.1,
    test_fraction: float = 0.15,
    no_audio_clips: int = 2,
    duration_s: int = 10,
    audio_ambiguous_fraction: float = 0.06,
    visual_uninformative_fraction: float = 0.2,
    workers: int = 1,
    show_progress: bool = True,
    **signal,
) -> dict:
    """Write a mini Kinetics-Sounds under ``root``; return a summary dict.

    ``**signal``: the signal knobs of ``_av_synth.build_recipe`` (its defaults apply).

    Per class: round(test_fraction * clips_per_class) test and round(val_fraction * ...) val
    clips, the rest train. Signal as in the mini AVE (``_av_synth``) with the class present for
    the whole clip: tone at ``geomspace(pitch_min_hz, pitch_max_hz, num_classes)[class]`` in white
    noise at ``audio_snr_db``, a grating of amplitude ``visual_grating_amplitude`` in
    ``frame_size``² frames at ``video_fps``; exactly round(fraction * clips_per_class) clips per
    class have ambiguous audio or no grating. Deterministic for a seed whatever ``workers``; a
    previous mini dataset in ``root`` (recognised by its truth file) is replaced, real data is
    never deleted.
    """
    classes = get_class_list(class_list)
    recipe, rng, plans, ids, starts = draw_youtube_clips(
        classes, class_list, seed=seed, num_classes=num_classes, clips_per_class=clips_per_class,
        val_fraction=val_fraction, test_fraction=test_fraction, duration_s=duration_s,
        audio_ambiguous_fraction=audio_ambiguous_fraction,
        visual_uninformative_fraction=visual_uninformative_fraction, max_start_s=_MAX_START_S, signal=signal,
    )
    silent = _silent(rng, plans, no_audio_clips)
    specs = []
    for i, (plan, vid, start) in enumerate(zip(plans, ids, starts, strict=True)):
        clip_id = f"{vid}_{start:06d}_{start + duration_s:06d}"
        specs.append(ClipSpec(
            index=i, clip_id=clip_id, path=f"{plan.split}/{classes[plan.label]}/{clip_id}{VIDEO_EXT}",
            label=plan.label, split=plan.split, tone_class=plan.tone_class,
            audio_informative=plan.audio_informative, visual_informative=plan.visual_informative,
            start_s=0.0, end_s=float(duration_s), distractor=-1, has_audio=i not in silent,
        ))  # fmt: skip
    prepare_root(root, TRUTH_FILE, SPLITS)
    run_jobs(write_clip, [(Path(root), recipe, s) for s in specs], workers, "mini kinetics_sounds", show_progress)
    write_truth(Path(root) / TRUTH_FILE, specs)
    return {
        "dataset": "kinetics_sounds",
        "root": str(root),
        "class_list": class_list,
        "classes": list(classes[:num_classes]),
        "num_clips": len(specs),
        "clips_per_class": clips_per_class,
        "split_counts": {s: sum(c.split == s for c in specs) for s in SPLITS},
        "no_audio": sum(not c.has_audio for c in specs),
        "audio_ambiguous": sum(not c.audio_informative for c in specs),
        "visual_uninformative": sum(not c.visual_informative for c in specs),
        **summary_of(recipe),
    }


def _silent(rng: np.random.Generator, plans: list, count: int) -> set[int]:
    """Indices of ``count`` train clips to write without an audio track."""
    train = [i for i, p in enumerate(plans) if p.split == "train"]
    if not 0 <= count <= len(train):
        raise ValueError(f"no_audio_clips must be in [0, {len(train)}], got {count}")
    return set(rng.choice(train, count, replace=False).tolist())
