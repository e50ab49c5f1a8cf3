"""G-Blending: Gradient-Blending with loss weights from overfitting-to-generalisation ratios.

Wang, Tran & Feiszli, CVPR 2020 ("What Makes Training Multi-Modal Classification Networks Hard?").
Each modality gets its own linear head beside the model's fused head, and the training loss is
the weighted sum Σ_k w_k·CE_k over the unimodal heads and the fused head; the weights are
re-estimated every ``super_epoch`` epochs from how much each head generalised versus overfitted.

What it changes in the loop: ``modules`` (one linear head per modality), ``forward``/``loss``
(weighted sum of the heads' cross-entropies), ``on_epoch_start``/``on_epoch_end`` (loss
measurements at super-epoch boundaries and new weights). Evaluation uses the fused head.

Weights (paper §3.2–3.3, recalled from the paper; the formula matches BalanceBenchmark's
``GBlending_trainer.py`` up to the sign handling below). For head k with training loss L^T and
held-out loss L^V measured at the start (N) and end (N+n) of a super-epoch:
O = L^V − L^T (overfitting), ΔG_k = L^V_N − L^V_{N+n} (generalisation gained),
ΔO_k = O_{N+n} − O_N (overfitting gained), w_k = (ΔG_k / ΔO_k²) / Z with Σ_k w_k = 1.
This is the paper's *online* G-Blend: the measurements come from the jointly trained model at
super-epoch boundaries, not from separately trained unimodal models (offline G-Blend).

Choices where the paper leaves room (each stated, none hidden):

- L^V is measured on the ``val`` split (``trainer.batches("val")``): the 10 % of the training
  split held out for model selection doubles as the paper's held-out part of the training set.
- L^T is an evaluation-mode pass over the training split at the boundary (not the running
  training loss, which mixes weights from the whole epoch).
- The first super-epoch has no estimate yet: uniform weights 1/(M+1).
- ΔG_k ≤ 0 (the held-out loss did not fall) gives w_k = 0 (the formula would give a negative
  weight); if every head gets 0 the previous weights stay. ``gain: abs`` takes |ΔG|/ΔO² as
  BalanceBenchmark's ``GBlending_trainer.py`` does (a head whose held-out loss rose then gains
  weight). That code also measures each head on a copy of the model trained ``super_epoch``
  epochs on that head's loss alone (the other modalities zeroed), nearer the paper's offline G-Blend;
  here the heads of the jointly trained model are measured (online).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output

FUSED = "fused"  # key of the model's fused head among the blended heads


@dataclass
class GBOutput(Output):
    """``Output`` plus the method's own unimodal heads' logits, modality → [B, C]."""

    head_logits: dict[str, torch.Tensor] = field(default_factory=dict)


def blend_weights(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]],
                  eps: float = 1e-12, gain: str = "clamp") -> dict[str, float] | None:
    """G-Blend weights w_k ∝ ΔG_k / ΔO_k², normalised to sum 1.

    ``before`` / ``after``: head → (L^T, L^V) at the start / end of the super-epoch.
    ``gain``: ``clamp`` uses max(ΔG_k, 0) (a head whose held-out loss rose gets no weight);
    ``abs`` uses |ΔG_k| as BalanceBenchmark's ``GBlending_trainer.py`` does.
    Returns None when no head generalised (every ΔG_k ≤ 0 under ``clamp``): the caller keeps its weights.
    """
    if gain not in ("clamp", "abs"):
        raise ValueError(f"g_blending: unknown gain {gain!r}; choices: abs, clamp")
    raw = {}
    for k, (lt0, lv0) in before.items():
        lt1, lv1 = after[k]
        g = lv0 - lv1  # ΔG: fall of the held-out loss
        over = (lv1 - lt1) - (lv0 - lt0)  # ΔO: growth of the generalisation gap
        raw[k] = (max(g, 0.0) if gain == "clamp" else abs(g)) / (over * over + eps)
    total = sum(raw.values())
    if not (total > 0 and math.isfinite(total)):
        return None
    return {k: v / total for k, v in raw.items()}


@METHODS.register("g_blending")
class GradientBlending(Method):
    """Σ_k w_k·CE_k over unimodal heads and the fused head, w from online OGR estimates."""

    # max_k |w_k − 1/K|: 0 while the weights are uniform (an unweighted sum of the K losses)
    acting = {"key": "reweight", "noop": 0.0}

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.super_epoch = int(self.cfg.get("super_epoch", 10))
        if self.super_epoch < 1:
            raise ValueError(f"g_blending: super_epoch must be ≥ 1, got {self.super_epoch}")
        keys = [*ctx.modalities, FUSED]
        self.weights: dict[str, float] = {k: 1.0 / len(keys) for k in keys}
        self.before: dict[str, tuple[float, float]] | None = None  # (L^T, L^V) per head
        self.heads: nn.ModuleDict | None = None
        self.gain = self.cfg.get("gain", "clamp")
        if self.gain not in ("clamp", "abs"):
            raise ValueError(f"g_blending: unknown gain {self.gain!r}; choices: abs, clamp")

    def modules(self, dims: dict[str, int], num_classes: int) -> dict[str, nn.Module]:
        """One linear classifier per modality on its encoder features."""
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})
        return {"gb_heads": self.heads}

    def _head_logits(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.heads is None:
            raise RuntimeError("g_blending: modules() was not called; add its modules to model.method_modules")
        return {m: self.heads[m](f) for m, f in features.items()}

    def forward(self, model, inputs, labels) -> GBOutput:
        out = model(inputs)
        return GBOutput(out.logits, out.features, out.unimodal_logits, self._head_logits(out.features))

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        """Σ_m w_m·CE(head_m(φ_m)) + w_fused·CE(fused)."""
        heads = out.head_logits if isinstance(out, GBOutput) and out.head_logits else self._head_logits(out.features)
        loss = self.weights[FUSED] * F.cross_entropy(out.logits, labels)
        for m, logits in heads.items():
            loss = loss + self.weights[m] * F.cross_entropy(logits, labels)
        uniform = 1.0 / len(self.weights)
        self.log(**{f"w_{k}": w for k, w in self.weights.items()},
                 reweight=max(abs(w - uniform) for w in self.weights.values()))
        return loss

    # ---- weight estimation -----------------------------------------------------------------

    @torch.no_grad()
    def head_losses(self, trainer, split: str) -> dict[str, float]:
        """Mean cross-entropy of every head over ``split`` (evaluation mode, no gradient)."""
        model = trainer.model
        was_training = model.training
        model.eval()
        sums, n = {k: 0.0 for k in self.weights}, 0
        for inputs, y in trainer.batches(split):
            out = model(inputs)
            logits = {FUSED: out.logits, **self._head_logits(out.features)}
            for k, l in logits.items():
                sums[k] += float(F.cross_entropy(l.float(), y, reduction="sum"))
            n += len(y)
        model.train(was_training)
        return {k: s / max(n, 1) for k, s in sums.items()}

    def _measure(self, trainer) -> dict[str, tuple[float, float]]:
        if "val" not in trainer.splits:
            raise ValueError("g_blending needs a 'val' split for the held-out loss; the dataset has "
                             f"splits {sorted(trainer.splits)}")
        lt, lv = self.head_losses(trainer, "train"), self.head_losses(trainer, "val")
        return {k: (lt[k], lv[k]) for k in self.weights}

    def on_epoch_start(self, epoch: int, trainer) -> None:
        if self.before is None:  # the first super-epoch's starting point
            self.before = self._measure(trainer)

    def on_epoch_end(self, epoch: int, trainer) -> None:
        """At the end of each super-epoch (when epochs remain): new weights from its two ends."""
        if (epoch + 1) % self.super_epoch or epoch + 1 >= self.ctx.epochs:
            return
        after = self._measure(trainer)
        new = blend_weights(self.before, after, gain=self.gain)
        if new is not None:
            self.weights = new
        self.before = after

    def state_dict(self) -> dict:
        return {"weights": dict(self.weights), "before": self.before}

    def load_state_dict(self, state: dict) -> None:
        self.weights = dict(state.get("weights", self.weights))
        before = state.get("before")
        self.before = None if before is None else {k: tuple(v) for k, v in before.items()}
