"""Baselines without rebalancing: joint training of a fusion, and unimodal models.

``concat`` (and any fusion chosen with it) trains the fused cross-entropy only, the "plain
fusion" rows of every paper; it logs the discrepancy ratio ρ^m of its modalities (TPAMI Eq. 7;
nothing changes in the step), the baseline curve of the OPM/OGM paper's Fig. 5.
``audio_only`` / ``visual_only`` build the model with a single encoder and train it alone (the
papers' unimodal rows).
"""

from __future__ import annotations

import torch

from mmbalance.methods.base import METHODS, Method, true_class_scores
from mmbalance.methods.ogm_ge import discrepancy_ratios
from mmbalance.models import Output


@METHODS.register("concat")
class Joint(Method):
    """Fused cross-entropy, no modulation; ρ^m of each modality logged per step."""

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        if len(out.unimodal_logits) > 1:  # detached scores: a diagnostic only
            rho = discrepancy_ratios(true_class_scores(out, labels))
            self.log(**{f"rho_{m}": r for m, r in rho.items()})
        return super().loss(out, labels)


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
METHODS.register("video_only")(Unimodal)  # IEMOCAP
METHODS.register("rgb_only")(Unimodal)  # UCF-101
METHODS.register("flow_only")(Unimodal)  # UCF-101
METHODS.register("rgb_diff_only")(Unimodal)  # UCF-101-Three
METHODS.register("depth_only")(Unimodal)  # NVGesture
METHODS.register("image_only")(Unimodal)  # Twitter sarcasm (image + text)
