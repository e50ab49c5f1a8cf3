"""Uni-modal loss: fused cross-entropy plus one cross-entropy per modality's own logits.

The common "uni-modal loss" / multitask baseline of the imbalance papers (e.g. the uniform
baseline of MMPareto, ICML 2024, and the warm-up loss of ARL and GMM-AL). It changes only the
loss: L = CE(z, y) + w·Σ_m CE(z_m, y), with z_m the modality's share of the prediction
(``out.unimodal_logits[m]``), so every encoder also receives a gradient from its own prediction.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method


def unimodal_loss(fused: torch.Tensor, unimodal: dict[str, torch.Tensor], labels: torch.Tensor,
                  weight: float = 1.0) -> torch.Tensor:
    """CE(fused [B, C], y) + weight·Σ_m CE(unimodal[m] [B, C], y), each CE a batch mean."""
    uni = sum(F.cross_entropy(z, labels) for z in unimodal.values())
    return F.cross_entropy(fused, labels) + weight * uni


@METHODS.register("unimodal_loss")
class UnimodalLoss(Method):
    """Fused CE + ``weight`` × Σ_m CE of each modality's logits."""

    acting = {"key": "uni_weight", "noop": 0.0}  # weight 0 is the plain fused CE

    def loss(self, out, labels) -> torch.Tensor:
        weight = float(self.cfg.get("weight", 1.0))
        self.log(uni_weight=weight)
        for m, z in out.unimodal_logits.items():
            self.log(**{f"ce_{m}": float(F.cross_entropy(z.detach(), labels))})
        return unimodal_loss(out.logits, out.unimodal_logits, labels, weight)
