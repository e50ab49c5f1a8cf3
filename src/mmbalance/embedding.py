"""Feature-space pictures of trained models: t-SNE of the test embeddings (IPRM Fig. 4).

IPRM Fig. 4 draws a t-SNE of the learned embeddings of L-Mixup, MLA, LFM and IPRM on CREMA-D
and prints in each panel "the average distance of each multimodal data sample to its respective
cluster center". The panels here are one per view: each modality's encoder features
(``Output.features``, [N, D_m]) and the multimodal embedding, their concatenation [N, Σ D_m] (the
input of every method's head; IPRM's own slerp mixes are a function of the same features).

Two spreads are reported per view:

- ``spread_2d``: the paper's number, the mean Euclidean distance of each test sample's 2-D t-SNE
  point to the centre of its class's points. t-SNE distances depend on the perplexity and on the
  other points, so they compare methods only roughly;
- ``spread_ratio``: in the feature space itself, the mean distance to the own class centre over
  the mean distance to the centre of all samples (scale-free: 1 = no class structure, 0 = every
  class collapsed to a point), which does compare across methods and seeds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from mmbalance.evaluate.robustness import trained_seeds
from mmbalance.train.data import SplitData, batches

MULTIMODAL = "multimodal"


@torch.no_grad()
def split_features(model, data: SplitData, batch_size: int = 256) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Encoder features of every test sample ({view: [N, D]}, the multimodal view their
    concatenation in the model's modality order) and the labels [N]."""
    model.eval()
    feats: dict[str, list[torch.Tensor]] = {m: [] for m in model.modalities}
    labels = []
    for inputs, y in batches(data, batch_size, train=False, gen=torch.Generator().manual_seed(0)):
        out = model(inputs)
        for m in model.modalities:
            feats[m].append(out.features[m].float())
        labels.append(y)
    views = {m: torch.cat(v).numpy() for m, v in feats.items()}
    views[MULTIMODAL] = np.concatenate([views[m] for m in model.modalities], axis=1)
    return views, torch.cat(labels).numpy()


def class_spread(points: np.ndarray, labels: np.ndarray) -> float:
    """Mean Euclidean distance of each point ([N, D]) to the centre of its class's points."""
    dist = np.empty(len(points))
    for c in np.unique(labels):
        idx = labels == c
        dist[idx] = np.linalg.norm(points[idx] - points[idx].mean(axis=0), axis=1)
    return float(dist.mean())


def spread_ratio(points: np.ndarray, labels: np.ndarray) -> float:
    """class_spread / mean distance to the centre of all points (0 = classes collapsed, 1 = none)."""
    total = float(np.linalg.norm(points - points.mean(axis=0), axis=1).mean())
    return class_spread(points, labels) / total if total > 0 else float("nan")


def tsne_2d(features: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """2-D t-SNE of ``features`` [N, D] (scikit-learn, PCA initialisation, fixed seed) → [N, 2]."""
    from sklearn.manifold import TSNE

    perplexity = min(float(perplexity), (len(features) - 1) / 3.0)  # sklearn needs perplexity < N
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features.astype(np.float64))


def embed_run(model_dir: Path, info: dict, data: SplitData, model_seed: int, perplexity: float, seed: int,
              batch_size: int = 256) -> dict:
    """t-SNE of the test embeddings of one run's ``seed<model_seed>.pt`` model.

    Returns ``{"method", "model_seed", "modalities", "views", "labels", "points": {view: [[x, y],
    ...]}, "spread_2d": {view: v}, "spread_ratio": {view: v}, "perplexity", "seed", "wall_s"}``.
    """
    start = time.perf_counter()
    for k, method, model, ckpt in trained_seeds(model_dir, info):
        if k != model_seed:
            continue
        views, labels = split_features(model, data, batch_size)
        points = {v: tsne_2d(x, perplexity, seed) for v, x in views.items()}
        return {"method": ckpt["method"], "model_seed": k, "modalities": list(model.modalities),
                "views": list(views), "labels": labels.tolist(),
                "points": {v: np.round(p, 3).tolist() for v, p in points.items()},
                "spread_2d": {v: round(class_spread(p, labels), 4) for v, p in points.items()},
                "spread_ratio": {v: round(spread_ratio(x, labels), 4) for v, x in views.items()},
                "perplexity": float(perplexity), "seed": int(seed),
                "wall_s": round(time.perf_counter() - start, 3)}
    raise FileNotFoundError(f"{model_dir}: no seed{model_seed}.pt (params embedding.model_seed)")
