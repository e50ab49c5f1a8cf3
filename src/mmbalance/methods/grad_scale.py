"""Fixed encoder-gradient scaling: ARL's motivating experiment (ICCV 2025, Fig. 1 (b) and (c)).

ARL opens with an experiment on CREMA-D: in plain Concat the audio branch is the stronger one,
yet multiplying the audio encoder's gradient by 5 ("a*5"), which should make the imbalance
worse, raises the multimodal accuracy (Fig. 1 (b)); Fig. 1 (c) shows why by ARL's reading: the
scaled run's dependency ratio d_a/d_v (Eq. 4) moves towards the inverse-variance ratio q_a/q_v
(Eq. 17).

What it changes in the loop: after backward, each encoder listed in ``scales`` has its gradient
multiplied by its constant (every other parameter untouched); forward and loss are Concat's.
Every step it also logs ARL's two ratios from the zeroed-feature logits (computed without a
graph, so training is exactly Concat's when ``scales`` is empty), under ARL's own log names
(``arl_d_ratio_<m>``, ``arl_q_ratio_<m>``, m against the reference modality, default the last),
so the report draws Fig. 1 (c) for Concat (``scales: {}``) and for "a*5" side by side.
"""

from __future__ import annotations

import torch

from mmbalance.methods.arl import dependency, inverse_entropy, zeroed_logits
from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


@METHODS.register("grad_scale")
class GradScale(Method):
    """Concat with constant multipliers on chosen encoders' gradients; logs ARL's Eq. 4/17 ratios."""

    acting = {"key": "grad_scale_*", "noop": 1.0}  # encoder gradient multiplier

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.scales = {m: float(s) for m, s in (self.cfg.get("scales") or {}).items()}
        unknown = sorted(set(self.scales) - set(ctx.modalities))
        if unknown:
            raise ValueError(f"method 'grad_scale': scales names {unknown}, not among the modalities {ctx.modalities}")
        if len(ctx.modalities) < 2:
            raise ValueError(f"method 'grad_scale' needs at least 2 modalities, got {ctx.modalities}")
        self.reference = self.cfg.get("reference") or ctx.modalities[-1]
        if self.reference not in ctx.modalities:
            raise ValueError(f"method 'grad_scale': reference {self.reference!r} is not one of {ctx.modalities}")
        self._uni: dict[str, torch.Tensor] = {}

    def forward(self, model, inputs, labels) -> Output:
        out = super().forward(model, inputs, labels)
        self._uni = zeroed_logits(model, out.features, grad=False)  # {m: [B, C]}, no graph
        return out

    def after_backward(self, model, out, labels) -> None:
        for m, s in self.scales.items():
            for p in model.modality_parameters(m):
                if p.grad is not None:
                    p.grad.mul_(s)
        q = {m: inverse_entropy(p) for m, p in self._uni.items()}
        d = {m: dependency(p, labels) for m, p in self._uni.items()}
        r = self.reference
        names, values = [], []
        for m in q:
            if m != r:
                names += [f"arl_d_ratio_{m}", f"arl_q_ratio_{m}"]
                values += [d[m] / d[r].clamp_min(1e-12), q[m] / q[r]]
        self.log(**dict(zip(names, values)), **{f"grad_scale_{m}": self.scales.get(m, 1.0) for m in q})  # kept on the device
