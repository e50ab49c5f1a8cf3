"""GMM-AL: GMM-guided adaptive loss for audio-visual learning.

Liu, Yu & Liu, arXiv 2025 ("Quantifying Multimodal Imbalance: A GMM-Guided Adaptive Loss").
The modality gap of a sample is g = s^a_y − s^v_y, the difference of the two unimodal softmax
scores of the true class (unimodal logits W_m·φ_m + b/2 of the concat head, Eq. 3–6).

- Warm-up (``warmup_epochs``): L = L_MM + L_a + L_v (Eq. 7).
- Adaptive phase: at the start of every ``fit_every``-th adaptive epoch, the gaps of the whole
  training split are fitted with a two-component Gaussian mixture (Eq. 8); the component whose
  mean is nearest 0 is "balanced" (π0, μ0, σ0²). ``gap_source`` says which gaps:
  ``steps`` (default) the gaps the previous epoch's training steps computed anyway, one per
  training sample (kept on the device, detached, and read back once at the epoch's end: no extra
  pass and no per-step host synchronisation); ``pass`` a separate evaluation-mode pass over the
  training split before the fit (fixed frames, the model of the epoch's start; about a third of
  an epoch's compute). The paper does not say how its per-epoch gaps are obtained. A run without
  buffered gaps (a checkpoint written by older code) falls back to the pass. The loss is
  L = α·mean_i(w_i,bal·CE_i) + λ_t·mean_i(β·g_i² + γ·w_i,imb·(g_i − μ0)²) (Eq. 10), with
  λ_t = 0.96^e, g_i differentiable and w the GMM posteriors (Eq. 9). The optimizer state is reset
  when the adaptive phase starts.

Per-sample weights: the loop's batches carry no sample ids, so w_i is the fitted GMM's posterior
of the sample's *current* gap in the batch (the paper's Algorithm 1: "for each sample j ∈ B_t,
calculate w_j using current GMM parameters"), computed in torch from (π, μ, σ²) — the same
numbers as ``GaussianMixture.predict_proba`` — without a per-step round trip to NumPy.

Choices where the paper is silent (each a param): α = β = γ = 1; warm-up 5 epochs; a refit every
adaptive epoch; e counts epochs since the adaptive phase began (``anneal_from: adaptive``);
the GMM is sklearn's (k-means++ initialisation, seeded: the same fits as its default k-means
initialisation on these 1-D gaps at a quarter of the cost, which matters once per epoch). The paper defines the gap for two modalities only:
other counts raise ``ValueError``; with two modalities g = s^{m1} − s^{m2} in the model's
modality order (audio, visual for the audio-visual datasets).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.train.distributed import all_gather_cat

# Gap histogram of the report (GMM-AL Fig. 2/3): fixed bins over the whole range of g ∈ [−1, 1],
# so that histograms of different fits and seeds share their edges.
GAP_BINS = 40


def modality_gap(unimodal_logits: dict[str, torch.Tensor], labels: torch.Tensor, order: list[str]) -> torch.Tensor:
    """g_i = softmax(l^a_i)[y_i] − softmax(l^v_i)[y_i] (Eq. 6), [B]; differentiable."""
    a, v = (torch.softmax(unimodal_logits[m].float(), dim=1).gather(1, labels[:, None]).squeeze(1) for m in order)
    return a - v


def fit_gmm(gaps: np.ndarray, seed: int = 0) -> dict:
    """Two-component 1-D Gaussian mixture of the gaps (Eq. 8), components ordered balanced first.

    Returns ``weights`` (π0, π1), ``means`` (μ0, μ1) and ``vars`` (σ0², σ1²); the balanced
    component is the one whose mean is nearest 0.
    """
    from sklearn.mixture import GaussianMixture

    gaps = np.asarray(gaps, dtype=np.float64).reshape(-1, 1)
    if gaps.shape[0] < 2:
        raise ValueError(f"gmm_al: fitting the gap mixture needs at least 2 training samples, got {gaps.shape[0]}")
    with warnings.catch_warnings():
        # identical gaps (e.g. an untrained model) give one cluster: harmless here
        warnings.simplefilter("ignore")
        gm = GaussianMixture(n_components=2, covariance_type="full", init_params="k-means++",
                             random_state=seed).fit(gaps)
    means, variances, weights = gm.means_[:, 0], gm.covariances_[:, 0, 0], gm.weights_
    order = np.argsort(np.abs(means), kind="stable")
    return {"weights": weights[order].tolist(), "means": means[order].tolist(), "vars": variances[order].tolist()}


def gap_histogram(gaps: np.ndarray, bins: int = GAP_BINS) -> dict:
    """Counts of the gaps in ``bins`` equal bins over [−1, 1]: ``edges`` (bins + 1) and ``counts``."""
    counts, edges = np.histogram(np.asarray(gaps, dtype=np.float64), bins=bins, range=(-1.0, 1.0))
    return {"edges": edges.tolist(), "counts": counts.astype(int).tolist()}


def posteriors(gaps: torch.Tensor, gmm: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_bal, w_imb), each [B]: Bayes posteriors of the two components for each gap (Eq. 9)."""
    g = gaps.detach().double()  # [B]
    # the mixture's numbers enter as Python scalars: a tensor built from them would be copied to
    # the device, and that copy waits for the device, on every step
    log_joint = torch.stack([(math.log(pi) if pi > 0 else -math.inf) - 0.5 * (math.log(2 * math.pi * var) + (g - mu) ** 2 / var)
                             for pi, mu, var in zip(gmm["weights"], gmm["means"], gmm["vars"])], dim=1)  # [B, 2]
    w = torch.softmax(log_joint, dim=1).to(gaps.dtype)
    return w[:, 0], w[:, 1]


def adaptive_loss(fused_logits, labels, gap, w_bal, w_imb, mu0: float, lam_t: float, alpha: float, beta: float, gamma: float):
    """Eq. 10 averaged over the batch: α·mean(w_bal·CE) + λ_t·mean(β·g² + γ·w_imb·(g − μ0)²)."""
    ce = F.cross_entropy(fused_logits, labels, reduction="none")  # [B]
    penalty = beta * gap.pow(2) + gamma * w_imb * (gap - mu0).pow(2)  # [B]
    return alpha * (w_bal * ce).mean() + lam_t * penalty.mean()


@METHODS.register("gmm_al")
class GMMAdaptiveLoss(Method):
    """Warm-up with L_MM + L_a + L_v, then the GMM-weighted adaptive loss (module docstring)."""

    acting = {"key": "lambda_t", "noop": 0.0}  # weight of the adaptive gap terms (logged once adaptive)

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        if len(ctx.modalities) != 2:
            raise ValueError(f"method gmm_al defines the modality gap for two modalities (audio, visual); got {ctx.modalities}")
        self.warmup = int(self.cfg.get("warmup_epochs", 5))
        self.fit_every = max(1, int(self.cfg.get("fit_every", 1)))
        self.alpha, self.beta, self.gamma = (float(self.cfg.get(k, 1.0)) for k in ("alpha", "beta", "gamma"))
        self.use_weights = bool(self.cfg.get("gmm_weights", True))
        self.anneal = float(self.cfg.get("anneal", 0.96))
        self.anneal_from = self.cfg.get("anneal_from", "adaptive")
        if self.anneal_from not in ("adaptive", "start"):
            raise ValueError(f"gmm_al: unknown anneal_from {self.anneal_from!r}; choices: adaptive, start")
        self.gap_source = self.cfg.get("gap_source", "steps")
        if self.gap_source not in ("steps", "pass"):
            raise ValueError(f"gmm_al: unknown gap_source {self.gap_source!r}; choices: pass, steps")
        self.gmm: dict | None = None
        self.lam_t = 1.0
        # detached [B] gaps of the current epoch's training steps (gap_source: steps), on the device
        self._step_gaps: list[torch.Tensor] = []
        self._previous_gaps: np.ndarray | None = None  # the last finished epoch's, on the host
        # report diagnostics: every fit's mixture and the gap histograms of the first and last fit
        self.fits: list[dict] = []
        self.histograms: dict[str, dict] = {}

    @property
    def order(self) -> list[str]:
        """(first, second) modality of g = s^first − s^second."""
        return list(self.ctx.modalities)

    def adaptive(self, epoch: int) -> bool:
        """Whether ``epoch`` belongs to the adaptive phase."""
        return epoch >= self.warmup

    def optimizer_overrides(self) -> dict:
        """``train`` keys replaced for this method's optimizer (the optimizer ablation); the
        Trainer applies them from the first step, so a resumed run rebuilds the same optimizer."""
        return {k: self.cfg[k] for k in ("optimizer", "lr") if self.cfg.get(k) is not None}

    # ---- epoch hooks ---------------------------------------------------------------------

    def on_epoch_start(self, epoch: int, trainer) -> None:
        overrides = self.optimizer_overrides()
        if not self.adaptive(epoch):
            return
        if epoch == self.warmup and self.cfg.get("reset_optimizer", True):
            trainer.reset_optimizer(**overrides)
        since = epoch - self.warmup
        self.lam_t = self.anneal ** (since if self.anneal_from == "adaptive" else epoch)
        if since % self.fit_every == 0 or self.gmm is None:
            gaps = self._previous_gaps if self.gap_source == "steps" and self._previous_gaps is not None else None
            if gaps is None or gaps.size < 2:
                gaps = self.collect_gaps(trainer)
            self.gmm = fit_gmm(gaps, int(self.cfg.get("gmm_seed", 0)))
            self._record_fit(epoch, gaps)
            self.log(gap_mean=float(gaps.mean()), gmm_mu0=self.gmm["means"][0], gmm_mu1=self.gmm["means"][1],
                     gmm_pi0=self.gmm["weights"][0], gmm_var0=self.gmm["vars"][0], gmm_var1=self.gmm["vars"][1])

    def on_epoch_end(self, epoch: int, trainer) -> None:
        """Read the epoch's step gaps back (one device sync per epoch) for the next fit."""
        if self.gap_source == "steps":
            steps = torch.cat(self._step_gaps) if self._step_gaps else torch.empty(0)
            self._previous_gaps = all_gather_cat(steps).cpu().numpy()
        self._step_gaps = []

    def _record_fit(self, epoch: int, gaps: np.ndarray) -> None:
        """Keep the fitted mixture and the gap histogram (the first fit's and the latest's)."""
        self.fits.append({"epoch": epoch, "n": int(gaps.size), "gap_mean": float(gaps.mean()), **self.gmm})
        hist = {"epoch": epoch, **gap_histogram(gaps)}
        self.histograms.setdefault("first", hist)
        self.histograms["last"] = hist

    def diagnostics(self) -> dict:
        """Gap histograms (first and last adaptive fit, bins over [−1, 1]) and every fit's mixture
        (``weights``/``means``/``vars``, balanced component first), for GMM-AL Fig. 2/3."""
        return {"order": self.order, "warmup_epochs": self.warmup, "fits": list(self.fits),
                "histograms": dict(self.histograms)}

    @torch.no_grad()
    def collect_gaps(self, trainer) -> np.ndarray:
        """Gaps of every training sample, evaluation mode (fixed frames), [N]. Under DDP each rank
        scores its share and the gaps are all-gathered, so every rank fits the same mixture."""
        model = trainer.model
        was_training = model.training
        model.eval()
        try:
            gaps = [modality_gap(model(x).unimodal_logits, y, self.order) for x, y in trainer.batches("train", train=False, shard=True)]
        finally:
            model.train(was_training)
        return all_gather_cat(torch.cat(gaps) if gaps else torch.empty(0)).cpu().numpy()

    # ---- loss ----------------------------------------------------------------------------

    def loss(self, out, labels: torch.Tensor) -> torch.Tensor:
        """Warm-up: Eq. 7. Adaptive: Eq. 10 with per-sample GMM posteriors."""
        gap = modality_gap(out.unimodal_logits, labels, self.order)  # [B], differentiable
        self.log(gap=gap.detach().mean())  # a tensor: the loop reads the epoch's values back once
        if self.gap_source == "steps" and gap.requires_grad:  # a training step, not an evaluation
            self._step_gaps.append(gap.detach())
        if not self.adaptive(self.ctx.epoch) or self.gmm is None:
            uni = sum(F.cross_entropy(u, labels) for u in out.unimodal_logits.values())
            return F.cross_entropy(out.logits, labels) + uni
        if self.use_weights:
            w_bal, w_imb = posteriors(gap, self.gmm)
        else:  # "w/o GMM weights": w_bal = w_imb = 1
            w_bal = w_imb = torch.ones_like(gap)
        self.log(lambda_t=self.lam_t, w_imbalanced=w_imb.detach().mean())
        return adaptive_loss(out.logits, labels, gap, w_bal, w_imb, self.gmm["means"][0], self.lam_t,
                             self.alpha, self.beta, self.gamma)

    def state_dict(self) -> dict:
        # the diagnostics travel with the checkpoint, so a resumed run still reports its first fit
        # the last epoch's step gaps too: a run resumed at an epoch boundary fits on the same gaps
        previous = None if self._previous_gaps is None else torch.from_numpy(self._previous_gaps.copy())  # [N]
        return {"gmm": self.gmm, "lambda_t": self.lam_t, "fits": list(self.fits), "histograms": dict(self.histograms),
                "step_gaps": previous}

    def load_state_dict(self, state: dict) -> None:
        self.gmm = state.get("gmm")
        self.lam_t = float(state.get("lambda_t", 1.0))
        self.fits = list(state.get("fits", []))
        self.histograms = dict(state.get("histograms", {}))
        previous = state.get("step_gaps")
        self._previous_gaps = None if previous is None else torch.as_tensor(previous).numpy().copy()
