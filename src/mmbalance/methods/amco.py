"""AMCo: Adaptive Mask Co-optimization.

Zhou, Liang, Zheng, Xuan & Kumada, ICASSP 2023 ("Adaptive Mask Co-optimization for Modal
Dependence in Multimodal Learning"). The modality the model depends on is made harder to learn by
masking part of its prediction (an adaptive mask whose size grows on a sine schedule), while the
"co-optimization" keeps a cross-entropy on every modality's own prediction so the dependent
modality does not degrade.

What it changes in the loop: ``modules`` (a C → C linear layer on the fused logits), ``forward``
(class mask on the dependent modalities' logits), ``loss`` (fused CE + every modality's CE; the
dependence test for the next step), ``on_epoch_start`` (schedule and dependence reset),
``predict`` (the linear layer on the fused logits).

Formulas (BalanceBenchmark @4c1482f ``AMCo_trainer.py`` and ``BaseClassifierAMCoModel``; the
paper itself is not open access):

- schedule, per batch b of epoch e (both from 0): p = sin(π/2 · min(ε, l)/ε) with l = b·e/10
  (the code adds e/10 to l after every batch and restarts l at 0 each epoch, so nothing is masked
  in epoch 0 and p reaches 1 after ε·10/e batches); N = ⌊p·C⌋ classes, drawn at random per batch,
  are masked (their logits set to 0);
- a modality m is dependent when its share of the softmax over all modalities' concatenated
  logits, Σ_{b, c} softmax([z^1 … z^M])_{b, (m, c)} / B, exceeds σ·2/M (computed from this step's,
  possibly masked, logits; used from the next step on; reset to "none" at each epoch start). For
  two modalities this is the code's test against σ; for M modalities the threshold is scaled so
  that σ = 0.5 still means "more than an equal share" (the code compares with σ for any M: with
  three modalities and σ 0.5 a modality would need more than half of all the probability mass);
- z^m ← z^m ⊙ mask for dependent m; fused logits ẑ = Linear_{C→C}(Σ_m z^m) (for the additive
  fusions Σ_m z^m is the fused output; any fusion: z − Σ_{m dep} z^m ⊙ (1 − mask));
- L = CE(ẑ, y) + Σ_m CE(z^m, y); at test time ẑ = Linear(z), no mask.

The code's ``U`` option is never read and is not an option here.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


def mask_ratio(batch: int, epoch: int, eps: float) -> float:
    """p = sin(π/2 · min(ε, b·e/10)/ε), the share of classes masked at batch ``batch`` of ``epoch``."""
    level = batch * epoch / 10.0
    return math.sin(math.pi / 2.0 * min(eps, level) / eps)


def class_mask(num_classes: int, masked: int, device=None) -> torch.Tensor:
    """[C] of ones with ``masked`` zeros at random positions."""
    mask = torch.ones(num_classes, device=device)
    mask[torch.randperm(num_classes, device=device)[:masked]] = 0.0
    return mask


def dependence_shares(logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each modality's share of softmax([z^1 … z^M]) over the concatenated [B, M·C] logits, summed
    over its C columns and averaged over the batch (shares sum to 1)."""
    probs = torch.softmax(torch.cat([z.detach().float() for z in logits.values()], 1), 1)
    blocks = probs.split([z.shape[1] for z in logits.values()], dim=1)
    return {m: b.sum(1).mean() for m, b in zip(logits, blocks)}


@METHODS.register("amco")
class AMCo(Method):
    """Class masks on the dependent modality + uni-modal co-optimization (see the module docstring)."""

    acting = {"key": "mask_*", "noop": 0.0}  # share of the modality's classes masked this step

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.sigma, self.eps = float(self.cfg.get("sigma", 0.5)), float(self.cfg.get("eps", 0.3))
        if self.eps <= 0:
            raise ValueError(f"amco: eps must be positive, got {self.eps}")
        self.star: nn.Linear | None = None
        # modality → 0-d 0/1 tensor (kept on the device: no host sync per step); absent = not dependent
        self.dependent: dict[str, torch.Tensor] = {}
        self.batch = 0

    def modules(self, dims: dict[str, int], num_classes: int) -> dict[str, nn.Module]:
        """The C → C layer on the fused logits (the code's ``linear_star``)."""
        self.star = nn.Linear(num_classes, num_classes)
        return {"amco_star": self.star}

    def on_epoch_start(self, epoch: int, trainer) -> None:
        self.dependent, self.batch = {}, 0

    def forward(self, model, inputs, labels) -> Output:
        """Masked fused logits after the C → C layer; the dependent modalities' logits masked."""
        if self.star is None:
            raise RuntimeError("amco: modules() was not called; add its modules to model.method_modules")
        out = model(inputs)
        num_classes = out.logits.shape[1]
        masked = int(mask_ratio(self.batch, self.ctx.epoch, self.eps) * num_classes)
        self.batch += 1
        uni, fused = dict(out.unimodal_logits), out.logits
        if masked:
            drop = 1.0 - class_mask(num_classes, masked, out.logits.device)  # [C], 1 = masked class
            for m, dep in self.dependent.items():
                fused = fused - dep * uni[m] * drop  # dep 0/1: a no-op for modalities not dependent
                uni[m] = uni[m] * (1.0 - dep * drop)
        self.log(**{f"mask_{m}": self.dependent.get(m, torch.zeros(())) * (masked / num_classes) for m in uni})
        return Output(self.star(fused), out.features, uni)

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        """CE(ẑ, y) + Σ_m CE(z^m, y); then the dependence test for the next step."""
        loss = F.cross_entropy(out.logits, labels) + sum(F.cross_entropy(z, labels) for z in out.unimodal_logits.values())
        shares = dependence_shares(out.unimodal_logits)
        threshold = self.sigma * 2.0 / len(shares)  # σ for two modalities (see the module docstring)
        self.dependent = {m: (s > threshold).float() for m, s in shares.items()}
        self.log(**{f"share_{m}": s for m, s in shares.items()})
        return loss

    @torch.no_grad()
    def predict(self, out: Output) -> torch.Tensor:
        """Linear_{C→C}(z), [B, C]."""
        return self.star(out.logits)
