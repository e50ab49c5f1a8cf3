"""The i-vector encoder (OPM/OGM Tab. 8): cepstra, deltas, UBM posteriors, the i-vector posterior
and one EM step of the total-variability matrix against hand / reference computations; the fit
through the training loop (once, before epoch 0, without touching the run's random draws); a
CPU training step; the refusal to run unfitted."""

import math

import numpy as np
import pytest
import torch
from scipy.fft import dct
from sklearn.mixture import GaussianMixture
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.models import build_model
from mmbalance.models.encoders import ENCODERS, build_encoder
from mmbalance.models.ivector import (baum_welch, cepstra, deltas, diag_gmm_posteriors, ivector_posterior,
                                      train_total_variability)
from mmbalance.train.loop import fit, fit_front_ends

from conftest import IN_CHANNELS, tiny_split

MINI = {"name": "ivector", "cepstra": 6, "components": 3, "rank": 4, "hidden": 8, "embed_dim": 5, "input_size": [16, 20],
        "ubm_iters": 20, "tv_iters": 3}


def fitted_encoder(seed: int = 0):
    enc = build_encoder(MINI, 1)
    gen = torch.Generator().manual_seed(1)
    data = [torch.randn(6, 1, 33, 40, generator=gen) + torch.linspace(0, 2, 33)[:, None] * (i % 3) for i in range(4)]
    enc.body.fit_from_data(iter(data), seed)
    return enc, data


def test_registered_and_refuses_to_run_unfitted():
    assert "ivector" in ENCODERS.names()
    enc = build_encoder(MINI, 1)
    with pytest.raises(RuntimeError, match="not fitted.*before the first epoch"):
        enc(torch.randn(2, 1, 33, 40))
    with pytest.raises(ValueError, match="1-channel spectrogram.*in_channels=3"):
        build_encoder(MINI, 3)


def test_cepstra_are_the_orthonormal_dct_minus_the_utterance_mean():
    spec = torch.randn(2, 1, 10, 7, dtype=torch.float64)
    ref = dct(spec[:, 0].numpy(), type=2, norm="ortho", axis=1)[:, :4]  # [N, 4, T]
    ref = ref - ref.mean(axis=2, keepdims=True)
    np.testing.assert_allclose(cepstra(spec, 4).numpy(), ref.transpose(0, 2, 1), atol=1e-12)


def test_deltas_by_hand():
    c = torch.tensor([[[0.0], [1.0], [4.0], [9.0], [16.0]]])  # [1, 5, 1]: t²
    # interior frame t=2: (1·(9 − 1) + 2·(16 − 0)) / 10 = 4; frame 0 with edges repeated:
    # (1·(1 − 0) + 2·(4 − 0)) / 10 = 0.9; last frame: (1·(16 − 9) + 2·(16 − 4)) / 10 = 3.1
    d = deltas(c)[0, :, 0]
    torch.testing.assert_close(d[[0, 2, 4]], torch.tensor([0.9, 4.0, 3.1]))


def test_posteriors_match_scikit_learn():
    x = np.random.default_rng(0).normal(size=(200, 3))
    gmm = GaussianMixture(3, covariance_type="diag", random_state=0).fit(x)
    ours = diag_gmm_posteriors(torch.from_numpy(x), torch.from_numpy(gmm.weights_), torch.from_numpy(gmm.means_),
                               torch.from_numpy(gmm.covariances_))
    np.testing.assert_allclose(ours.numpy(), gmm.predict_proba(x), atol=1e-10)


def test_ivector_posterior_against_the_formula_written_out():
    rng = np.random.default_rng(1)
    c, d, r = 2, 3, 2
    t = rng.normal(size=(c, d, r))
    var = rng.uniform(0.5, 2.0, size=(c, d))
    n = np.array([[3.0, 1.0]])
    f = rng.normal(size=(1, c, d))
    precision = np.eye(r) + sum(n[0, k] * t[k].T @ np.diag(1 / var[k]) @ t[k] for k in range(c))
    rhs = sum(t[k].T @ np.diag(1 / var[k]) @ f[0, k] for k in range(c))
    mean, cov = ivector_posterior(*(torch.from_numpy(a) for a in (n, f, t, var)))
    np.testing.assert_allclose(mean[0].numpy(), np.linalg.solve(precision, rhs), atol=1e-12)
    np.testing.assert_allclose(cov[0].numpy(), np.linalg.inv(precision), atol=1e-12)


def test_one_em_step_of_the_total_variability_matrix():
    rng = np.random.default_rng(2)
    u, c, d, r = 5, 2, 3, 2
    n, f = rng.uniform(1, 4, size=(u, c)), rng.normal(size=(u, c, d))
    var = rng.uniform(0.5, 2.0, size=(c, d))
    n_t, f_t, var_t = (torch.from_numpy(a) for a in (n, f, var))
    start = train_total_variability(n_t, f_t, var_t, r, 0, torch.Generator().manual_seed(0)).numpy()
    one = train_total_variability(n_t, f_t, var_t, r, 1, torch.Generator().manual_seed(0)).numpy()
    mean, cov = ivector_posterior(n_t, f_t, torch.from_numpy(start), var_t)
    mean, cov = mean.numpy(), cov.numpy()
    for k in range(c):  # T_k = (Σ_u F̃_uk E[w_u]ᵀ)(Σ_u N_uk (L_u⁻¹ + E[w_u]E[w_u]ᵀ))⁻¹
        acc_c = sum(np.outer(f[i, k], mean[i]) for i in range(u))
        acc_a = sum(n[i, k] * (cov[i] + np.outer(mean[i], mean[i])) for i in range(u))
        np.testing.assert_allclose(one[k], acc_c @ np.linalg.inv(acc_a), atol=1e-10)


def test_baum_welch_statistics_by_hand():
    # one component: γ = 1 for every frame, so N = T and F̃ = Σ_t (x_t − μ)
    x = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]], dtype=torch.float64)  # [1, 2, 2]
    n, f = baum_welch(x, torch.ones(1, dtype=torch.float64), torch.tensor([[1.0, 1.0]], dtype=torch.float64),
                      torch.ones(1, 2, dtype=torch.float64))
    torch.testing.assert_close(n, torch.tensor([[2.0]], dtype=torch.float64))
    torch.testing.assert_close(f, torch.tensor([[[2.0, 6.0]]], dtype=torch.float64))


def test_fitted_extractor_whitens_the_training_ivectors_and_steps():
    enc, data = fitted_encoder()
    iv = enc.body.extract(torch.cat(data))  # [24, 4]: centred, whitened, then length-normalised to √rank
    torch.testing.assert_close(iv.norm(dim=-1), torch.full((24,), 2.0))
    enc.train()
    head = torch.nn.Linear(enc.out_dim, 3)
    buffers = {k: v.clone() for k, v in enc.named_buffers()}
    loss = F.cross_entropy(head(enc(data[0])), torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    for name, p in enc.named_parameters():  # the back end only: the extractor holds no parameters
        assert name.startswith("body.backend.") and p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(torch.equal(v, dict(enc.named_buffers())[k]) for k, v in buffers.items())


def test_fit_is_deterministic_per_seed():
    a, _ = fitted_encoder(0)
    b, _ = fitted_encoder(0)
    c, _ = fitted_encoder(1)
    assert torch.equal(a.body.t_matrix, b.body.t_matrix)
    assert not torch.equal(a.body.t_matrix, c.body.t_matrix)


def test_the_training_loop_fits_the_front_end_before_the_first_epoch():
    cfg = {"fusion": "concat", "encoders": {"audio": MINI, "visual": {"name": "tiny_cnn", "channels": [4, 8]}}}
    torch.manual_seed(0)
    model = build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, "concat")
    method = build_method("concat", {}, MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=1))
    model.method_modules.update(method.modules(model.feature_dims, 6))
    splits = {"train": tiny_split(12), "test": tiny_split(6, seed=1)}
    res = fit(model, method, splits, {"batch_size": 4, "lr": 0.01, "epochs": 1}, seed=0, name="concat")
    assert bool(model.encoders["audio"].body.fitted) and math.isfinite(res["test"]["acc"])
    assert bool(res["best_state"]["model"]["encoders.audio.body.fitted"])


def test_models_without_a_front_end_read_no_batch():
    class Trainer:  # a run without i-vectors: the hook must not touch the data (or any random draw)
        def batches(self, *a, **k):
            raise AssertionError("read the training split")

    model = build_model({"fusion": "concat", "encoders": {"audio": {"name": "tiny_cnn", "channels": [4]},
                                                          "visual": {"name": "tiny_cnn", "channels": [4]}}},
                        ["audio", "visual"], IN_CHANNELS, 6, "concat")
    fit_front_ends(model, Trainer(), 0)
