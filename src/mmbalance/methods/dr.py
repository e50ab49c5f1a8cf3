"""D&R: Diagnosing and Re-learning.

Wei, Li, Hu, Li & Li, ECCV 2024 ("Diagnosing and Re-learning for Balanced Multimodal
Learning"). Every ``reinit_every`` epochs each modality's uni-modal representation is diagnosed by
how separable its features are (k-means purity) on the training data versus held-out data; a
modality whose training purity runs ahead of its held-out purity has been learnt (or over-fitted)
more, and its encoder is softly re-initialised towards its initial weights by that much.

What it changes in the loop: ``on_epoch_start`` (keeps θ_init at the start; diagnosis and soft
re-initialisation of the encoders at the start of the epoch after each diagnosis epoch).
Training itself is plain fused cross-entropy.

Formulas (released code ``code/ours.py`` @025085e read, CREMA-D script ``ours.sh``: re-init after
epochs 20, 40, 60 of 90, ``move_lambda`` 3; facts.md §B.6):

- features φ^m of the training split and of the validation split (evaluation mode), each scaled
  per dimension to [−1, 1] (MinMaxScaler), clustered by k-means with C clusters (seed 0);
- purity = Σ_clusters max_class |cluster ∩ class| / N; gap_m = |purity_train − purity_val|;
- α_m = tanh(λ·gap_m); θ_m ← (1 − α_m)·θ_m + α_m·θ_m,init for every parameter of encoder m
  (BatchNorm running statistics are buffers and stay; the optimizer state is kept, as in the code).

Timing: the code diagnoses after epoch e (0-based) when e > 0, e % ``reinit_every`` == 0, at most
``reinit_num`` times, after that epoch's evaluation; here it runs at the start of epoch e + 1, so
the loop's evaluation of epoch e also sees the weights before re-initialisation. The code's
k-means is sklearn's with its then-default 10 restarts (``n_init``). Any number of modalities.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from mmbalance.methods.base import METHODS, Method


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of samples whose class is the majority class of their cluster."""
    labels, clusters = np.asarray(labels, dtype=np.int64), np.asarray(clusters, dtype=np.int64)
    table = np.zeros((clusters.max() + 1, labels.max() + 1), dtype=np.int64)  # [clusters, classes]
    np.add.at(table, (clusters, labels), 1)
    return float(table.max(axis=1).sum() / len(labels))


def minmax_scale(x: np.ndarray) -> np.ndarray:
    """Per-column scaling to [−1, 1]; a constant column maps to −1 (sklearn's MinMaxScaler)."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi - lo == 0, 1.0, hi - lo)
    return (x - lo) / span * 2.0 - 1.0


def separability(features: np.ndarray, labels: np.ndarray, n_clusters: int, n_init: int = 10, seed: int = 0) -> float:
    """k-means purity of min-max scaled features [N, D] against their labels [N]."""
    from sklearn.cluster import KMeans

    k = max(1, min(n_clusters, len(features)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer distinct points than clusters early in training
        clusters = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(minmax_scale(features))
    return purity(labels, clusters)


def reinit_strength(purity_train: float, purity_val: float, move_lambda: float) -> float:
    """α = tanh(λ·|purity_train − purity_val|)."""
    return math.tanh(move_lambda * abs(purity_train - purity_val))


@torch.no_grad()
def soft_reinit(params: list[torch.Tensor], init: list[torch.Tensor], alpha: float) -> None:
    """θ ← (1 − α)·θ + α·θ_init in place."""
    torch._foreach_lerp_(params, [t.to(p) for t, p in zip(init, params)], alpha)


@METHODS.register("dr")
class DiagnoseRelearn(Method):
    """Plain training with periodic purity-diagnosed soft re-initialisation (see the module docstring)."""

    acting = {"key": "reinit_*", "noop": 0.0}  # α_m: how far encoder m is pulled back to θ_init

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.every = int(self.cfg.get("reinit_every", 20))
        self.times = int(self.cfg.get("reinit_num", 3))
        self.move_lambda = float(self.cfg.get("move_lambda", 3.0))
        self.n_init = int(self.cfg.get("n_init", 10))
        if self.every < 1:
            raise ValueError(f"dr: reinit_every must be ≥ 1, got {self.every}")
        self.init: dict[str, list[torch.Tensor]] = {}  # θ_init per modality (CPU copies)
        self.done = 0

    def on_epoch_start(self, epoch: int, trainer) -> None:
        if not self.init:
            self.init = {m: [p.detach().cpu().clone() for p in trainer.model.modality_parameters(m)]
                         for m in trainer.model.modalities}
        last = epoch - 1
        if last > 0 and last % self.every == 0 and self.done < self.times:
            self.relearn(trainer)
            self.done += 1

    @torch.no_grad()
    def _features(self, trainer, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        model = trainer.model
        was_training = model.training
        model.eval()
        feats, labels = {m: [] for m in model.modalities}, []
        for inputs, y in trainer.batches(split):
            for m, f in model.encode(inputs).items():
                feats[m].append(f.float().cpu())
            labels.append(y)
        model.train(was_training)
        return {m: torch.cat(v).numpy() for m, v in feats.items()}, torch.cat(labels).numpy()

    def relearn(self, trainer) -> dict[str, float]:
        """Diagnose every modality and softly re-initialise its encoder; returns α per modality."""
        if "val" not in trainer.splits:
            raise ValueError(f"dr needs a 'val' split for the diagnosis; the dataset has splits {sorted(trainer.splits)}")
        (ftr, ytr), (fva, yva) = self._features(trainer, "train"), self._features(trainer, "val")
        alphas = {}
        for m in trainer.model.modalities:
            p_tr = separability(ftr[m], ytr, self.ctx.num_classes, self.n_init)
            p_va = separability(fva[m], yva, self.ctx.num_classes, self.n_init)
            alphas[m] = reinit_strength(p_tr, p_va, self.move_lambda)
            soft_reinit(trainer.model.modality_parameters(m), self.init[m], alphas[m])
            self.log(**{f"purity_train_{m}": p_tr, f"purity_val_{m}": p_va, f"reinit_{m}": alphas[m]})
        return alphas

    def state_dict(self) -> dict:
        return {"init": self.init, "done": self.done}

    def load_state_dict(self, state: dict) -> None:
        self.init = {m: [t.clone() for t in v] for m, v in state.get("init", {}).items()}
        self.done = int(state.get("done", 0))
