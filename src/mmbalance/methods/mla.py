"""MLA: Multimodal Learning with Alternating unimodal adaptation.

Zhang, Latham & Yao, CVPR 2024 ("Multimodal Representation Learning by Alternating Unimodal
Adaptation"). One classifier head is shared by all modalities and trained on one modality at a
time, so no modality can lean on another; the head's gradient for each modality is projected
away from the feature directions of the modalities trained before it (gradient modification), and
at test time the modalities' head outputs are fused with weights from their prediction entropy.

What it changes in the loop: ``modules`` (the shared head), ``forward``/``loss`` (per-modality
CE through the shared head; the model's fusion head is trained on *detached* features, so it
stays a trained linear probe of the encoders and never feeds gradient back into them),
``after_backward`` (gradient modification of the shared head), ``predict`` (entropy fusion).

Formulas (released code ``main.py`` / ``utils/utils.py`` read; paper §3):

- per modality m, L_m = CE(W·h_m + b, y) with h_m the encoder features of m;
- gradient modification (paper, as in OWM): with r = the batch mean of h_m,
  P ← P − (P r)(P r)ᵀ / (α + rᵀ P r) and ∇W ← ∇W · Pᵀ, P = I at the start, one P for all
  modalities and steps, the very first update left unmodified; α = 0.1^(b/n_b + 1) with b the
  batch index in the epoch and n_b the batches per epoch (code). ``projection: code`` reproduces
  the released code instead: P ← P − (k kᵀ) ⊘ (α + k rᵀ) (an element-wise denominator; k = P r),
  then P ← P / ‖P‖_F;
- test (paper, ``fusion_weights: paper``): e_m = −Σ_c p_m,c log p_m,c per sample,
  λ_m = exp(max_k e_k − e_m) / Σ_j exp(max_k e_k − e_j) (= softmax over −e),
  logits = Σ_m λ_m·(W·h_m + b). The released code (main.py ``valid`` with ``--dynamic``,
  ``calculate_entropy``) takes the softmax of the [B, C] logits over the *batch* axis (dim 0)
  and sums −p log p over the whole batch: one weight per modality and test batch
  (``fusion_weights: code``).

The released code's gradient modification never runs: ``GSPlugin.before_update`` is handed the
``nn.Linear`` head, whose parameters are named ``weight``/``bias``, and projects only a parameter
named ``module.weight``. ``gradient_modification: false`` is therefore the released behaviour;
the ``mla__code`` params block runs it with the code's test-time weights.

Steps: the code runs, for every batch, one optimizer step per modality in turn (audio, visual,
[text]). ``schedule: cycle`` (default) keeps that per-batch cycle in the loop's single step: every
modality's loss is used, and the head gradient of each modality is computed on its own (closed
form for the linear head, (softmax − onehot)ᵀ·h / B) and projected with P as updated by the
modalities before it, then summed. ``schedule: alternate`` trains one modality per step
(step t: modality t mod M); then the other encoders get no gradient in that step (so its first
step cannot give every parameter a gradient). Differing feature sizes are first projected to the
largest by one linear layer per modality (method modules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output
from mmbalance.models.backbones import LateBackbone


@dataclass
class MLAOutput(Output):
    """``Output`` plus the shared head's inputs and logits for the modalities trained this step."""

    head_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    head_logits: dict[str, torch.Tensor] = field(default_factory=dict)


def owm_update(P: torch.Tensor, r: torch.Tensor, alpha: float, form: str = "paper") -> torch.Tensor:
    """One projector update with the mean feature ``r`` [D]; ``P`` [D, D] → new P."""
    k = P @ r  # [D]
    if form == "paper":
        return P - torch.outer(k, k) / (alpha + r @ k)
    if form == "code":
        new = P - torch.outer(k, k) / (alpha + torch.outer(k, r))  # the released code's element-wise form
        return new / torch.linalg.matrix_norm(new)
    raise ValueError(f"mla: unknown projection {form!r}; choices: code, paper")


def head_weight_grad(logits: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∂ mean_i CE(W·h_i + b, y_i) / ∂W = (softmax − onehot)ᵀ·h / B, [C, D]."""
    probs = torch.softmax(logits.detach().float(), dim=1)  # [B, C]
    err = probs - F.one_hot(labels, probs.shape[1]).to(probs)
    return err.t() @ inputs.detach().float() / len(labels)


def entropy_weights(logits: torch.Tensor, form: str = "paper") -> torch.Tensor:
    """λ [M, B] from per-modality logits [M, B, C]: softmax over modalities of −entropy.

    ``paper``: the entropy of each sample's class distribution. ``code``: one entropy per modality,
    of the softmax over the batch axis summed over the batch and classes (broadcast to [M, B]).
    """
    if form == "code":
        logp = torch.log_softmax(logits.float(), dim=1)  # softmax over the batch (the code's dim=0)
        entropy = -(logp.exp() * logp).sum(dim=(1, 2))  # [M]
        return torch.softmax(-entropy, dim=0)[:, None].expand(logits.shape[:2])
    if form != "paper":
        raise ValueError(f"mla: unknown fusion_weights {form!r}; choices: code, paper")
    logp = torch.log_softmax(logits.float(), dim=2)
    entropy = -(logp.exp() * logp).sum(2)  # [M, B]
    return torch.softmax(-entropy, dim=0)


@METHODS.register("mla")
class MLA(Method):
    """Shared head trained modality by modality with gradient modification (see the module docstring)."""

    acting = {"key": "owm_shift", "noop": 0.0}  # ‖P − I‖_F of the gradient projector

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.schedule = self.cfg.get("schedule", "cycle")
        if self.schedule not in ("cycle", "alternate"):
            raise ValueError(f"mla: unknown schedule {self.schedule!r}; choices: alternate, cycle")
        self.form = self.cfg.get("projection", "paper")
        if self.form not in ("code", "paper"):
            raise ValueError(f"mla: unknown projection {self.form!r}; choices: code, paper")
        self.modify = bool(self.cfg.get("gradient_modification", True))
        self.fusion_weights = self.cfg.get("fusion_weights", "paper")
        if self.fusion_weights not in ("code", "paper"):
            raise ValueError(f"mla: unknown fusion_weights {self.fusion_weights!r}; choices: code, paper")
        self.head: nn.Linear | None = None
        self.proj: nn.ModuleDict | None = None
        self.P: torch.Tensor | None = None
        self.updates = 0  # projector updates so far (the code's exp_count)
        self.n_batches, self.epoch_step0 = 1, 0

    def modules(self, dims: dict[str, int], num_classes: int) -> dict[str, nn.Module]:
        """The shared head (and per-modality projections to a common size when sizes differ)."""
        size = max(dims.values())
        self.proj = None if len(set(dims.values())) == 1 else nn.ModuleDict({m: nn.Linear(d, size) for m, d in dims.items()})
        self.head = nn.Linear(size, num_classes)
        self.P = torch.eye(size)
        return {"mla_head": self.head, **({"mla_proj": self.proj} if self.proj is not None else {})}

    def _inputs(self, m: str, f: torch.Tensor) -> torch.Tensor:
        return f if self.proj is None else self.proj[m](f)

    def on_epoch_start(self, epoch: int, trainer) -> None:
        self.n_batches = max(1, math.ceil(len(trainer.splits["train"]) / int(trainer.cfg["batch_size"])))
        self.epoch_step0 = self.ctx.step

    def _active(self, mods: list[str]) -> list[str]:
        return list(mods) if self.schedule == "cycle" else [mods[self.ctx.step % len(mods)]]

    def forward(self, model, inputs, labels) -> MLAOutput:
        if self.head is None:
            raise RuntimeError("mla: modules() was not called; add its modules to model.method_modules")
        if not isinstance(model.backbone, LateBackbone):
            # each step trains one modality's encoder alone, called directly: encoders that exchange
            # maps cannot be split, and a backbone's own reading of the frames (TSN, TSM) or levels
            # (CentralNet) would be bypassed
            raise ValueError("mla encodes each modality on its own and needs model.backbone 'late'; "
                             f"got {type(model.backbone).__name__}")
        active = self._active(model.modalities)
        feats = {}
        for m, enc in model.encoders.items():
            with torch.set_grad_enabled(torch.is_grad_enabled() and m in active):
                feats[m] = enc(inputs[m])
        fused = model.fuse({m: f.detach() for m, f in feats.items()})  # trains the fusion head only
        h = {m: self._inputs(m, feats[m]) for m in active}
        return MLAOutput(fused.logits, feats, fused.unimodal_logits, h, {m: self.head(x) for m, x in h.items()})

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        """Σ_{m trained this step} CE(shared head(h_m)) + CE(fusion head on detached features)."""
        losses = {m: F.cross_entropy(l, labels) for m, l in out.head_logits.items()}
        self.log(**{f"loss_{m}": v for m, v in losses.items()})
        return F.cross_entropy(out.logits, labels) + sum(losses.values())

    def after_backward(self, model, out, labels) -> None:
        """Replace ∇W of the shared head by Σ_m (∇W from L_m)·Pᵀ, P updated modality by modality."""
        if not self.modify or not out.head_logits:
            return
        batch = self.ctx.step - self.epoch_step0
        alpha = 0.1 ** (batch / self.n_batches + 1.0)
        self.P = self.P.to(self.head.weight.device)
        total = torch.zeros_like(self.head.weight, dtype=torch.float32)
        for m in out.head_logits:
            g = head_weight_grad(out.head_logits[m], out.head_inputs[m], labels)  # [C, D]
            if self.updates > 0:  # the code leaves the very first update unmodified
                self.P = owm_update(self.P, out.head_inputs[m].detach().float().mean(0), alpha, self.form)
                g = g @ self.P.t()
            self.updates += 1
            total += g
        self.head.weight.grad.copy_(total)
        self.log(owm_shift=torch.linalg.matrix_norm(self.P - torch.eye(len(self.P), device=self.P.device)))

    @torch.no_grad()
    def predict(self, out: Output) -> torch.Tensor:
        """Σ_m λ_m·head(h_m) with entropy weights λ (``fusion_weights``: per sample, or per batch
        as the released code)."""
        logits = torch.stack([self.head(self._inputs(m, f)) for m, f in out.features.items()])  # [M, B, C]
        return (entropy_weights(logits, self.fusion_weights)[:, :, None] * logits.float()).sum(0)

    def state_dict(self) -> dict:
        return {"P": None if self.P is None else self.P.detach().cpu().clone(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if state.get("P") is not None:
            self.P = state["P"].clone()
        self.updates = int(state.get("updates", 0))
