"""Mini AVE for event localisation: the mini AVE generator with background outside the spans.

The same native layout as the mini ``ave`` (``AVE/<video_id>.mp4``, ``Annotations.txt``, the
three split files, ``mini_truth.csv``), read by the ``ave_loc`` adapter. What localisation needs
differs in the defaults: most clips have a partial event span, and outside it there is only noise
(the background segments) unless ``distractor_fraction`` asks for another class's tone and
grating there.
"""

from __future__ import annotations

from pathlib import Path

from mmbalance.datasets.mini import register_generator
from mmbalance.datasets.mini.ave import generate_ave

__all__ = ["generate_ave_loc"]


@register_generator("ave_loc")
def generate_ave_loc(root: Path, *, partial_span_fraction: float = 0.7, distractor_fraction: float = 0.0,
                     min_span_s: int = 2, **options) -> dict:
    """Write a mini AVE for localisation under ``root`` (``generate_ave``'s options; see there)."""
    summary = generate_ave(root, partial_span_fraction=partial_span_fraction, distractor_fraction=distractor_fraction,
                           min_span_s=min_span_s, **options)
    return {**summary, "dataset": "ave_loc"}
