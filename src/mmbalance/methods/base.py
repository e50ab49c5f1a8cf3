"""Method plug-ins: the hooks the one training loop calls, and the method registry.

A method customises only these hooks; the loop (``mmbalance.train.loop``) names no method.

- ``modalities(available)``: which modalities the model is built with (unimodal baselines).
- ``forward(model, inputs, labels)``: the forward pass (two-pass probes, feature dropping).
- ``loss(out, labels)``: the training loss.
- ``after_backward(model, out, labels)``: gradient modulation on *unscaled* gradients.
- ``on_epoch_start(epoch, trainer)`` / ``on_epoch_end(epoch, trainer)``: per-epoch callbacks
  (refits over ``trainer.batches("train")``, ``trainer.reset_optimizer()``, re-initialisation).
- ``predict(out)``: the test-time logits (default: the fused logits).
- ``modules(dims, num_classes)``: extra trainable modules the method owns (unimodal heads…);
  they live in ``model.method_modules``, so the optimizer and checkpoints include them.
- ``param_groups(model, cfg)``: optimizer parameter groups (per-modality learning rates…).
- ``optimizer_overrides()``: ``train`` keys replaced for this method's optimizer (e.g. Adam).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
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
    logs: dict[str, list] = field(default_factory=dict)  # per-step values of Method.log, per key
    dataset: str | None = None  # the shard index's dataset name (per-dataset defaults, e.g. ARL's T)


class Method:
    """Plain fused cross-entropy training; subclasses override hooks.

    ``acting`` names the method's distinguishing quantity, the one that shows it does something
    (a modulation coefficient, a drop rate, a loss weight, a learning-rate ratio…): ``key`` is a
    ``log`` key or a glob over keys (``"k_*"``: one series per modality), ``noop`` the value the
    quantity takes when the method changes nothing. A method that logs its quantity at ``noop``
    in every epoch trains as plain fusion under another name (``tests/test_acting.py``); the
    report plots the quantity per epoch. The plain baselines declare none.
    """

    acting: dict | None = None

    def __init__(self, cfg: dict, ctx: MethodContext) -> None:
        self.cfg = dict(cfg or {})
        self.ctx = ctx

    def bind(self, model: MultimodalModel) -> None:
        """Called once the model is built (training and reloading alike): a method that needs a
        model part at test time (e.g. Greedy's fusion head) keeps it here; default nothing."""

    def modalities(self, available: list[str]) -> list[str]:
        """Modalities the model is built with (default: all of the dataset's)."""
        return list(available)

    def forward(self, model: MultimodalModel, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> Output:
        """Training forward pass."""
        return model(inputs)

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        """Training loss (a scalar): the fused cross-entropy, plus that of each classifier the
        model trains beside it (``aux_logits``: CentralNet's multi-objective loss) and the model's
        own loss (``aux_loss``: MWTSIM's cross-modal metric loss)."""
        loss = F.cross_entropy(out.logits, labels)
        if out.aux_logits:
            self.aux_in_loss = True  # the trainer checks this once for a head that relies on it
            loss = loss + sum(F.cross_entropy(z, labels) for z in out.aux_logits.values())
        if out.aux_loss is not None:
            self.aux_in_loss = True
            loss = loss + out.aux_loss(labels)
        return loss

    def after_backward(self, model: MultimodalModel, out: Output, labels: torch.Tensor) -> None:
        """Modify ``.grad`` of parameters after backward, before the optimizer step."""

    def modules(self, dims: dict[str, int], num_classes: int) -> dict[str, nn.Module]:
        """Extra trainable modules (``dims``: feature size per modality); default none."""
        return {}

    def optimizer_overrides(self) -> dict:
        """``train`` keys this method replaces for its optimizer from the first step (e.g. an
        optimizer ablation running Adam); default none."""
        return {}

    def param_groups(self, model: MultimodalModel, cfg: dict) -> list[dict]:
        """Optimizer parameter groups; default one group with every trainable parameter."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def on_epoch_start(self, epoch: int, trainer) -> None:
        """Called before each training epoch with the ``Trainer``."""

    def on_epoch_end(self, epoch: int, trainer) -> None:
        """Called after each training epoch with the ``Trainer``."""

    def predict(self, out: Output) -> torch.Tensor:
        """Logits used for evaluation, [B, C]."""
        return out.logits

    def log(self, **values: float | torch.Tensor) -> None:
        """Record per-step diagnostics; the loop averages them over the epoch (``epoch_means``).

        Tensors are kept, detached, on their device: converting them here would wait for the
        device on every step; numbers are kept as they are."""
        for k, v in values.items():
            self.ctx.logs.setdefault(k, []).append(v.detach() if isinstance(v, torch.Tensor) else v)

    def diagnostics(self) -> dict:
        """End-of-run diagnostics for the report (small and JSON-serialisable: lists, numbers,
        strings), e.g. GMM-AL's gap histogram and fitted mixture; default none."""
        return {}

    def state_dict(self) -> dict:
        """Method state to checkpoint (EMA weights, GMM parameters, …)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""


def epoch_means(logs: dict[str, list]) -> dict[str, float]:
    """Mean of each diagnostic over the epoch's steps (``Method.log`` values: numbers and 0-d or
    1-element tensors), with one device-to-host copy per device for all the tensors together."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for values in logs.values():
        for v in values:
            if isinstance(v, torch.Tensor):
                by_device.setdefault(v.device, []).append(v)
    # float64 keeps a float64 diagnostic (ρ, k) as the Python float it would have been, and a
    # float32 one exactly
    host = {dev: iter(torch.stack([t.reshape(()).double() for t in ts]).cpu().tolist()) for dev, ts in by_device.items()}
    # values are read back in the order they were queued per device: [steps] per key
    return {k: float(np.mean([next(host[v.device]) if isinstance(v, torch.Tensor) else float(v) for v in values]))
            for k, values in logs.items()}


def acting_series(history: list[dict], acting: dict) -> dict[str, list[float]]:
    """Per-epoch values of the series matching ``acting['key']`` (a glob) in a run's history
    (``fit``'s per-epoch rows, whose diagnostics are ``Method.log`` epoch means), by key; epochs
    in which a series was not logged are left out."""
    keys = sorted({k for row in history for k in row if fnmatch.fnmatchcase(k, acting["key"])})
    return {k: [float(row[k]) for row in history if k in row] for k in keys}


def is_acting(series: dict[str, list[float]], noop: float, tol: float = 1e-6) -> bool:
    """True when some logged value of some series differs from ``noop`` by more than ``tol``."""
    return any(abs(v - noop) > tol for values in series.values() for v in values)


def build_method(name: str, cfg: dict, ctx: MethodContext) -> Method:
    """Instantiate a registered method with its params block."""
    return METHODS.get(name)(cfg, ctx)


def true_class_scores(out: Output, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-modality softmax score of the true class, each [B] (detached)."""
    return {
        m: torch.softmax(logits.detach().float(), dim=1).gather(1, labels[:, None]).squeeze(1)
        for m, logits in out.unimodal_logits.items()
    }
