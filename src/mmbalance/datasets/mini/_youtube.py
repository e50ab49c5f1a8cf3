"""The draws shared by the mini datasets cut from YouTube videos (AVE, Kinetics-Sounds, VGGSound)."""

from __future__ import annotations

import numpy as np

from mmbalance.datasets.mini._av_synth import LabelPlan, SynthRecipe, build_recipe, plan_labels, youtube_ids

__all__ = ["draw_youtube_clips", "plan_clips"]


def draw_youtube_clips(
    classes: tuple[str, ...], class_list: str, *, max_start_s: int, **plan
) -> tuple[SynthRecipe, np.random.Generator, list[LabelPlan], list[str], list[int]]:
    """The draws of a mini dataset of YouTube clips (Kinetics-Sounds, VGGSound): ``plan_clips(**plan)``
    (recipe and label plan), then from the same generator, in this order (the order fixes the
    written bytes), one YouTube id and one start second in [0, max_start_s] per clip. Returns
    (recipe, rng, plans, ids, starts); the caller draws what else its layout needs from ``rng``.

    Raises ValueError for a ``num_classes`` outside [2, len(classes)] or as ``plan_clips``.
    """
    if not 2 <= plan["num_classes"] <= len(classes):
        raise ValueError(f"num_classes must be in [2, {len(classes)}] for class_list {class_list!r}, "
                         f"got {plan['num_classes']}")
    recipe, rng, plans = plan_clips(**plan)
    ids = youtube_ids(rng, len(plans))
    starts = rng.integers(0, max_start_s + 1, len(plans)).tolist()
    return recipe, rng, plans, ids, starts


def plan_clips(
    *,
    seed: int,
    num_classes: int,
    clips_per_class: int,
    val_fraction: float,
    test_fraction: float,
    duration_s: int,
    audio_ambiguous_fraction: float,
    visual_uninformative_fraction: float,
    signal: dict,
) -> tuple[SynthRecipe, np.random.Generator, list[LabelPlan]]:
    """The recipe of a mini dataset and its label plan, the first draws of ``default_rng(seed)``.
    Returns (recipe, rng, plans); the caller draws the rest from ``rng``. Raises ValueError for
    ``clips_per_class`` < 1 (and as ``build_recipe`` / ``plan_labels`` do)."""
    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
    recipe = build_recipe(seed=seed, num_classes=num_classes, duration_s=duration_s, **signal)
    rng = np.random.default_rng(seed)
    plans = plan_labels(rng, num_classes, clips_per_class, val_fraction, test_fraction,
                        audio_ambiguous_fraction, visual_uninformative_fraction)
    return recipe, rng, plans
