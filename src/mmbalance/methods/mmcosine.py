"""MMCosine: multi-modal cosine loss.

Xu, Feng, Zhang & Hu, ICASSP 2023 ("MMCosine: Multi-Modal Cosine Loss Towards Balanced
Audio-Visual Fine-Grained Learning"). Each modality's logit for class k is the cosine between
its L2-normalised features and its L2-normalised class weight, times a shared scale s; the fused
logits are their sum. A modality can then no longer dominate the sum through the norm of its
features or weights, only through the angle.

What it changes in the loop: ``modules`` (one bias-free class-weight matrix per modality),
``forward`` (the fusion head on detached features), ``loss`` (CE of the cosine logits),
``predict`` (the cosine logits).

Formulas (released code ``main_CD.py`` @214797c, ``--mmcosine True``; BalanceBenchmark @4c1482f
``MMCosine_trainer.py``):

- z^m_k = s · ⟨φ^m / ‖φ^m‖, w^m_k / ‖w^m_k‖⟩ for features φ^m [B, D_m] and weights W^m [C, D_m];
- z = Σ_m z^m (no bias), loss CE(z, y).

The code takes W^m as the concat head's column block of modality m; here each modality owns its
weight matrix (the same parameters, without reading the fusion head's weights). The model's own
fusion head is trained on *detached* features, as a linear probe: it gives the loop's per-modality
probe accuracies and never sends gradient into the encoders.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


def cosine_logits(features: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """s·cos(φ^m, w^m_k) per modality: features [B, D_m], weights [C, D_m] → [B, C] each."""
    return {m: scale * F.normalize(f.float(), dim=1) @ F.normalize(weights[m].float(), dim=1).t()
            for m, f in features.items()}


def rescale_factors(features: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], labels: torch.Tensor,
                    scale: float) -> dict[str, torch.Tensor]:
    """Batch mean of s / (‖φ^m_i‖·‖w^m_{y_i}‖): the factor by which the normalisation scales each
    sample's true-class logit w·φ (1 = the cosine logit equals the plain linear logit)."""
    out = {}
    for m, f in features.items():
        norms = f.detach().float().norm(dim=1) * weights[m].detach().float().norm(dim=1)[labels]  # [B]
        out[m] = (scale / norms.clamp(min=1e-12)).mean()
    return out


@METHODS.register("mmcosine")
class MMCosine(Method):
    """Sum of per-modality scaled cosine logits (see the module docstring)."""

    acting = {"key": "rescale_*", "noop": 1.0}  # s/(‖φ‖‖w_y‖): 1 when normalising changes nothing

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.scale = float(self.cfg.get("scale", 10.0))
        if self.scale <= 0:
            raise ValueError(f"mmcosine: scale must be positive, got {self.scale}")
        self.weights: nn.ParameterDict | None = None

    def modules(self, dims: dict[str, int], num_classes: int) -> dict[str, nn.Module]:
        """One class-weight matrix W^m [C, D_m] per modality (a bias-free linear layer's init)."""
        self.weights = nn.ParameterDict({m: nn.Linear(d, num_classes, bias=False).weight for m, d in dims.items()})
        return {"cosine_weights": self.weights}

    def _logits(self, out: Output) -> dict[str, torch.Tensor]:
        if self.weights is None:
            raise RuntimeError("mmcosine: modules() was not called; add its modules to model.method_modules")
        return cosine_logits(out.features, dict(self.weights.items()), self.scale)

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        """CE(Σ_m z^m, y) + CE of the fusion head on detached features (the probe)."""
        logits = self._logits(out)
        weights = dict(self.weights.items())
        self.log(**{f"rescale_{m}": v for m, v in rescale_factors(out.features, weights, labels, self.scale).items()})
        # out.logits: the fusion head on detached features (``forward``), a probe of the encoders
        return F.cross_entropy(sum(logits.values()), labels) + F.cross_entropy(out.logits, labels)

    def forward(self, model, inputs, labels) -> Output:
        """The encoders' features, and the fusion head's logits on their detached copies."""
        feats = model.encode(inputs)
        probe = model.fuse({m: f.detach() for m, f in feats.items()})
        return Output(probe.logits, feats, probe.unimodal_logits)

    @torch.no_grad()
    def predict(self, out: Output) -> torch.Tensor:
        """Σ_m s·cos(φ^m, w^m_k), [B, C]."""
        return sum(self._logits(out).values())
