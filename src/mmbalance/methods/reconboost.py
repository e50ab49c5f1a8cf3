"""ReconBoost: alternating boosting-style modality updates with a reconcilement regulariser.

Hua, Xu, Bao, Yang & Huang, "ReconBoost: Boosting Can Achieve Modality Reconcilement", ICML 2024
(code: huacong/ReconBoost ``train.py``, ``models/dynamic_net.py``). The ensemble prediction is
the sum of the modality learners' logits, Σ_m f_m: with an additive fusion (``concat``, ``sum``,
``weight``) f_m is ``out.unimodal_logits[m]`` and the ensemble is the fused logits. Training
alternates stages; the epoch hooks pick the phase:

- warm-up (``warmup_epochs``): Σ_m CE(f_m, y), every learner alone. It stands in for the
  pre-trained unimodal encoders that the code's README loads (``--use_pretrain``).
- boosting (``stage_epochs``, 4 in the README): only the active modality m learns, with
  ℓ_i = −(1/C)·[w1·log p_m(y_i) − w2·q_{−m}(y_i)·log p_m(y_i)], p_m = softmax(f_m) and
  q_{−m} = softmax(Σ_{j≠m} f_j) the fixed (detached) ensemble of the others. This is the code's
  ``boosting_loss``, its form of the paper's KL-based reconcilement regulariser (``.mean(-1)``
  over classes gives the 1/C): the term down-weights samples the other modalities already get
  right, so the learner focuses on what they miss. w1 (``weight1``) is 5 for CREMA-D, 4 for
  AVE; w2 (``weight2``) 1.
- correction (``correct_epochs``, 4 in the README): CE(fused, y) over every parameter, the code's
  global "correct" phase.

Then the next modality (in ``order``, default the model's) becomes active. At every phase change
the optimizer is rebuilt (the code creates a fresh SGD per phase, so momentum restarts; an lr
schedule restarts too). In a boosting phase the loss reaches only the active encoder and the
fusion head (the code's shared ``common_space`` head); the other encoders get no gradient at
all, and the optimizers skip parameters without one (no momentum or weight-decay step), as the
code's phase optimizer over the active learner alone does. Not reproduced: the code's
learnable ``boost_rate`` scalar on the ensemble, and its "GA" MSE term, which compares two
detached tensors and so has no gradient.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method


def boosting_loss(logits: torch.Tensor, others: torch.Tensor, labels: torch.Tensor, weight1: float,
                  weight2: float) -> torch.Tensor:
    """The code's reconcilement loss, batch mean of −(1/C)·(w1 − w2·q_y)·log p_y.

    ``logits``: [B, C] the active learner's f_m; ``others``: [B, C] Σ_{j≠m} f_j (detached here).
    """
    log_p = logits.log_softmax(dim=1)  # [B, C]
    q = others.detach().softmax(dim=1)  # [B, C] ensemble of the other modalities
    target = F.one_hot(labels, logits.shape[1]).to(log_p.dtype)
    per_sample = (-weight1 * target * log_p + weight2 * target * q * log_p).mean(dim=1)  # [B]
    return per_sample.mean()


@METHODS.register("reconboost")
class ReconBoost(Method):
    """Alternating per-modality boosting stages with global correction stages."""

    acting = {"key": "active_*", "noop": 0.0}  # 1 while modality m is the only learner trained

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.w1 = float(self.cfg.get("weight1", 5.0))
        self.w2 = float(self.cfg.get("weight2", 1.0))
        self.warmup = int(self.cfg.get("warmup_epochs", 1))
        self.stage = int(self.cfg.get("stage_epochs", 4))
        self.correct = int(self.cfg.get("correct_epochs", 4))
        if self.stage < 1 or self.correct < 0 or self.warmup < 0:
            raise ValueError(f"method 'reconboost': need stage_epochs ≥ 1, correct_epochs ≥ 0, warmup_epochs ≥ 0; "
                             f"got {self.stage}, {self.correct}, {self.warmup}")
        self.order = list(self.cfg.get("order") or ctx.modalities)
        unknown = [m for m in self.order if m not in ctx.modalities]
        if unknown:
            raise ValueError(f"method 'reconboost': order names {unknown}, not among the modalities {ctx.modalities}")
        self.phase = self.phase_of(0)

    def phase_of(self, epoch: int) -> tuple[str, str | None, int]:
        """(kind, active modality, stage index) for an epoch; kind ∈ warmup, boost, correct."""
        if epoch < self.warmup:
            return "warmup", None, -1
        k = epoch - self.warmup
        stage, r = divmod(k, self.stage + self.correct)
        active = self.order[stage % len(self.order)]
        return ("boost" if r < self.stage else "correct"), active, stage

    def on_epoch_start(self, epoch: int, trainer) -> None:
        phase = self.phase_of(epoch)
        if phase != self.phase:
            self.phase = phase
            trainer.reset_optimizer()

    def loss(self, out, labels) -> torch.Tensor:
        kind, active, _ = self.phase
        self.log(**{f"active_{m}": float(kind == "boost" and m == active) for m in out.unimodal_logits})
        if kind == "warmup":
            return sum(F.cross_entropy(z, labels) for z in out.unimodal_logits.values())
        if kind == "correct":
            return F.cross_entropy(out.logits, labels)
        others = sum(z for m, z in out.unimodal_logits.items() if m != active)
        loss = boosting_loss(out.unimodal_logits[active], others, labels, self.w1, self.w2)
        self.log(boost_loss=float(loss.detach()))
        return loss

    def state_dict(self) -> dict:
        return {"phase": list(self.phase)}

    def load_state_dict(self, state: dict) -> None:
        if "phase" in state:
            self.phase = tuple(state["phase"])
