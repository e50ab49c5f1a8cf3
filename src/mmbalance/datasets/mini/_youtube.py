"""The draws shared by the mini datasets of YouTube clips (Kinetics-Sounds, VGGSound)."""

from __future__ import annotations

import numpy as np

from mmbalance.datasets.mini._av_synth import LabelPlan, SynthRecipe, build_recipe, plan_labels, youtube_ids

__all__ = ["draw_youtube_clips"]


def draw_youtube_clips(
    classes: tuple[str, ...],
    class_list: str,
    *,
    seed: int,
    num_classes: int,
    clips_per_class: int,
    val_fraction: float,
    test_fraction: float,
    duration_s: int,
    audio_ambiguous_fraction: float,
    visual_uninformative_fraction: float,
    max_start_s: int,
    signal: dict,
) -> tuple[SynthRecipe, np.random.Generator, list[LabelPlan], list[str], list[int]]:
    """The draws of a mini dataset of YouTube clips (Kinetics-Sounds, VGGSound): its recipe, then
    from ``default_rng(seed)`` in this order (the order fixes the written bytes) the label plan,
    one YouTube id and one start second in [0, max_start_s] per clip. Returns
    (recipe, rng, plans, ids, starts); the caller draws what else its layout needs from ``rng``.

    Raises ValueError for a ``num_classes`` outside [2, len(classes)] or ``clips_per_class`` < 1.
    """
    if not 2 <= num_classes <= len(classes):
        raise ValueError(f"num_classes must be in [2, {len(classes)}] for class_list {class_list!r}, got {num_classes}")
    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
    recipe = build_recipe(seed=seed, num_classes=num_classes, duration_s=duration_s, **signal)
    rng = np.random.default_rng(seed)
    plans = plan_labels(rng, num_classes, clips_per_class, val_fraction, test_fraction,
                        audio_ambiguous_fraction, visual_uninformative_fraction)
    ids = youtube_ids(rng, len(plans))
    starts = rng.integers(0, max_start_s + 1, len(plans)).tolist()
    return recipe, rng, plans, ids, starts
