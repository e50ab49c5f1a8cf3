"""The one training loop. It names no method: every method-specific step is a hook call.

Per step: ``method.forward`` → ``method.loss`` → backward → ``method.after_backward`` (gradients
are unscaled there) → finiteness check → optimizer step. Per epoch: ``method.on_epoch_start`` /
``on_epoch_end`` receive the ``Trainer`` (model, optimizer reset, data access for refits).
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from mmbalance.evaluate import classification_metrics, per_class_accuracy, probe_accuracy
from mmbalance.methods import Method
from mmbalance.models import MultimodalModel
from mmbalance.train.data import SplitData, batches


class NonFiniteError(RuntimeError):
    """Raised when the loss or a gradient stops being finite."""


def build_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """SGD (the papers' choice; the imbalance needs it), Adam or AdamW from the ``train`` block.

    ``params``: parameters or param-group dicts (a group may carry its own ``lr``).
    """
    name, lr, wd = cfg.get("optimizer", "sgd"), float(cfg["lr"]), float(cfg.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg.get("momentum", 0.9)), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; choices: adam, adamw, sgd")


def build_scheduler(opt: torch.optim.Optimizer, cfg: dict):
    """StepLR when ``lr_step`` > 0, else a constant learning rate."""
    step = int(cfg.get("lr_step", 0))
    if step > 0:
        return torch.optim.lr_scheduler.StepLR(opt, step_size=step, gamma=float(cfg.get("lr_gamma", 0.1)))
    return None


class Trainer:
    """State of one run, handed to the epoch hooks: model, optimizer, data and evaluation."""

    def __init__(self, model: MultimodalModel, method: Method, splits: dict[str, SplitData], cfg: dict, seed: int, name: str) -> None:
        self.model, self.method, self.splits, self.cfg, self.name = model, method, splits, cfg, name
        self.gen = torch.Generator().manual_seed(seed)
        self.reset_optimizer(**method.optimizer_overrides())

    def reset_optimizer(self, **overrides) -> None:
        """A fresh optimizer (and schedule) over the method's parameter groups; ``overrides``
        replace ``train`` keys (e.g. ``optimizer="adam"``) for the new one."""
        cfg = {**self.cfg, **overrides}
        groups = self.method.param_groups(self.model, cfg)
        self.optimizer = build_optimizer(groups, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)

    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit: weights, optimizer, schedule, RNGs, method."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "method": self.method.state_dict(),
            "ctx_step": self.method.ctx.step,
            "rng": {"loader": self.gen.get_state(), "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(), "python": random.getstate()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"])
        self.method.ctx.step = state["ctx_step"]
        rng = state["rng"]
        self.gen.set_state(rng["loader"])
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])

    def batches(self, split: str, train: bool = False):
        """(inputs, labels) over a split; ``train=True`` shuffles and samples training frames."""
        gen = self.gen if train else torch.Generator().manual_seed(0)
        return batches(self.splits[split], int(self.cfg["batch_size"]), train, gen)

    @torch.no_grad()
    def evaluate(self, split: str) -> dict:
        """Metrics of the method's test-time prediction plus each modality's probe accuracy."""
        self.model.eval()
        logits, uni, labels = [], {m: [] for m in self.model.modalities}, []
        for inputs, y in self.batches(split):
            out = self.model(inputs)
            logits.append(self.method.predict(out).float())
            for m in uni:
                uni[m].append(out.unimodal_logits[m].float())
            labels.append(y)
        all_logits, y_t = torch.cat(logits), torch.cat(labels)
        metrics = classification_metrics(all_logits.numpy(), y_t.numpy(), self.method.ctx.num_classes)
        metrics["loss"] = float(F.cross_entropy(all_logits, y_t))
        uni_np = {m: torch.cat(v).numpy() for m, v in uni.items()}
        metrics["probe_acc"] = probe_accuracy(uni_np, y_t.numpy())
        classes = self.splits[split].info.get("classes") or list(range(self.method.ctx.num_classes))
        metrics["per_class_acc"] = per_class_accuracy({"fused": all_logits.numpy(), **uni_np}, y_t.numpy(), classes)
        return metrics

    def train_epoch(self) -> float:
        """One pass over the training split; returns the mean loss."""
        model, method, ctx = self.model, self.method, self.method.ctx
        model.train()
        total, n = 0.0, 0
        for inputs, y in self.batches("train", train=True):
            self.optimizer.zero_grad(set_to_none=True)
            out = method.forward(model, inputs, y)
            loss = method.loss(out, y)
            loss.backward()
            # gradients are unscaled here (no loss scaling on this path), as the hooks require
            method.after_backward(model, out, y)
            _check_finite(model, loss, f"method {self.name}, epoch {ctx.epoch}, step {ctx.step}")
            self.optimizer.step()
            ctx.step += 1
            total += float(loss.detach()) * len(y)
            n += len(y)
        return total / max(n, 1)


def _check_finite(model: torch.nn.Module, loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteError(f"non-finite loss {loss.item()} at {where}")
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise NonFiniteError(f"non-finite gradient in {name} at {where}")


def _save_checkpoint(path: Path, trainer: Trainer, epoch: int, history: list, best: dict, best_state: dict) -> None:
    """Write the end-of-epoch checkpoint atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"epoch": epoch, "trainer": trainer.state_dict(), "history": history, "best": best, "best_state": best_state}, tmp)
    os.replace(tmp, path)


def fit(model: MultimodalModel, method: Method, splits: dict[str, SplitData], cfg: dict, seed: int, name: str,
        live=None, checkpoint: Path | None = None) -> dict:
    """Train for ``cfg['epochs']``; select the epoch with the best validation accuracy.

    With ``checkpoint``, state is saved after every epoch and a run finding a checkpoint there
    continues from it (same final numbers as an uninterrupted run on CPU).
    Returns the selected epoch's test metrics, its index, the papers' best-on-test accuracy, the
    wall time, the per-epoch history, and the selected epoch's weights (``best_state``).
    """
    trainer, start = Trainer(model, method, splits, cfg, seed, name), time.perf_counter()
    select = "val" if "val" in splits else "test"
    best, history, best_state, first = None, [], None, 0
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        trainer.load_state_dict(saved["trainer"])
        history, best, best_state, first = saved["history"], saved["best"], saved["best_state"], saved["epoch"] + 1
        if live is not None:
            for row in history:
                _log_epoch(live, row)
    for epoch in tqdm(range(first, int(cfg["epochs"])), desc=f"{name} seed {seed}", mininterval=2.0):
        method.ctx.epoch, method.ctx.logs = epoch, {}
        method.on_epoch_start(epoch, trainer)
        loss = trainer.train_epoch()
        method.on_epoch_end(epoch, trainer)
        if trainer.scheduler is not None:
            trainer.scheduler.step()
        row = {"epoch": epoch, "train_loss": loss, **{k: float(np.mean(v)) for k, v in method.ctx.logs.items()}}
        for split in ("val", "test"):
            if split in splits:
                row[split] = trainer.evaluate(split)
        history.append(row)
        if live is not None:
            _log_epoch(live, row)
        if best is None or _selection_key(row[select]) > _selection_key(best[select]):
            best, best_state = row, {"model": copy.deepcopy(model.state_dict()), "method": copy.deepcopy(method.state_dict())}
        if checkpoint is not None:
            _save_checkpoint(checkpoint, trainer, epoch, history, best, best_state)
    return {
        "test": best["test"],
        "val": best.get("val"),
        "best_epoch": best["epoch"],
        "epochs": int(cfg["epochs"]),
        "best_test_acc": max(r["test"]["acc"] for r in history),
        "wall_s": round(time.perf_counter() - start, 3),
        "history": history,
        "best_state": best_state,
        "diagnostics": method.diagnostics(),
    }


def _selection_key(metrics: dict) -> tuple[float, float]:
    """Best accuracy; among equal accuracies (common on small validation sets) the lower loss."""
    return metrics["acc"], -metrics["loss"]


def _log_epoch(live, row: dict) -> None:
    """Per-epoch curves for ``dvc plots``: loss, accuracies, probe accuracies, method diagnostics."""
    for key, value in row.items():
        if key == "epoch":
            continue
        if isinstance(value, dict):
            live.log_metric(f"{key}/acc", value["acc"])
            for m, acc in value["probe_acc"].items():
                live.log_metric(f"{key}/probe_acc_{m}", acc)
        elif math.isfinite(value):
            live.log_metric(f"train/{key}", value)
    live.next_step()
