"""ModDrop: fixed-probability modality dropout.

Neverova, Wolf, Taylor & Nebout, "ModDrop: adaptive multi-modal gesture recognition"
(arXiv 2015; TPAMI 2016). During training each modality's features are zeroed per sample with
probability p, never all of a sample's modalities at once, so that the fusion head cannot rely
on one modality alone; evaluation uses every modality. Only the forward pass changes
(``model(inputs, keep=...)``); the loss is the plain fused cross-entropy.

``p`` is the marginal rate: each modality is dropped in a fraction p of the samples. Masks are
drawn i.i.d. Bernoulli(q) per (sample, modality) and rows that would drop everything are drawn
again; q is solved so that after this redraw the per-modality drop rate is exactly p
(for two modalities q = p/(1 − p)). Hence p < (M − 1)/M.
"""

from __future__ import annotations

import torch

from mmbalance.methods.base import METHODS, Method


def marginal_drop_rate(q: float, n: int) -> float:
    """Per-modality drop rate of i.i.d. Bernoulli(q) masks over ``n`` modalities conditioned on
    not dropping all of them: (q − qⁿ)/(1 − qⁿ)."""
    return (q - q**n) / (1.0 - q**n)


def raw_rate(p: float, n: int) -> float:
    """The i.i.d. rate q whose conditioned marginal is ``p`` (bisection; monotone in q)."""
    lo, hi = 0.0, 1.0 - 1e-12
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if marginal_drop_rate(mid, n) < p else (lo, mid)
    return 0.5 * (lo + hi)


def keep_masks(batch: int, modalities: list[str], q: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """{m: [B] 0/1 float} masks, each entry dropped with prob. q, redrawn where a row is all 0."""
    keep = (torch.rand(batch, len(modalities), generator=generator) >= q).float()  # [B, M]
    empty = keep.sum(dim=1) == 0
    while empty.any():
        keep[empty] = (torch.rand(int(empty.sum()), len(modalities), generator=generator) >= q).float()
        empty = keep.sum(dim=1) == 0
    return {m: keep[:, i] for i, m in enumerate(modalities)}


@METHODS.register("moddrop")
class ModDrop(Method):
    """Per-sample feature dropping of whole modalities with marginal probability ``p``."""

    acting = {"key": "dropped_*", "noop": 0.0}  # fraction of the batch whose modality m is dropped

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.p = float(self.cfg.get("p", 0.2))
        n = len(ctx.modalities)
        if n >= 2 and not 0.0 <= self.p < (n - 1) / n:
            raise ValueError(
                f"method 'moddrop': p = {self.p} must lie in [0, {(n - 1) / n:.3f}) for {n} modalities "
                f"({', '.join(ctx.modalities)}): a larger rate cannot hold without dropping every modality")
        self.q = raw_rate(self.p, n) if n >= 2 and self.p > 0 else 0.0

    def forward(self, model, inputs, labels):
        if len(model.modalities) < 2 or self.q == 0.0:
            return model(inputs)
        keep = keep_masks(len(labels), model.modalities, self.q)
        for m, k in keep.items():
            self.log(**{f"dropped_{m}": 1.0 - k.mean()})
        return model(inputs, keep=keep)
