"""Baselines without rebalancing: joint training of a fusion, and unimodal models.

``concat`` (and any fusion chosen with it) trains the fused cross-entropy only, the "plain
fusion" rows of every paper. ``audio_only`` / ``visual_only`` build the model with a single
encoder and train it alone (the papers' unimodal rows).
"""

from __future__ import annotations

from mmbalance.methods.base import METHODS, Method


@METHODS.register("concat")
class Joint(Method):
    """Fused cross-entropy, no modulation."""


class Unimodal(Method):
    """Train one modality's encoder and a linear head; ``cfg['modality']`` names it."""

    def modalities(self, available: list[str]) -> list[str]:
        modality = self.cfg.get("modality")
        if modality not in available:
            raise ValueError(f"unimodal method needs modality in {available}, got {modality!r}")
        return [modality]


METHODS.register("audio_only")(Unimodal)
METHODS.register("visual_only")(Unimodal)
METHODS.register("text_only")(Unimodal)  # CMU-MOSI
METHODS.register("vision_only")(Unimodal)  # CMU-MOSI
METHODS.register("rgb_only")(Unimodal)  # UCF-101
METHODS.register("flow_only")(Unimodal)  # UCF-101
METHODS.register("rgb_diff_only")(Unimodal)  # UCF-101-Three
