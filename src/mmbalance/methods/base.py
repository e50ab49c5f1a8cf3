"""Method plug-ins: the hooks the one training loop calls, and the method registry.

A method customises only these hooks; the loop (``mmbalance.train.loop``) names no method.

- ``modalities(available)``: which modalities the model is built with (unimodal baselines).
- ``forward(model, inputs, labels)``: the forward pass (two-pass probes, feature dropping).
- ``loss(out, labels)``: the training loss.
- ``after_backward(model, out, labels)``: gradient modulation on *unscaled* gradients.
- ``on_epoch_start(epoch)`` / ``on_epoch_end(epoch)``: per-epoch callbacks (refits, resets).
- ``predict(out)``: the test-time logits (default: the fused logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from mmbalance.models import MultimodalModel, Output
from mmbalance.registry import Registry

METHODS: Registry = Registry("method")


@dataclass
class MethodContext:
    """What a method may know about the run."""

    modalities: list[str]
    num_classes: int
    epochs: int
    epoch: int = 0
    step: int = 0
    logs: dict[str, float] = field(default_factory=dict)


class Method:
    """Plain fused cross-entropy training; subclasses override hooks."""

    def __init__(self, cfg: dict, ctx: MethodContext) -> None:
        self.cfg = dict(cfg or {})
        self.ctx = ctx

    def modalities(self, available: list[str]) -> list[str]:
        """Modalities the model is built with (default: all of the dataset's)."""
        return list(available)

    def forward(self, model: MultimodalModel, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> Output:
        """Training forward pass."""
        return model(inputs)

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        """Training loss (a scalar)."""
        return F.cross_entropy(out.logits, labels)

    def after_backward(self, model: MultimodalModel, out: Output, labels: torch.Tensor) -> None:
        """Modify ``.grad`` of parameters after backward, before the optimizer step."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each training epoch."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called after each training epoch."""

    def predict(self, out: Output) -> torch.Tensor:
        """Logits used for evaluation, [B, C]."""
        return out.logits

    def log(self, **values: float) -> None:
        """Record per-step diagnostics; the loop averages them over the epoch."""
        for k, v in values.items():
            self.ctx.logs.setdefault(k, []).append(float(v))

    def state_dict(self) -> dict:
        """Method state to checkpoint (EMA weights, GMM parameters, …)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""


def build_method(name: str, cfg: dict, ctx: MethodContext) -> Method:
    """Instantiate a registered method with its params block."""
    return METHODS.get(name)(cfg, ctx)


def true_class_scores(out: Output, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-modality softmax score of the true class, each [B] (detached)."""
    return {
        m: torch.softmax(logits.detach().float(), dim=1).gather(1, labels[:, None]).squeeze(1)
        for m, logits in out.unimodal_logits.items()
    }
