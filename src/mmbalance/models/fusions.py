"""Fusion registry: per-modality features → fused logits and per-modality logits."""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.registry import Registry

FUSIONS: Registry = Registry("fusion")


class Fusion(nn.Module):
    """Base class. ``forward(features)`` returns (fused [B, C], {modality: [B, C]})."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = list(dims)
        self.dims = dict(dims)
        self.num_classes = num_classes

    def zeroed_estimate(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-modality logits by zeroing every other modality's features (for non-linear heads)."""
        out = {}
        for m in self.modalities:
            only = {k: v if k == m else torch.zeros_like(v) for k, v in features.items()}
            out[m] = self.fuse(only)
        return out

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    """One linear layer over the concatenated features.

    Its logits decompose exactly: W·[φ_1; …; φ_M] + b = Σ_m (W_m·φ_m + b/M), so each modality's
    share W_m·φ_m + b/M is its unimodal logit (the split used by OGM-GE, GMM-AL and others).
    """

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.head = nn.Linear(sum(dims.values()), num_classes)

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([features[m] for m in self.modalities], dim=1))

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        fused = self.fuse(features)
        weights = self.head.weight.split([self.dims[m] for m in self.modalities], dim=1)  # [C, D_m] each
        share = self.head.bias / len(self.modalities)
        uni = {m: features[m] @ w.t() + share for m, w in zip(self.modalities, weights)}
        return fused, uni
