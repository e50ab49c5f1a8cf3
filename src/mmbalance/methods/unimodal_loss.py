"""Uni-modal loss: fused cross-entropy plus one cross-entropy per modality's own logits.

The common "uni-modal loss" / multitask baseline of the imbalance papers (e.g. the uniform
baseline of MMPareto, ICML 2024, and the warm-up loss of ARL and GMM-AL). It changes only the
loss: L = CE(z, y) + w·Σ_m CE(z_m, y), so every encoder also receives a gradient from its own
prediction. ``unimodal_head`` picks z_m: ``share`` (default) is the modality's share of the
fused prediction (``out.unimodal_logits[m]``, as ARL and GMM-AL); ``own`` gives each modality a
linear head of its own on its features, as MMPareto's ``code/uniform_baseline.py`` does
(``head_audio`` / ``head_video`` beside the concat ``head``).
"""

from __future__ import annotations

import torch
from torch import nn
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

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.head = self.cfg.get("unimodal_head", "share")
        if self.head not in ("share", "own"):
            raise ValueError(f"method 'unimodal_loss': unknown unimodal_head {self.head!r}; choices: own, share")
        self.heads: nn.ModuleDict | None = None

    def modules(self, dims: dict[str, int], num_classes: int) -> dict[str, nn.Module]:
        """``own``: one linear head per modality on its features [B, D_m] → [B, C]."""
        if self.head != "own":
            return {}
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})
        return {"uni_heads": self.heads}

    def loss(self, out, labels) -> torch.Tensor:
        weight = float(self.cfg.get("weight", 1.0))
        self.log(uni_weight=weight)
        logits = out.unimodal_logits if self.heads is None else {m: self.heads[m](f) for m, f in out.features.items()}
        for m, z in logits.items():
            self.log(**{f"ce_{m}": F.cross_entropy(z.detach(), labels)})
        return unimodal_loss(out.logits, logits, labels, weight)
