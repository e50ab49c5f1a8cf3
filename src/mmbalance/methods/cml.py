"""CML: Calibrating Multimodal Learning.

Ma, Zhang, Wu, Fu & Hu, ICML 2023 ("Calibrating Multimodal Learning"). A calibrated
multimodal classifier should not grow *more* confident when a modality is taken away; CML adds a
regulariser that penalises every rise in confidence along a chain of removals, so the model
cannot lean on one modality while the others only add noise.

What it changes in the loop: ``forward`` (the fused prediction after removing one more modality
at a time), ``loss`` (cross-entropy of every prediction in the chain + λ·regulariser),
``on_epoch_start`` (a new random removal order).

Formulas (BalanceBenchmark @4c1482f ``CML_trainer.py``, its ``conf_loss``):

- per epoch, a random order of the modalities; z_0 = the fused logits, z_k = the fused logits with
  the first k modalities of the order removed (their features zeroed: for the concat head the
  code's z − z^m + b/M), k = 1 … M−1;
- Conf(z) = max_c softmax(z)_c per sample;
- L = (1/M)·Σ_k CE(z_k, y) + λ·Σ_{k≥1} max(0, Σ_b [Conf(z_k) − Conf(z_{k−1})]) (a sum over the
  batch inside the hinge, as the code's ``conf_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


@dataclass
class CMLOutput(Output):
    """``Output`` plus the chain of fused logits after removing 1 … M−1 modalities, each [B, C]."""

    chain: list[torch.Tensor] = field(default_factory=list)


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """Max softmax probability per sample, [B]."""
    return torch.softmax(logits.float(), 1).max(1).values


def confidence_penalties(chain: list[torch.Tensor]) -> list[torch.Tensor]:
    """max(0, Σ_b [Conf(z_k) − Conf(z_{k−1})]) for k = 1 … len(chain)−1 (``chain[0]``: all modalities)."""
    conf = [confidence(z) for z in chain]
    return [torch.clamp((conf[k] - conf[k - 1]).sum(), min=0.0) for k in range(1, len(conf))]


def confidence_rise(chain: list[torch.Tensor]) -> torch.Tensor:
    """Mean over samples and removals of max(0, Conf(z_k) − Conf(z_{k−1})) (detached, 0-d)."""
    conf = [confidence(z.detach()) for z in chain]
    return torch.stack([(conf[k] - conf[k - 1]).clamp(min=0.0).mean() for k in range(1, len(conf))]).mean()


def cml_loss(chain: list[torch.Tensor], labels: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/M)·Σ_k CE(z_k, y) + λ·Σ penalties, and the summed penalty (detached)."""
    penalty = sum(confidence_penalties(chain))
    ce = sum(F.cross_entropy(z, labels) for z in chain) / len(chain)
    return ce + lam * penalty, penalty.detach()


@METHODS.register("cml")
class CML(Method):
    """CE along a chain of modality removals + confidence regulariser (see the module docstring)."""

    # mean per-sample confidence gain from removing a modality: at 0 no sample is over-confident
    # without a modality and the hinge (logged as cml_penalty) has nothing to act on; the hinge of
    # the batch sum itself is often 0 while single samples already rise
    acting = {"key": "conf_rise", "noop": 0.0}

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.lam = float(self.cfg.get("lam", 0.1))
        if len(ctx.modalities) < 2:
            raise ValueError(f"cml removes modalities and needs at least two; got {ctx.modalities}")
        self.order: list[str] = list(ctx.modalities)

    def on_epoch_start(self, epoch: int, trainer) -> None:
        """A new random removal order (the code shuffles once per epoch)."""
        mods = trainer.model.modalities
        self.order = [mods[i] for i in torch.randperm(len(mods)).tolist()]

    def forward(self, model, inputs, labels) -> CMLOutput:
        out = model(inputs)
        chain, removed = [], set()
        for m in self.order[:-1]:
            removed.add(m)
            chain.append(model.fuse({k: torch.zeros_like(f) if k in removed else f for k, f in out.features.items()}).logits)
        return CMLOutput(out.logits, out.features, out.unimodal_logits, chain)

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        chain = [out.logits, *out.chain]
        loss, penalty = cml_loss(chain, labels, self.lam)
        self.log(cml_penalty=penalty, conf_rise=confidence_rise(chain))
        return loss
