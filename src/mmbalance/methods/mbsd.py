"""MBSD: modality-balanced self-distillation, as BalanceBenchmark implements it.

Liu et al., 2023, as listed and implemented by BalanceBenchmark ("BalanceBenchmark: A Survey for
Multimodal Imbalance Learning", arXiv 2502.10816, §3, an "objective" method; toolkit @4c1482f
``balancemm/trainer/MBSD_trainer.py``). Every modality gets its own cross-entropy, and on samples
that at least one of two modalities classifies correctly, the two modalities' predictions are
pulled together with a weight equal to their gap in true-class probability: the modality that
is behind on a sample it could learn learns from the one ahead.

What it changes in the loop: ``loss`` only.

Formulas (``MBSD_trainer.py``, two-modality branch), for a pair of modalities (i, j) with
logits z^i, z^j [B, C] (the modalities' shares of the fused logits, ``out.unimodal_logits``) and
true-class probabilities t^i = softmax(z^i)[y], t^j = softmax(z^j)[y]:

- w = |t^i − t^j| on samples where argmax z^i = y or argmax z^j = y, else 0;
- RS = (1/C)·Σ_c (z^i_c − z^j_c)² (squared distance of the logits);
- KL = F.kl_div(p_s, p_w) with p_s = max(t^i, t^j), p_w = min(t^i, t^j), i.e. the code's
  p_w·(log p_w − p_s) on the true-class probabilities;
- L = CE(z, y) + Σ_m CE(z^m, y) + mean_pairs[ mean_b(w·RS) + mean_b(w·KL) ].

As in the code, w, p_s and p_w are not detached. With more than two modalities the code averages
the terms over the three pairs (and measures RS between probabilities there); here every number of
modalities averages over all pairs with the two-modality RS on logits.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


def pair_terms(z_i: torch.Tensor, z_j: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample w, RS and KL of one modality pair (logits [B, C] each) → each [B]."""
    p_i, p_j = torch.softmax(z_i.float(), 1), torch.softmax(z_j.float(), 1)
    t_i, t_j = p_i.gather(1, labels[:, None]).squeeze(1), p_j.gather(1, labels[:, None]).squeeze(1)
    either = (p_i.argmax(1) == labels) | (p_j.argmax(1) == labels)
    strong, weak = torch.maximum(t_i, t_j), torch.minimum(t_i, t_j)
    return {
        "w": (strong - weak) * either,
        "rs": (z_i.float() - z_j.float()).pow(2).mean(1),
        "kl": F.kl_div(strong, weak, reduction="none"),  # the code's call: weak·(log weak − strong)
    }


def mbsd_regulariser(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mean over modality pairs of mean_b(w·RS) + mean_b(w·KL), and the mean weight w."""
    pairs = [pair_terms(logits[a], logits[b], labels) for a, b in combinations(logits, 2)]
    reg = sum((t["w"] * t["rs"]).mean() + (t["w"] * t["kl"]).mean() for t in pairs) / len(pairs)
    return reg, sum(t["w"].detach().mean() for t in pairs) / len(pairs)


@METHODS.register("mbsd")
class MBSD(Method):
    """Fused CE + uni-modal CEs + gap-weighted prediction alignment (see the module docstring)."""

    acting = {"key": "sd_weight", "noop": 0.0}  # mean pair weight w: 0 = nothing distilled

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        if len(ctx.modalities) < 2:
            raise ValueError(f"mbsd aligns pairs of modalities and needs at least two; got {ctx.modalities}")

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        uni = out.unimodal_logits
        reg, weight = mbsd_regulariser(uni, labels)
        self.log(sd_weight=weight, sd_term=reg.detach())
        return F.cross_entropy(out.logits, labels) + sum(F.cross_entropy(z, labels) for z in uni.values()) + reg
