"""UMT: Uni-Modal Teacher.

Du, Teng, Li, Liu, Yuan, Wang, Yuan & Zhao, ICML 2023 ("On Uni-Modal Feature Learning in
Supervised Multi-Modal Learning"; first as "Improving Multi-Modal Learning with Uni-Modal
Teachers", arXiv 2106.11059). Joint training leaves each encoder's uni-modal features
under-learned ("modality laziness"); UMT trains one uni-modal model per modality first and then
trains the multimodal model with the fused cross-entropy plus a distillation loss that pulls each
encoder's features towards its uni-modal teacher's.

What it changes in the loop: ``on_epoch_start`` of the first epoch trains the teachers (one per
modality, inside the run: a copy of the model's initial encoder and a linear head, trained alone
with the run's optimizer settings on the training split, the epoch with the best validation
accuracy kept); ``forward`` adds the frozen teachers' features; ``loss`` adds the distillation.

Formulas (BalanceBenchmark @4c1482f ``UMT_trainer.py``, which loads its ``unimodalTrainer`` checkpoints as
teachers):

- L = CE(z, y) + λ · Σ_m MSE(φ^m, φ̂^m), φ^m [B, D_m] the student encoder's features, φ̂^m the
  teacher's (no gradient), MSE the mean over batch and feature entries; λ = ``weight``.

The teachers are the run's own unimodal baselines in miniature: the same encoder architecture and
initial weights as the student's encoder (the run's seed), trained for ``teacher_epochs`` epochs
(default: the run's epochs), so nothing is downloaded and the teachers are part of the method's
checkpointed state. They are used in evaluation mode (fixed batch-norm statistics). Under DDP each
rank trains its teachers on the whole training split.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output
from mmbalance.models.backbones import LateBackbone


@dataclass
class UMTOutput(Output):
    """``Output`` plus the frozen teachers' features of the batch, modality → [B, D_m]."""

    teacher_features: dict[str, torch.Tensor] = field(default_factory=dict)


def distillation_losses(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MSE(φ^m, φ̂^m) per modality: mean squared difference over the [B, D_m] entries."""
    return {m: F.mse_loss(student[m].float(), teacher[m].float()) for m in student}


@torch.no_grad()
def accuracy(encoder: nn.Module, head: nn.Module, trainer, split: str, modality: str) -> float:
    """Accuracy of head(encoder(x^m)) over a split (evaluation mode)."""
    encoder.eval(), head.eval()
    correct = total = 0
    for inputs, y in trainer.batches(split):
        with trainer.rt.autocast():
            pred = head(encoder(inputs[modality])).argmax(1)
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)


def train_teacher(encoder: nn.Module, head: nn.Module, trainer, modality: str, epochs: int) -> tuple[dict, float | None]:
    """Train encoder + head on ``modality`` alone with the run's optimizer settings (``train``
    block); returns the encoder state of the epoch with the best validation accuracy (the last
    epoch without a validation split) and that accuracy."""
    from mmbalance.train.loop import build_optimizer, build_scheduler  # the loop imports the methods

    opt = build_optimizer([*encoder.parameters(), *head.parameters()], trainer.cfg)
    sched = build_scheduler(opt, trainer.cfg)
    best, best_acc = None, None
    for _ in range(epochs):
        encoder.train(), head.train()
        for inputs, y in trainer.batches("train", train=True):
            opt.zero_grad(set_to_none=True)
            with trainer.rt.autocast():
                loss = F.cross_entropy(head(encoder(inputs[modality])), y)
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
        acc = accuracy(encoder, head, trainer, "val", modality) if "val" in trainer.splits else None
        if best is None or acc is None or acc > best_acc:
            best, best_acc = copy.deepcopy(encoder.state_dict()), acc
    return best, best_acc


def frozen(module: nn.Module) -> nn.Module:
    """``module`` in evaluation mode without trainable parameters."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


@METHODS.register("umt")
class UMT(Method):
    """Fused CE + λ·Σ_m MSE to uni-modal teachers trained in the run (see the module docstring)."""

    acting = {"key": "distill_*", "noop": 0.0}  # MSE to the teacher's features: 0 = nothing to pull

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.weight = float(self.cfg.get("weight", 10.0))
        epochs = self.cfg.get("teacher_epochs")
        self.teacher_epochs = int(ctx.epochs if epochs is None else epochs)
        if self.teacher_epochs < 1:
            raise ValueError(f"umt: teacher_epochs must be at least 1 (or null: the run's epochs), got {epochs}")
        self.teachers: dict[str, nn.Module] = {}
        self.teacher_acc: dict[str, float | None] = {}
        self._saved: dict[str, dict] = {}  # teacher states restored before the teachers are rebuilt

    def on_epoch_start(self, epoch: int, trainer) -> None:
        """Train the teachers once, before the first epoch of a run that has none."""
        if self.teachers or self._saved:
            return
        model = trainer.model
        if not isinstance(model.backbone, LateBackbone):
            # the teachers are copies of the encoders, called on their own
            raise ValueError(f"umt trains each modality's encoder alone as a teacher and needs model.backbone 'late'; "
                             f"got {type(model.backbone).__name__}")
        for m in model.modalities:
            encoder = copy.deepcopy(model.encoders[m])
            head = nn.Linear(model.feature_dims[m], self.ctx.num_classes).to(next(encoder.parameters()).device)
            state, acc = train_teacher(encoder, head, trainer, m, self.teacher_epochs)
            encoder.load_state_dict(state)
            self.teachers[m], self.teacher_acc[m] = frozen(encoder), acc

    def _teachers_for(self, model) -> dict[str, nn.Module]:
        """The teachers; after ``load_state_dict`` they are rebuilt from the model's encoders."""
        if not self.teachers and self._saved:
            for m, state in self._saved.items():
                encoder = copy.deepcopy(model.encoders[m])
                encoder.load_state_dict(state)
                self.teachers[m] = frozen(encoder)
            self._saved = {}
        if not self.teachers:
            raise RuntimeError("umt: no teachers; on_epoch_start trains them before the first epoch")
        return self.teachers

    def forward(self, model, inputs, labels) -> UMTOutput:
        out = model(inputs)
        with torch.no_grad():
            teacher = {m: t(inputs[m]) for m, t in self._teachers_for(model).items()}  # [B, D_m] each
        return UMTOutput(out.logits, out.features, out.unimodal_logits, teacher)

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        """CE(z, y) + λ·Σ_m MSE(φ^m, φ̂^m)."""
        distill = distillation_losses(out.features, out.teacher_features)
        self.log(**{f"distill_{m}": v.detach() for m, v in distill.items()})
        return F.cross_entropy(out.logits, labels) + self.weight * sum(distill.values())

    def diagnostics(self) -> dict:
        return {"teacher_val_acc": dict(self.teacher_acc)}

    def state_dict(self) -> dict:
        teachers = {m: {k: v.detach().cpu().clone() for k, v in t.state_dict().items()} for m, t in self.teachers.items()}
        return {"teachers": teachers or self._saved, "teacher_acc": dict(self.teacher_acc)}

    def load_state_dict(self, state: dict) -> None:
        self.teachers, self._saved = {}, dict(state.get("teachers", {}))
        self.teacher_acc = dict(state.get("teacher_acc", {}))
