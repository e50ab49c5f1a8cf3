"""GMM-AL against values computed by hand from the paper's equations.

No code was released (Liu, Yu & Liu, arXiv 2025, "Quantifying Multimodal Imbalance: A GMM-Guided
Adaptive Loss for Audio-Visual Learning", v1). The reference below is written directly from its
equations, with NumPy and SciPy's normal density, independently of the plug-in:

- Eq. 3: l^a = W^a·φ^a + b/2, l^v = W^v·φ^v + b/2;  Eq. 4: s = softmax(l);  Eq. 6: g = s^a_y − s^v_y;
- Eq. 5, 7: L_warmup = CE(f) + CE(l^a) + CE(l^v) (batch means);
- Eq. 9: w_i0 = π0·N(g_i | μ0, σ0²) / Σ_k π_k·N(g_i | μ_k, σ_k²), w_i1 = 1 − w_i0;
- Eq. 10: L = α·w_i0·CE_i + λ_t·(β·g_i² + γ·w_i1·(g_i − μ0)²), averaged over the batch,
  λ_t = 0.96^e (e: epochs since the adaptive phase began, ``anneal_from: adaptive``).
"""

import numpy as np
import pytest
import torch
import yaml
from pathlib import Path
from scipy.stats import norm

from mmbalance.methods import MethodContext, build_method

from reference_models import LABELS, NUM_CLASSES, linear_inputs, linear_model

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]
GMM = {"weights": [0.857, 0.143], "means": [0.0056, 0.6966], "vars": [0.01, 0.04]}  # the paper's Fig. 2 means/weights


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def by_hand(model, alpha=1.0, beta=1.0, gamma=1.0, lam_t=0.96 ** 2):
    """(warm-up loss, adaptive loss, gaps) of the linear model's batch, from Eq. 3–10 in NumPy."""
    with torch.no_grad():
        feats = {m: f.double().numpy() for m, f in model.encode(linear_inputs()).items()}
    W, b = (t.detach().double().numpy() for t in (model.fusion.head.weight, model.fusion.head.bias))
    y = LABELS.numpy()
    f = feats["audio"] @ W[:, :3].T + feats["visual"] @ W[:, 3:].T + b  # Eq. 1
    l_a, l_v = feats["audio"] @ W[:, :3].T + b / 2, feats["visual"] @ W[:, 3:].T + b / 2  # Eq. 3
    ce = {k: -log_softmax(z)[np.arange(4), y] for k, z in (("f", f), ("a", l_a), ("v", l_v))}
    warmup = ce["f"].mean() + ce["a"].mean() + ce["v"].mean()  # Eq. 7
    g = np.exp(log_softmax(l_a))[np.arange(4), y] - np.exp(log_softmax(l_v))[np.arange(4), y]  # Eq. 6
    dens = [pi * norm.pdf(g, mu, np.sqrt(var)) for pi, mu, var in zip(GMM["weights"], GMM["means"], GMM["vars"])]
    w0 = dens[0] / (dens[0] + dens[1])  # Eq. 9
    w1 = 1.0 - w0
    mu0 = GMM["means"][0]
    adaptive = np.mean(alpha * w0 * ce["f"] + lam_t * (beta * g ** 2 + gamma * w1 * (g - mu0) ** 2))  # Eq. 10
    return warmup, adaptive, g


# Recorded from by_hand on reference_models.linear_model with the audio encoder's weights × 3
REF_WARMUP = 5.8460553731587686
REF_ADAPTIVE = 2.586098980336484
REF_GAPS = [0.48476507927453527, -0.43168725472205505, -0.27279147015417005, -0.11905553833543127]


def method_at(epoch, **over):
    cfg = {**PARAMS["gmm_al"], **over}
    method = build_method("gmm_al", cfg, MethodContext(["audio", "visual"], NUM_CLASSES, 30))
    method.ctx.epoch = epoch
    return method, cfg


def test_by_hand_reference_reproduces_recorded_values():
    # the features come from the float32 torch model, whose last bits differ between CPUs (AMD
    # EPYC and Intel Xeon here differ by ~2e-8 relative): float32 precision, not float64's
    warmup, adaptive, g = by_hand(linear_model(audio_scale=3.0))
    assert warmup == pytest.approx(REF_WARMUP, rel=1e-6)
    assert adaptive == pytest.approx(REF_ADAPTIVE, rel=1e-6)
    np.testing.assert_allclose(g, REF_GAPS, rtol=1e-6)


def test_warmup_loss_is_eq7():
    model = linear_model(audio_scale=3.0)
    method, cfg = method_at(0)
    out = model(linear_inputs())
    assert float(method.loss(out, LABELS).detach()) == pytest.approx(REF_WARMUP, rel=1e-5)


@pytest.mark.parametrize("over", [{}, {"alpha": 0.0}, {"beta": 0.0}, {"gamma": 0.0}])
def test_adaptive_loss_is_eq10(over):
    """The paper's ablation rows α = 0, β = 0, γ = 0 (Tab. 2) as well as the full loss."""
    model = linear_model(audio_scale=3.0)
    method, cfg = method_at(PARAMS["gmm_al"]["warmup_epochs"] + 2, **over)
    method.gmm, method.lam_t = GMM, cfg["anneal"] ** 2
    _, expected, _ = by_hand(model, cfg["alpha"], cfg["beta"], cfg["gamma"], cfg["anneal"] ** 2)
    out = model(linear_inputs())
    assert float(method.loss(out, LABELS).detach()) == pytest.approx(expected, rel=1e-5)
    if not over:
        assert expected == pytest.approx(REF_ADAPTIVE, rel=1e-6)  # float32 features (see above)


def test_without_gmm_weights_both_weights_are_one():
    """Tab. 2 "w/o w_i,Balance, w_i,Imbalance": Eq. 10 with w_i0 = w_i1 = 1."""
    model = linear_model(audio_scale=3.0)
    method, cfg = method_at(PARAMS["gmm_al"]["warmup_epochs"], gmm_weights=False)
    method.gmm, method.lam_t = GMM, 1.0
    warmup, _, g = by_hand(model)
    with torch.no_grad():
        out = model(linear_inputs())
        ce = torch.nn.functional.cross_entropy(out.logits, LABELS, reduction="none").double().numpy()
    expected = np.mean(ce + (g ** 2 + (g - GMM["means"][0]) ** 2))
    assert float(method.loss(model(linear_inputs()), LABELS).detach()) == pytest.approx(expected, rel=1e-5)


class FakeTrainer:
    """What GMM-AL's on_epoch_start reads: the model, training batches, an optimizer reset."""

    def __init__(self, model):
        self.model, self.resets = model, 0

    def batches(self, split, train=True, shard=False):
        for k in range(3):
            yield {m: x.roll(k, dims=0) * (1 + 0.3 * k) for m, x in linear_inputs().items()}, LABELS

    def reset_optimizer(self, **overrides):
        self.resets += 1


def test_annealing_is_096_power_of_adaptive_epochs():
    trainer, warmup = FakeTrainer(linear_model(audio_scale=3.0)), PARAMS["gmm_al"]["warmup_epochs"]
    method, _ = method_at(warmup)
    for e in range(3):
        method.on_epoch_start(warmup + e, trainer)
        assert method.lam_t == pytest.approx(0.96 ** e)
    assert trainer.resets == 1  # the optimizer reset when the adaptive phase starts (§4.4)
