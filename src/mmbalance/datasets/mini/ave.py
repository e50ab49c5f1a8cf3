"""Mini AVE: a small synthetic dataset in the native AVE layout.

Writes ``AVE/<video_id>.mp4`` (10-s H.264 video + mono AAC track), ``Annotations.txt`` (with its
header), ``trainSet.txt`` / ``valSet.txt`` / ``testSet.txt`` (``Category&VideoID&good&Start&End``,
grouped by category as in the real files) and ``mini_truth.csv`` (per-clip ground truth; not part
of the native layout). Clips use the first ``num_classes`` AVE categories. A fraction of clips
has a partial event span: the class tone and grating are present only inside [Start, End), a
distractor class outside it, so the span cut matters. A few train lines repeat a video id under
another category, as the real trainSet.txt does; the adapter keeps the first.
"""

from __future__ import annotations

from pathlib import Path

from mmbalance.datasets.ave import ANNOTATIONS, CLASSES, SPLIT_FILES, VIDEO_DIR, VIDEO_EXT
from mmbalance.datasets.mini import register_generator
from mmbalance.datasets.mini._av_synth import (
    ClipSpec,
    prepare_root,
    run_jobs,
    summary_of,
    write_clip,
    write_truth,
    youtube_ids,
)
from mmbalance.datasets.mini._youtube import plan_clips

__all__ = ["TRUTH_FILE", "generate_ave"]

TRUTH_FILE = "mini_truth.csv"
_HEADER = "Category&VideoID&Quality&StartTime&EndTime"


@register_generator("ave")
def generate_ave(
    root: Path,
    *,
    clips_per_class: int,
    seed: int,
    num_classes: int = 8,
    val_fraction: float = 0.1,
    test_fraction: float = 0.15,
    partial_span_fraction: float = 0.35,
    distractor_fraction: float = 1.0,
    min_span_s: int = 3,
    duplicate_lines: int = 2,
    duration_s: int = 10,
    audio_ambiguous_fraction: float = 0.06,
    visual_uninformative_fraction: float = 0.2,
    workers: int = 1,
    show_progress: bool = True,
    **signal,
) -> dict:
    """Write a mini AVE under ``root``; return a summary dict.

    ``**signal``: the signal knobs of ``_av_synth.build_recipe`` (its defaults apply).

    Per class: round(test_fraction * clips_per_class) test and round(val_fraction * ...) val
    clips, the rest train; round(partial_span_fraction * clips_per_class) clips (any split)
    have an integer event span of >= ``min_span_s`` s inside [0, duration_s); a share
    ``distractor_fraction`` of them has a random other class outside the span (the rest only
    noise there: background), the others span the whole clip. Signal (see ``_av_synth``): tone at
    ``geomspace(pitch_min_hz, pitch_max_hz, num_classes)[class]`` in white noise at
    ``audio_snr_db``; a grating of amplitude ``visual_grating_amplitude`` (noise-std units) in
    ``frame_size``² frames at ``video_fps``. Exactly round(fraction * clips_per_class) clips per
    class have ambiguous audio (a random class's tone) or no grating. ``duplicate_lines`` train
    lines repeat a video id under another category. Each clip has its own generator seeded with
    (seed, index): the bytes do not depend on ``workers``. A previous mini dataset in ``root``
    (recognised by its truth file) is replaced; real data is never deleted.
    """
    if not 2 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {num_classes}")
    if not 1 <= min_span_s < duration_s:
        raise ValueError(f"min_span_s must be in [1, duration_s), got {min_span_s}")
    recipe, rng, plans = plan_clips(
        seed=seed, num_classes=num_classes, clips_per_class=clips_per_class, val_fraction=val_fraction,
        test_fraction=test_fraction, duration_s=duration_s, audio_ambiguous_fraction=audio_ambiguous_fraction,
        visual_uninformative_fraction=visual_uninformative_fraction, signal=signal,
    )
    if not 0.0 <= distractor_fraction <= 1.0:
        raise ValueError(f"distractor_fraction must be in [0, 1], got {distractor_fraction}")
    specs = _specs(rng, plans, clips_per_class, partial_span_fraction, min_span_s, duration_s, distractor_fraction)
    duplicates = _duplicate_lines(rng, specs, duplicate_lines, num_classes)
    prepare_root(root, TRUTH_FILE, [VIDEO_DIR, ANNOTATIONS, *SPLIT_FILES.values()])
    (Path(root) / VIDEO_DIR).mkdir()
    run_jobs(write_clip, [(Path(root), recipe, s) for s in specs], workers, "mini ave", show_progress)
    _write_lists(Path(root), specs, duplicates)
    write_truth(Path(root) / TRUTH_FILE, specs)
    return _summary(Path(root), recipe, specs, duplicates, clips_per_class)


def _specs(rng, plans, clips_per_class, partial_fraction, min_span_s, duration_s,
           distractor_fraction: float = 1.0) -> list[ClipSpec]:
    """Give every planned clip an id, a file and an event span (+ distractor for partial spans,
    each with probability ``distractor_fraction``; at 1 no extra number is drawn, so the clips
    are those written before the option existed)."""
    num_classes = max(p.label for p in plans) + 1
    partial = [set(rng.choice(clips_per_class, round(partial_fraction * clips_per_class), replace=False).tolist())
               for _ in range(num_classes)]
    ids = youtube_ids(rng, len(plans))
    specs = []
    for i, (plan, vid) in enumerate(zip(plans, ids, strict=True)):
        start, end, distractor = 0, duration_s, -1
        if i % clips_per_class in partial[plan.label]:
            length = int(rng.integers(min_span_s, duration_s))  # [min_span, duration - 1]
            start = int(rng.integers(0, duration_s - length + 1))
            end = start + length
            distractor = int((plan.label + rng.integers(1, num_classes)) % num_classes)  # != label
            if distractor_fraction < 1.0 and rng.random() >= distractor_fraction:
                distractor = -1  # only noise outside the span: background
        specs.append(ClipSpec(
            index=i, clip_id=vid, path=f"{VIDEO_DIR}/{vid}{VIDEO_EXT}", label=plan.label,
            split=plan.split, tone_class=plan.tone_class, audio_informative=plan.audio_informative,
            visual_informative=plan.visual_informative, start_s=float(start), end_s=float(end),
            distractor=distractor,
        ))  # fmt: skip
    return specs


def _duplicate_lines(rng, specs: list[ClipSpec], count: int, num_classes: int) -> list[tuple[ClipSpec, int]]:
    """(train clip, other category) pairs: lines repeating a video id under another class."""
    train = [s for s in specs if s.split == "train"]
    if not 0 <= count <= len(train):
        raise ValueError(f"duplicate_lines must be in [0, {len(train)}], got {count}")
    picks = sorted(rng.choice(len(train), count, replace=False).tolist())
    return [(train[j], int((train[j].label + rng.integers(1, num_classes)) % num_classes)) for j in picks]


def _line(category: int, spec: ClipSpec) -> str:
    """One annotation line (integer seconds, as in the real files)."""
    return f"{CLASSES[category]}&{spec.clip_id}&good&{spec.start_s:g}&{spec.end_s:g}"


def _write_lists(root: Path, specs: list[ClipSpec], duplicates: list[tuple[ClipSpec, int]]) -> None:
    """Split files grouped by category (sorted ids), each duplicate right after its original."""
    extra = {spec.clip_id: category for spec, category in duplicates}
    every = []
    for split, name in SPLIT_FILES.items():
        lines = []
        for spec in sorted((s for s in specs if s.split == split), key=lambda s: (s.label, s.clip_id)):
            lines.append(_line(spec.label, spec))
            if spec.clip_id in extra:
                lines.append(_line(extra[spec.clip_id], spec))
        (root / name).write_text("".join(f"{line}\n" for line in lines))
        every += lines
    (root / ANNOTATIONS).write_text("".join(f"{line}\n" for line in [_HEADER, *every]))


def _summary(root: Path, recipe, specs: list[ClipSpec], duplicates: list, clips_per_class: int) -> dict:
    """Counts and settings of the written dataset (JSON-serialisable)."""
    return {
        "dataset": "ave",
        "root": str(root),
        "num_clips": len(specs),
        "clips_per_class": clips_per_class,
        "split_counts": {s: sum(c.split == s for c in specs) for s in SPLIT_FILES},
        "partial_spans": sum(c.start_s > 0 or c.end_s < recipe.duration_s for c in specs),
        "distractors": sum(c.distractor >= 0 for c in specs),
        "duplicate_lines": len(duplicates),
        "audio_ambiguous": sum(not c.audio_informative for c in specs),
        "visual_uninformative": sum(not c.visual_informative for c in specs),
        **summary_of(recipe),
    }
