"""I-vector audio encoder (Dehak et al., IEEE TASLP 2011), registered as ``ivector``: OPM/OGM Tab. 8.

The OPM/OGM paper (TPAMI 2024) combines its modulation with "task-oriented" emotion-recognition
methods on CREMA-D, among them I-vector [60] (Heracleous & Yoneyama, PLoS ONE 2019: i-vectors of
the utterance, classified by a DNN back-end). The encoder is that system's audio branch:

- **Front end** (fixed, fitted without labels on the training split before the first epoch, as
  an i-vector extractor is): cepstra of each spectrogram frame (orthonormal DCT-II over the
  log-magnitude bins, the first ``cepstra`` coefficients, per-utterance cepstral mean
  normalisation, then Δ over ±2 frames); a diagonal-covariance GMM universal background model of
  ``components`` Gaussians (scikit-learn ``GaussianMixture``, EM); a total-variability matrix T of
  rank ``rank`` trained by EM on the utterances' Baum-Welch statistics (Kenny's algorithm, the
  one of Dehak et al. §III); the i-vector of an utterance is the posterior mean
  w = L⁻¹ Σ_c T_cᵀ Σ_c⁻¹ F̃_c with L = I + Σ_c N_c T_cᵀ Σ_c⁻¹ T_c; then centring and whitening with
  the training i-vectors' mean and covariance, and length normalisation (Garcia-Romero &
  Espy-Wilson, Interspeech 2011), the usual i-vector post-processing.
- **Back end** (trained jointly with the rest of the model, the part OPM/OGM modulate): a DNN on
  the i-vector, two affine layers with a ReLU between them → the ``embed_dim`` feature that the
  fusion head reads.

The fit is triggered by the training loop (``fit_from_data``, called once before epoch 0 of a
fresh run; a resumed run restores the fitted extractor from its checkpoint, since the UBM, T and
the whitening are buffers of the state dict). A model that was never fitted refuses to run, with
an error saying so, rather than producing i-vectors of an arbitrary extractor.

Inputs: a 1-channel log spectrogram [N, 1, F, T]; ``input_size`` [F', T'] average-pools it first,
as the other encoders do (F' bins give the cepstra, T' frames the statistics). There are no
convolutional stages, so intermediate-fusion backbones (MMTM, mmFormer) refuse it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.models.encoders import ENCODERS, FrameAveraging

__all__ = ["IVector", "baum_welch", "cepstra", "deltas", "diag_gmm_posteriors", "ivector", "ivector_posterior",
           "train_total_variability"]

# Floor of the UBM variances: a bin that is constant over the training frames (e.g. padding)
# would otherwise give an infinite precision.
VARIANCE_FLOOR = 1e-4


def cepstra(spec: torch.Tensor, n: int) -> torch.Tensor:
    """Log spectrogram [N, 1, F, T] → cepstra [N, T, n]: the orthonormal DCT-II of every frame over
    its F bins, first ``n`` coefficients, minus the utterance's mean (cepstral mean normalisation,
    which removes a fixed channel response)."""
    f = spec.shape[2]
    k = torch.arange(n, dtype=spec.dtype, device=spec.device)[:, None]  # [n, 1]
    i = torch.arange(f, dtype=spec.dtype, device=spec.device)[None, :]  # [1, F]
    basis = torch.cos(math.pi / f * (i + 0.5) * k) * math.sqrt(2.0 / f)  # [n, F]
    basis[0] /= math.sqrt(2.0)  # orthonormal scaling of c0
    c = torch.einsum("nf,bft->btn", basis, spec[:, 0])  # [N, T, n]
    return c - c.mean(dim=1, keepdim=True)


def deltas(c: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Regression deltas over ±``width`` frames (HTK's formula, edge frames repeated):
    d_t = Σ_k k (c_{t+k} − c_{t−k}) / (2 Σ_k k²). ``c`` [N, T, D] → [N, T, D]."""
    t = c.shape[1]
    padded = torch.cat([c[:, :1].expand(-1, width, -1), c, c[:, -1:].expand(-1, width, -1)], dim=1)
    num = sum(k * (padded[:, width + k : width + k + t] - padded[:, width - k : width - k + t]) for k in range(1, width + 1))
    return num / (2 * sum(k * k for k in range(1, width + 1)))


def diag_gmm_posteriors(x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """Component posteriors γ [..., C] of frames ``x`` [..., D] under a diagonal GMM (weights [C],
    means and variances [C, D])."""
    prec = 1.0 / variances  # [C, D]
    # log N(x; μ_c, Σ_c) = −½ [D log 2π + Σ log σ² + Σ (x − μ)² / σ²], expanded so that no [.., C, D] tensor is built
    quad = (x * x) @ prec.T - 2 * x @ (means * prec).T + (means * means * prec).sum(-1)  # [..., C]
    log_norm = -0.5 * (x.shape[-1] * math.log(2 * math.pi) + variances.log().sum(-1))  # [C]
    return torch.softmax(weights.log() + log_norm - 0.5 * quad, dim=-1)


def baum_welch(frames: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor):
    """Zeroth- and centred first-order statistics of utterances ``frames`` [U, T, D]:
    N [U, C] = Σ_t γ_tc and F̃ [U, C, D] = Σ_t γ_tc (x_t − μ_c)."""
    gamma = diag_gmm_posteriors(frames, weights, means, variances)  # [U, T, C]
    n = gamma.sum(dim=1)  # [U, C]
    f = torch.einsum("utc,utd->ucd", gamma, frames) - n[..., None] * means  # [U, C, D]
    return n, f


def ivector_posterior(n: torch.Tensor, f: torch.Tensor, t_matrix: torch.Tensor, variances: torch.Tensor):
    """Posterior of the latent factor w of utterances with statistics N [U, C], F̃ [U, C, D] under
    T [C, D, R]: precision L = I + Σ_c N_c T_cᵀ Σ_c⁻¹ T_c [U, R, R] and mean L⁻¹ Σ_c T_cᵀ Σ_c⁻¹ F̃_c
    [U, R]. Returns (mean, L⁻¹)."""
    r = t_matrix.shape[-1]
    weighted = t_matrix / variances[..., None]  # Σ_c⁻¹ T_c [C, D, R]
    per_comp = torch.einsum("cdr,cds->crs", t_matrix, weighted)  # T_cᵀ Σ_c⁻¹ T_c [C, R, R]
    precision = torch.eye(r, dtype=n.dtype, device=n.device) + torch.einsum("uc,crs->urs", n, per_comp)
    proj = torch.einsum("ucd,cdr->ur", f, weighted)  # Σ_c T_cᵀ Σ_c⁻¹ F̃_c [U, R]
    cov = torch.linalg.inv(precision)  # [U, R, R], symmetric positive definite
    return torch.einsum("urs,us->ur", cov, proj), cov


def train_total_variability(n: torch.Tensor, f: torch.Tensor, variances: torch.Tensor, rank: int, iters: int,
                            gen: torch.Generator, chunk: int = 512) -> torch.Tensor:
    """EM for T [C, D, R] from the training utterances' statistics (Kenny et al. 2005; Dehak et al.
    2011 §III): E-step, each utterance's posterior mean E[w] and E[wwᵀ] = L⁻¹ + E[w]E[w]ᵀ; M-step,
    T_c = (Σ_u F̃_uc E[w_u]ᵀ)(Σ_u N_uc E[w_u w_uᵀ])⁻¹. Starts from a seeded random T scaled by the
    UBM's standard deviations."""
    c, d = variances.shape
    t_matrix = torch.randn(c, d, rank, generator=gen, dtype=torch.float64).to(n) * variances.sqrt()[..., None] * 0.1
    for _ in range(iters):
        acc_a, acc_c = n.new_zeros(c, rank, rank), n.new_zeros(c, d, rank)
        # utterances in chunks: the posterior covariances are [U, R, R] (2 GB for the paper
        # profile's 6,698 clips at rank 200 in float64)
        for lo in range(0, len(n), chunk):
            n_u, f_u = n[lo : lo + chunk], f[lo : lo + chunk]
            mean, cov = ivector_posterior(n_u, f_u, t_matrix, variances)
            second = cov + mean[:, :, None] * mean[:, None, :]  # E[wwᵀ] [u, R, R]
            acc_a += torch.einsum("uc,urs->crs", n_u, second)  # [C, R, R]
            acc_c += torch.einsum("ucd,ur->cdr", f_u, mean)  # [C, D, R]
        t_matrix = torch.linalg.solve(acc_a, acc_c.transpose(1, 2)).transpose(1, 2)  # C_c A_c⁻¹ (A_c symmetric)
    return t_matrix


class IVector(nn.Module):
    """Spectrogram [N, 1, F, T] → i-vector (fixed front end) → DNN back end → [N, embed_dim]."""

    def __init__(self, n_cepstra: int, components: int, rank: int, hidden: int, embed_dim: int,
                 input_size: list[int] | None, ubm_iters: int, tv_iters: int, max_frames: int) -> None:
        super().__init__()
        self.n_cepstra, self.components, self.rank = n_cepstra, components, rank
        self.input_size = tuple(input_size) if input_size else None
        self.ubm_iters, self.tv_iters, self.max_frames = ubm_iters, tv_iters, max_frames
        d = 2 * n_cepstra  # cepstra and their deltas
        # the extractor: buffers, saved with the model and fitted by fit_from_data, never by gradients
        self.register_buffer("ubm_weights", torch.full((components,), 1.0 / components))
        self.register_buffer("ubm_means", torch.zeros(components, d))
        self.register_buffer("ubm_variances", torch.ones(components, d))
        self.register_buffer("t_matrix", torch.zeros(components, d, rank))
        self.register_buffer("iv_mean", torch.zeros(rank))
        self.register_buffer("iv_whitening", torch.eye(rank))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.backend = nn.Sequential(nn.Linear(rank, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embed_dim))

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """Spectrogram [N, 1, F, T] → frame features [N, T', 2·cepstra] (cepstra and Δ), float32."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"ivector encoder: expects a spectrogram [N, 1, F, T], got {tuple(x.shape)}")
        x = x.float().contiguous()
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.adaptive_avg_pool2d(x, self.input_size)
        if x.shape[2] < self.n_cepstra:
            raise ValueError(f"ivector encoder: {self.n_cepstra} cepstra need at least as many frequency bins, "
                             f"got {x.shape[2]} ({tuple(x.shape)})")
        c = cepstra(x, self.n_cepstra)
        return torch.cat([c, deltas(c)], dim=-1)

    @torch.no_grad()
    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """Post-processed i-vectors [N, rank]: posterior mean, centred, whitened, length-normalised
        to norm √rank (so the back end sees unit-scale coordinates)."""
        if not bool(self.fitted):
            raise RuntimeError("ivector encoder: the UBM and total-variability matrix are not fitted; the training loop "
                               "fits them on the training split before the first epoch (fit_from_data)")
        frames = self.frames(x).double()
        n, f = baum_welch(frames, self.ubm_weights.double(), self.ubm_means.double(), self.ubm_variances.double())
        w, _ = ivector_posterior(n, f, self.t_matrix.double(), self.ubm_variances.double())
        w = (w - self.iv_mean.double()) @ self.iv_whitening.double()
        return (F.normalize(w, dim=-1) * math.sqrt(self.rank)).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backend(self.extract(x))  # [N, rank] → [N, embed_dim]

    @torch.no_grad()
    def fit_from_data(self, batches: Iterable[torch.Tensor], seed: int) -> None:
        """Fit the extractor on the training utterances: ``batches`` yields spectrogram batches
        [B, 1, F, T], read once (their frame features serve the UBM, then the statistics)."""
        from sklearn.mixture import GaussianMixture  # here: only runs that use i-vectors pay its import

        gen = torch.Generator().manual_seed(int(seed))
        per_batch = [self.frames(x).cpu() for x in batches]  # [B, T', D] each
        frames = torch.cat([f.flatten(0, 1) for f in per_batch])  # [ΣT', D]
        if len(frames) > self.max_frames:  # a seeded subsample keeps the UBM fit's cost bounded
            frames = frames[torch.randperm(len(frames), generator=gen)[: self.max_frames].sort().values]
        gmm = GaussianMixture(self.components, covariance_type="diag", max_iter=self.ubm_iters, reg_covar=VARIANCE_FLOOR,
                              random_state=int(seed)).fit(frames.double().numpy())
        weights, means = torch.from_numpy(gmm.weights_), torch.from_numpy(gmm.means_)
        variances = torch.from_numpy(np.maximum(gmm.covariances_, VARIANCE_FLOOR))
        stats = [baum_welch(f.double(), weights, means, variances) for f in per_batch]
        n, f = torch.cat([s[0] for s in stats]), torch.cat([s[1] for s in stats])  # [U, C], [U, C, D]
        t_matrix = train_total_variability(n, f, variances, self.rank, self.tv_iters, gen)
        w = torch.cat([ivector_posterior(n[lo : lo + 512], f[lo : lo + 512], t_matrix, variances)[0]
                       for lo in range(0, len(n), 512)])  # the training i-vectors [U, R]
        mean = w.mean(0)
        evals, evecs = torch.linalg.eigh(torch.cov((w - mean).T))  # whitening W = V diag(λ^-½)
        whitening = evecs / evals.clamp_min(1e-8 * float(evals.max())).sqrt()
        for name, value in (("ubm_weights", weights), ("ubm_means", means), ("ubm_variances", variances),
                            ("t_matrix", t_matrix), ("iv_mean", mean), ("iv_whitening", whitening)):
            getattr(self, name).copy_(value.to(getattr(self, name)))
        self.fitted.fill_(True)


@ENCODERS.register("ivector")
def ivector(in_channels: int, cepstra: int = 20, components: int = 256, rank: int = 200, hidden: int = 256,
            embed_dim: int = 256, input_size: list[int] | None = None, ubm_iters: int = 50, tv_iters: int = 5,
            max_frames: int = 500_000) -> FrameAveraging:
    """An i-vector extractor (``cepstra`` cepstra + Δ per frame, a ``components``-Gaussian diagonal
    UBM, total variability of rank ``rank``; fitted on the training split) followed by a DNN back
    end (``hidden`` units, ``embed_dim`` features). Defaults are common i-vector sizes for
    emotion recognition; the UBM's EM runs ``ubm_iters`` iterations on at most ``max_frames``
    frames, T's EM ``tv_iters``."""
    if in_channels != 1:
        raise ValueError(f"ivector encoder: reads a 1-channel spectrogram [N, 1, F, T], got in_channels={in_channels} "
                         "(use it for the spectrogram modality only)")
    if min(int(cepstra), int(components), int(rank), int(hidden), int(embed_dim)) < 1:
        raise ValueError("ivector encoder: cepstra, components, rank, hidden and embed_dim must be positive, got "
                         f"{cepstra}, {components}, {rank}, {hidden}, {embed_dim}")
    body = IVector(int(cepstra), int(components), int(rank), int(hidden), int(embed_dim), input_size, int(ubm_iters),
                   int(tv_iters), int(max_frames))
    return FrameAveraging(body, int(embed_dim))
