"""The one training loop. It names no method: every method-specific step is a hook call."""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from mmbalance.evaluate import classification_metrics, probe_accuracy
from mmbalance.methods import Method
from mmbalance.models import MultimodalModel
from mmbalance.train.data import SplitData, batches


class NonFiniteError(RuntimeError):
    """Raised when the loss or a gradient stops being finite."""


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """SGD (the papers' choice; the imbalance needs it), Adam or AdamW from the ``train`` block."""
    name, lr, wd = cfg.get("optimizer", "sgd"), float(cfg["lr"]), float(cfg.get("weight_decay", 0.0))
    params = [p for p in model.parameters() if p.requires_grad]
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


@torch.no_grad()
def evaluate(model: MultimodalModel, method: Method, data: SplitData, cfg: dict, num_classes: int) -> dict:
    """Metrics of the method's test-time prediction plus each modality's probe accuracy."""
    model.eval()
    gen = torch.Generator().manual_seed(0)
    logits, uni, labels = [], {m: [] for m in model.modalities}, []
    for inputs, y in batches(data, int(cfg["batch_size"]), int(cfg.get("frames", 1)), False, gen):
        out = model(inputs)
        logits.append(method.predict(out).float())
        for m in uni:
            uni[m].append(out.unimodal_logits[m].float())
        labels.append(y)
    all_logits, y_t = torch.cat(logits), torch.cat(labels)
    y = y_t.numpy()
    metrics = classification_metrics(all_logits.numpy(), y, num_classes)
    metrics["loss"] = float(torch.nn.functional.cross_entropy(all_logits, y_t))
    metrics["probe_acc"] = probe_accuracy({m: torch.cat(v).numpy() for m, v in uni.items()}, y)
    return metrics


def _check_finite(model: torch.nn.Module, loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteError(f"non-finite loss {loss.item()} at {where}")
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise NonFiniteError(f"non-finite gradient in {name} at {where}")


def train_epoch(model, method, opt, data: SplitData, cfg: dict, gen: torch.Generator, name: str) -> float:
    """One pass over the training split; returns the mean loss."""
    model.train()
    total, n = 0.0, 0
    for inputs, y in batches(data, int(cfg["batch_size"]), int(cfg.get("frames", 1)), True, gen):
        opt.zero_grad(set_to_none=True)
        out = method.forward(model, inputs, y)
        loss = method.loss(out, y)
        loss.backward()
        # gradients are unscaled here (no loss scaling on this path), as the hooks require
        method.after_backward(model, out, y)
        _check_finite(model, loss, f"method {name}, epoch {method.ctx.epoch}, step {method.ctx.step}")
        opt.step()
        method.ctx.step += 1
        total += float(loss.detach()) * len(y)
        n += len(y)
    return total / max(n, 1)


def fit(model: MultimodalModel, method: Method, splits: dict[str, SplitData], cfg: dict, seed: int, name: str, live=None) -> dict:
    """Train for ``cfg['epochs']``; select the epoch with the best validation accuracy.

    Returns the selected epoch's test metrics, its index, the papers' best-on-test accuracy, the
    wall time, and the per-epoch history.
    """
    opt, start = build_optimizer(model, cfg), time.perf_counter()
    sched = build_scheduler(opt, cfg)
    gen = torch.Generator().manual_seed(seed)
    num_classes = method.ctx.num_classes
    select = "val" if "val" in splits else "test"
    best, history = None, []
    for epoch in tqdm(range(int(cfg["epochs"])), desc=f"{name} seed {seed}", mininterval=2.0):
        method.ctx.epoch, method.ctx.logs = epoch, {}
        method.on_epoch_start(epoch)
        loss = train_epoch(model, method, opt, splits["train"], cfg, gen, name)
        method.on_epoch_end(epoch)
        if sched is not None:
            sched.step()
        row = {"epoch": epoch, "train_loss": loss, **{k: float(np.mean(v)) for k, v in method.ctx.logs.items()}}
        for split in ("val", "test"):
            if split in splits:
                row[split] = evaluate(model, method, splits[split], cfg, num_classes)
        history.append(row)
        if live is not None:
            _log_epoch(live, row)
        if best is None or _selection_key(row[select]) > _selection_key(best[select]):
            best = row
    return {
        "test": best["test"],
        "val": best.get("val"),
        "best_epoch": best["epoch"],
        "epochs": int(cfg["epochs"]),
        "best_test_acc": max(r["test"]["acc"] for r in history),
        "wall_s": round(time.perf_counter() - start, 3),
        "history": history,
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
