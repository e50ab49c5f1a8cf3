"""The one training loop. It names no method: every method-specific step is a hook call.

Per step: ``method.forward`` → ``method.loss`` → backward → ``method.after_backward`` (gradients
are unscaled there) → finiteness check → optimizer step. Per epoch: ``method.on_epoch_start`` /
``on_epoch_end`` receive the ``Trainer`` (model, optimizer reset, data access for refits).

Device and precision come from ``train.device``/``train.precision`` (``runtime``); the data from
memory (``train.data``) or streamed from the shards (``train.stream``). Under ``torchrun`` the
step runs through DistributedDataParallel: see ``distributed`` and the README's DDP section.
"""

from __future__ import annotations

import copy
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from mmbalance.evaluate import classification_metrics, per_class_accuracy, probe_accuracy
from mmbalance.evaluate.curves import epoch_points
from mmbalance.evaluate.predictions import segment_keys
from mmbalance.methods import Method
from mmbalance.methods.base import epoch_means
from mmbalance.models import MultimodalModel
from mmbalance.train import distributed as dist
from mmbalance.train import runtime
from mmbalance.train.data import SplitData, finish_batch, index_batches, make_batch, segments_of
from mmbalance.train.stream import StreamLoader, StreamSplit


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


class _Step(torch.nn.Module):
    """The method's training forward as a module, so DistributedDataParallel wraps it: DDP then
    sees every parameter the method's forward uses, whichever submodules it calls."""

    def __init__(self, model: MultimodalModel, method: Method) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, inputs: dict, labels: torch.Tensor):
        return self.method.forward(self.model, inputs, labels)


class Trainer:
    """State of one run, handed to the epoch hooks: model, optimizer, data and evaluation.

    ``model`` is always the plain model (methods read its submodules); under DDP the training
    step goes through ``self.step`` (DistributedDataParallel over ``_Step``).
    """

    def __init__(self, model: MultimodalModel, method: Method, splits: dict, cfg: dict, seed: int, name: str) -> None:
        self.rt = runtime.resolve(cfg)
        # a head with unimodal classifiers (CentralNet) or a loss of its own (MWTSIM's metric loss)
        # is trained by the base loss: checked on the first step that the method's output and loss
        # carry them
        fusion = model.fusion
        self._aux_pending = bool(getattr(fusion, "trains_unimodal_heads", False) or getattr(fusion, "adds_aux_loss", False))
        self.model = runtime.compile_encoders(self.rt.prepare_model(model), cfg)
        self.method, self.splits, self.cfg, self.name = method, splits, cfg, name
        self.rank, self.world = dist.rank(), dist.world_size()
        # single process: one generator orders batches and samples frames (unchanged behaviour);
        # DDP: the order generator is the same on every rank, frame sampling differs per rank
        self.gen = torch.Generator().manual_seed(seed + self.rank)
        self.order_gen = self.gen if self.world == 1 else torch.Generator().manual_seed(seed)
        self.loaders = {k: StreamLoader(v, cfg, seed, self.rt.cuda and bool(cfg.get("pin_memory", True))) for k, v in splits.items() if isinstance(v, StreamSplit)}
        # in-memory batches assembled ahead by a thread (``train.prefetch``, default 2 on CUDA, 0 =
        # in this thread on a CPU); the loss and finiteness checks stay on the device per epoch
        # on CUDA (``train.check_finite``: step | epoch), so a step needs no host synchronisation
        self.prefetch = int(cfg.get("prefetch", 2 if self.rt.cuda else 0))
        self.check_each_step = _check_each_step(cfg, self.rt.cuda)
        self.step = self._wrap() if self.world > 1 else None
        self.eval_counts: dict[str, int] = {}
        # per split, the last evaluation's per-sample predictions (keys, labels, logits, probes)
        self.predictions: dict[str, dict] = {}
        self.reset_optimizer(**method.optimizer_overrides())

    def _wrap(self) -> torch.nn.Module:
        """DDP over the method's forward. Unused parameters are allowed by default
        (``train.ddp_find_unused_parameters``: unimodal steps, method heads used in some epochs);
        turning it off saves a graph traversal per step for methods that use every parameter."""
        ids = [self.rt.device.index] if self.rt.cuda else None
        unused = bool(self.cfg.get("ddp_find_unused_parameters", True))
        return torch.nn.parallel.DistributedDataParallel(_Step(self.model, self.method), device_ids=ids, find_unused_parameters=unused)

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
            "rng": {"loader": self.gen.get_state(), "order": self.order_gen.get_state(), "torch": torch.get_rng_state(),
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
        if "order" in rng:
            self.order_gen.set_state(rng["order"])
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])

    def batches(self, split: str, train: bool = False, shard: bool = False):
        """(inputs, labels) over a split, on the run's device; ``train=True`` shuffles and samples
        training frames. For a method's scans (refits, probes) every DDP rank reads the whole
        split, so statistics computed from it are identical on every rank; ``shard=True`` gives
        this rank's share only (combine the results with ``distributed.all_gather_cat``)."""
        for inputs, y, _ in self._keyed(split, train, shard):
            yield inputs, y

    def _keyed(self, split: str, train: bool, shard: bool):
        """(inputs, labels, sample keys) batches; ``shard`` splits them across DDP ranks."""
        rank, world = (self.rank, self.world) if shard else (0, 1)
        data, size = self.splits[split], int(self.cfg["batch_size"])
        if isinstance(data, StreamSplit):
            per_rank = max(1, size // world)  # batch_size is the global batch
            batches = self.loaders[split].batches(per_rank, train, shard and self.world > 1, self.method.ctx.epoch)
        else:
            gen = self.gen if train else torch.Generator().manual_seed(0)
            order = self.order_gen if train else gen
            batches = ((*make_batch(data, idx, train, gen, raw=True), [data.keys[i] for i in idx.tolist()])
                       for idx in index_batches(len(data), size, train, order, rank, world, pad=train))
            batches = self.rt.prefetched(batches, self.prefetch, bool(self.cfg.get("pin_memory", True)))
        segments = segments_of(data.info)
        for inputs, y, keys in batches:
            inputs, y = self.rt.to_device(inputs, y)  # raw batches: uint8 frames, stored-dtype spectrograms
            yield self.rt.channels_last(finish_batch(inputs, data.info)), y, segment_keys(keys, segments)

    @torch.no_grad()
    def evaluate(self, split: str) -> dict:
        """Metrics of the method's test-time prediction plus each modality's probe accuracy.

        Under DDP each rank predicts its share; the predictions are gathered so the metrics are
        computed once over the whole split (each sample exactly once; checked by key)."""
        self.model.eval()
        logits, uni, labels, keys = [], {m: [] for m in self.model.modalities}, [], []
        for inputs, y, k in self._keyed(split, False, shard=True):
            with self.rt.autocast():
                out = self.model(inputs)
            logits.append(self.method.predict(out).float().cpu())
            for m in uni:
                uni[m].append(out.unimodal_logits[m].float().cpu())
            labels.append(y.cpu())
            keys += k
        if not labels:  # this rank's share of the shards is empty (fewer shards than ranks)
            c = self.method.ctx.num_classes
            logits, labels, uni = [torch.empty(0, c)], [torch.empty(0, dtype=torch.long)], {m: [torch.empty(0, c)] for m in uni}
        all_logits, y_t, uni, keys = self._gathered(split, torch.cat(logits), uni, torch.cat(labels), keys)
        self.predictions[split] = {"keys": keys, "labels": y_t.numpy(), "logits": all_logits.numpy(),
                                   "probes": {m: v.numpy() for m, v in uni.items()}}
        metrics = classification_metrics(all_logits.numpy(), y_t.numpy(), self.method.ctx.num_classes)
        metrics["loss"] = float(F.cross_entropy(all_logits, y_t))
        uni_np = {m: v.numpy() for m, v in uni.items()}
        metrics["probe_acc"] = probe_accuracy(uni_np, y_t.numpy())
        classes = self.splits[split].info.get("classes") or list(range(self.method.ctx.num_classes))
        metrics["per_class_acc"] = per_class_accuracy({"fused": all_logits.numpy(), **uni_np}, y_t.numpy(), classes)
        return metrics

    def _gathered(self, split: str, logits: torch.Tensor, uni: dict, labels: torch.Tensor, keys: list[str]):
        """Every rank's predictions ([N, C] logits, [N] labels, per-modality [N, C], their N keys),
        sorted by sample key under DDP; raises unless each sample of the split appears exactly once."""
        uni = {m: torch.cat(v) for m, v in uni.items()}
        if self.world > 1:
            parts = dist.all_gather_objects((logits, uni, labels, keys))
            keys = [k for p in parts for k in p[3]]
            order = torch.tensor(sorted(range(len(keys)), key=keys.__getitem__))
            logits, labels = torch.cat([p[0] for p in parts])[order], torch.cat([p[2] for p in parts])[order]
            uni = {m: torch.cat([p[1][m] for p in parts])[order] for m in uni}
            keys = [keys[i] for i in order.tolist()]
        data = self.splits[split]
        expected = len(data) * max(1, segments_of(data.info))  # rows: clips, or their segments
        if len(set(keys)) != len(keys) or len(keys) != expected:
            raise RuntimeError(f"evaluation of split {split!r} saw {len(keys)} predictions for {len(set(keys))} distinct "
                               f"samples; the split has {expected}")
        self.eval_counts[split] = len(keys)
        return logits, labels, uni, keys

    def train_epoch(self) -> float:
        """One pass over the training split; returns the mean loss."""
        model, method, ctx = self.model, self.method, self.method.ctx
        model.train()
        # the loss sum stays on the device (float64: the same sums as Python floats on a CPU)
        total, n, first_bad = torch.zeros((), dtype=torch.float64, device=self.rt.device), 0, None
        for inputs, y in self._train_batches():
            self.optimizer.zero_grad(set_to_none=True)
            with self.rt.autocast():
                out = self.step(inputs, y) if self.step is not None else method.forward(model, inputs, y)
                loss = method.loss(out, y)
            if self._aux_pending:
                _check_aux_loss(method, out, self.name)
                self._aux_pending = False
            loss.backward()
            # gradients are unscaled here (fp32, or bf16 autocast which needs no loss scaling), as
            # the hooks require; under DDP they are already averaged over ranks
            method.after_backward(model, out, y)
            if self.step is not None and _modifies_gradients(method):
                dist.average_gradients(model.parameters())  # the same step on every replica
            if self.check_each_step:
                _check_finite(model, loss, f"method {self.name}, epoch {ctx.epoch}, step {ctx.step}")
            else:
                first_bad = _first_nonfinite_step(model, loss, ctx.step, first_bad)
            self.optimizer.step()
            ctx.step += 1
            total += loss.detach().double() * len(y)
            n += len(y)
        if first_bad is not None and (step := int(first_bad)) >= 0:
            raise NonFiniteError(f"non-finite loss or gradient at method {self.name}, epoch {ctx.epoch}, step {step} "
                                 "(train.check_finite: epoch, checked at the end of the epoch)")
        return float(total) / max(n, 1)

    def _train_batches(self):
        """This rank's training batches; streamed DDP epochs end for all ranks together when the
        first rank runs out (shards need not split evenly)."""
        batches = (b[:2] for b in self._keyed("train", True, shard=True))
        if self.world == 1 or not isinstance(self.splits["train"], StreamSplit):
            yield from batches
            return
        while True:
            batch = next(batches, None)
            if not dist.all_true(batch is not None, self.rt.device):
                return
            yield batch


def _modifies_gradients(method: Method) -> bool:
    """True when the method overrides ``after_backward`` (its gradient changes are per rank)."""
    return type(method).after_backward is not Method.after_backward


CHECK_FINITE = ("auto", "step", "epoch")


def _check_each_step(cfg: dict, cuda: bool) -> bool:
    """``train.check_finite``: ``step`` checks loss and gradients after every backward pass (one
    host synchronisation per step; names the parameter), ``epoch`` keeps the first bad step on
    the device and raises at the end of the epoch; ``auto`` (default): step on a CPU, epoch on CUDA."""
    mode = str(cfg.get("check_finite", "auto"))
    if mode not in CHECK_FINITE:
        raise ValueError(f"train.check_finite {mode!r} unknown; choices: {', '.join(CHECK_FINITE)}")
    return mode == "step" or (mode == "auto" and not cuda)


def _all_finite(loss: torch.Tensor, grads: list[torch.Tensor]) -> torch.Tensor:
    """A device bool: the loss and every gradient are finite. A NaN/inf entry makes its tensor's
    norm NaN/inf, so one fused multi-tensor norm and one reduction cover every gradient (not ~3
    kernels per parameter); reading the result is the only host synchronisation."""
    ok = torch.isfinite(loss.detach())
    if grads:
        ok = ok & torch.stack(torch._foreach_norm(grads)).isfinite().all()
    return ok


def _first_nonfinite_step(model: torch.nn.Module, loss: torch.Tensor, step: int, first: torch.Tensor | None) -> torch.Tensor:
    """The first step whose loss or a gradient norm is not finite, as a device scalar (-1: none
    yet), updated without a host synchronisation."""
    mark = torch.where(_all_finite(loss, [p.grad for p in model.parameters() if p.grad is not None]), -1, step)
    return mark if first is None else torch.where(first >= 0, first, mark)


def _check_finite(model: torch.nn.Module, loss: torch.Tensor, where: str) -> None:
    """Raise NonFiniteError naming the loss or the culprit parameter (one host synchronisation
    when everything is finite; the culprit is looked up only when something is not)."""
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if bool(_all_finite(loss, [g for _, g in named])):
        return
    if not torch.isfinite(loss):
        raise NonFiniteError(f"non-finite loss {loss.item()} at {where}")
    bad = next((name for name, g in named if not torch.isfinite(g).all()), None)
    if bad is None:  # finite entries whose norm overflows: as unusable as an inf
        bad = next(name for name, g in named if not torch.isfinite(torch.linalg.vector_norm(g)))
        raise NonFiniteError(f"gradient norm of {bad} overflows at {where}")
    raise NonFiniteError(f"non-finite gradient in {bad} at {where}")


def _save_checkpoint(path: Path, trainer: Trainer, epoch: int, history: list, best: dict, best_state: dict,
                     best_preds: dict | None, wall_s: float) -> None:
    """Write the end-of-epoch checkpoint atomically (temporary file, then rename). It keeps the
    training time so far and the evaluated sample counts, so that a resumed run, even one
    resumed after its last epoch, reports the same ``wall_s`` and ``eval_samples`` as an
    uninterrupted one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"epoch": epoch, "trainer": trainer.state_dict(), "history": history, "best": best, "best_state": best_state,
                "best_predictions": best_preds, "wall_s": wall_s, "eval_counts": dict(trainer.eval_counts)}, tmp)
    os.replace(tmp, path)


def fit(model: MultimodalModel, method: Method, splits: dict[str, SplitData], cfg: dict, seed: int, name: str,
        live=None, checkpoint: Path | None = None) -> dict:
    """Train for ``cfg['epochs']``; select the epoch with the best validation accuracy.

    With ``checkpoint``, state is saved after every epoch and a run finding a checkpoint there
    continues from it (same final numbers as an uninterrupted run on CPU).
    Returns the selected epoch's test metrics, its index, the papers' best-on-test accuracy, the
    wall time (of every process that trained it: a resumed run adds its checkpoint's), the per-epoch history, and the selected epoch's weights (``best_state``).
    """
    trainer, start = Trainer(model, method, splits, cfg, seed, name), time.perf_counter()
    select = "val" if "val" in splits else "test"
    best, history, best_state, best_preds, first = None, [], None, None, 0
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False, map_location="cpu")
        trainer.load_state_dict(saved["trainer"])
        history, best, best_state, first = saved["history"], saved["best"], saved["best_state"], saved["epoch"] + 1
        best_preds = saved.get("best_predictions")
        start -= float(saved.get("wall_s", 0.0))  # the time the earlier process(es) trained
        trainer.eval_counts.update(saved.get("eval_counts", {}))
        if live is not None:
            for row in history:
                _log_epoch(live, row)
    if first == 0:  # a resumed run restored its fitted front ends with the weights
        fit_front_ends(model, trainer, seed)
    for epoch in tqdm(range(first, int(cfg["epochs"])), desc=f"{name} seed {seed}", mininterval=2.0, disable=not dist.is_main()):
        method.ctx.epoch, method.ctx.logs = epoch, {}
        method.on_epoch_start(epoch, trainer)
        loss = trainer.train_epoch()
        method.on_epoch_end(epoch, trainer)
        if trainer.scheduler is not None:
            trainer.scheduler.step()
        row = {"epoch": epoch, "train_loss": loss, **epoch_means(method.ctx.logs)}  # one host copy per epoch
        for split in ("val", "test"):
            if split in splits:
                row[split] = trainer.evaluate(split)
        history.append(row)
        if live is not None:
            _log_epoch(live, row)
        if best is None or _selection_key(row[select]) > _selection_key(best[select]):
            best, best_state, best_preds = row, _snapshot(trainer), trainer.predictions.get("test")
        if checkpoint is not None and dist.is_main():
            _save_checkpoint(checkpoint, trainer, epoch, history, best, best_state, best_preds, time.perf_counter() - start)
    return {
        "test": best["test"],
        "val": best.get("val"),
        "best_epoch": best["epoch"],
        "epochs": int(cfg["epochs"]),
        "best_test_acc": max(r["test"]["acc"] for r in history),
        "wall_s": round(time.perf_counter() - start, 3),
        "history": history,
        "best_state": best_state,
        "predictions": best_preds,  # the selected epoch's per-sample test predictions
        "diagnostics": method.diagnostics(),
        "eval_samples": dict(trainer.eval_counts),  # per split: samples scored (each once, also under DDP)
    }


def fit_front_ends(model: MultimodalModel, trainer: Trainer, seed: int) -> None:
    """Fit the encoders' data-dependent front ends on the training split, once, before the first
    epoch: any encoder submodule with ``fit_from_data(batches, seed)`` (the i-vector extractor's
    UBM and total-variability matrix) reads the split's batches of its modality once, in the
    fixed evaluation order (no random draw, so the run's shuffles are unchanged). Every DDP rank
    reads the whole split and fits the same front end."""
    for modality, encoder in model.encoders.items():
        for module in encoder.modules():
            fitter = getattr(module, "fit_from_data", None)
            if callable(fitter):
                fitter((inputs[modality] for inputs, _ in trainer.batches("train")), seed)


def _snapshot(trainer: Trainer) -> dict:
    """Copies of the model's and the method's state (model tensors on the CPU)."""
    state = trainer.model.state_dict()
    if trainer.rt.cuda:
        state = {k: v.detach().cpu() for k, v in state.items()}
    return {"model": copy.deepcopy(state), "method": copy.deepcopy(trainer.method.state_dict())}


def _selection_key(metrics: dict) -> tuple[float, float]:
    """Best accuracy; among equal accuracies (common on small validation sets) the lower loss."""
    return metrics["acc"], -metrics["loss"]


def _log_epoch(live, row: dict) -> None:
    """Per-epoch curves for ``dvc plots``: loss, accuracies, probe accuracies, method diagnostics."""
    for name, value in epoch_points(row).items():
        live.log_metric(name, value)
    live.next_step()


def _check_aux_loss(method, out, name: str) -> None:
    """The model's fusion head trains objectives of its own through ``Method.loss`` (CentralNet's
    unimodal networks, MWTSIM's cross-modal metric loss): a method whose output drops them or whose
    loss skips the base loss would leave them untrained, so it stops here, naming itself."""
    if (out.aux_logits is None and out.aux_loss is None) or not getattr(method, "aux_in_loss", False):
        raise ValueError(f"method {name!r} does not train the fusion head's own objective (CentralNet's unimodal "
                         "classifiers, MWTSIM's metric loss: added by the plain loss, which this method replaces or "
                         "whose output it rebuilds); use it with another fusion, or a method with the plain loss "
                         "(concat, opm, ogm, …)")
