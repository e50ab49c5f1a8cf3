"""GMM-AL formulas against hand-computed values, and its two phases through the loop."""

import math

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.gmm_al import adaptive_loss, fit_gmm, modality_gap, posteriors
from mmbalance.models import Output, build_model
from mmbalance.train.loop import Trainer, fit

from conftest import IN_CHANNELS, MODEL_CFG, tiny_split

AV = ["audio", "visual"]
TRAIN = {"epochs": 3, "batch_size": 6, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9}


def make(cfg):
    method = build_method("gmm_al", cfg, MethodContext(list(AV), 6, TRAIN["epochs"]))
    torch.manual_seed(0)
    model = build_model(MODEL_CFG, AV, IN_CHANNELS, 6, "concat")
    return method, model


def splits():
    return {name: tiny_split(12, seed) for name, seed in (("train", 0), ("val", 1), ("test", 2))}


def test_modality_gap_by_hand():
    # audio softmax(0, ln 3) = (0.25, 0.75), visual (0.5, 0.5); true class 1 → g = 0.75 − 0.5
    uni = {"audio": torch.tensor([[0.0, math.log(3)]]), "visual": torch.zeros(1, 2)}
    assert float(modality_gap(uni, torch.tensor([1]), AV)) == pytest.approx(0.25)
    assert float(modality_gap(uni, torch.tensor([0]), AV)) == pytest.approx(-0.25)


def test_posteriors_by_hand():
    gmm = {"weights": [0.8, 0.2], "means": [0.0, 0.7], "vars": [0.01, 0.04]}
    # π0·N(0.35|0, 0.01) = 0.8·3.98942·e^−6.125 = 0.0069814; π1·N(0.35|0.7, 0.04) = 0.2·1.99471·e^−1.53125 = 0.0862773
    w_bal, w_imb = posteriors(torch.tensor([0.35, 0.0]), gmm)
    assert float(w_bal[0]) == pytest.approx(0.0069814 / (0.0069814 + 0.0862773), rel=1e-4)
    assert float(w_bal[0] + w_imb[0]) == pytest.approx(1.0)
    assert float(w_bal[1]) > 0.99  # a gap at the balanced mean


def test_fit_orders_balanced_first_and_matches_sklearn_posteriors():
    rng = np.random.default_rng(0)
    gaps = np.concatenate([rng.normal(0.7, 0.1, 150), rng.normal(0.005, 0.05, 850)])  # as in the paper's Fig. 2
    gmm = fit_gmm(gaps, seed=0)
    assert abs(gmm["means"][0]) < 0.02 and gmm["means"][1] == pytest.approx(0.7, abs=0.03)
    assert gmm["weights"][0] == pytest.approx(0.85, abs=0.02)
    sk = GaussianMixture(2, random_state=0).fit(gaps[:, None])
    bal = int(np.argmin(np.abs(sk.means_[:, 0])))
    probe = np.linspace(-0.5, 1.0, 7)
    w_bal, _ = posteriors(torch.tensor(probe, dtype=torch.float32), gmm)
    np.testing.assert_allclose(w_bal.numpy(), sk.predict_proba(probe[:, None])[:, bal], atol=1e-5)


def test_adaptive_loss_by_hand():
    logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])  # CE = ln 2 each
    gap = torch.tensor([0.1, 0.6])
    w_bal, w_imb = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.5])
    # α·mean(w_bal·CE) = 0.75·ln2 = 0.519860; penalties 0.5·0.01 = 0.005 and 0.5·0.36 + 2·0.5·0.36 = 0.54
    # → λ_t·mean = 0.9216·0.2725 = 0.251136
    loss = adaptive_loss(logits, labels, gap, w_bal, w_imb, mu0=0.0, lam_t=0.96**2, alpha=1.0, beta=0.5, gamma=2.0)
    assert float(loss) == pytest.approx(0.75 * math.log(2) + 0.96**2 * 0.2725, abs=1e-6)
    # μ0 shifts the γ term: (0.6 − 0.1)² = 0.25 instead of 0.36 for sample 2
    loss = adaptive_loss(logits, labels, gap, w_bal, w_imb, mu0=0.1, lam_t=1.0, alpha=0.0, beta=0.0, gamma=2.0)
    assert float(loss) == pytest.approx((0.0 + 2 * 0.5 * 0.25) / 2)


def _out(fused, a, v):
    return Output(logits=fused, features={}, unimodal_logits={"audio": a, "visual": v})


def test_warmup_loss_is_three_cross_entropies():
    method, _ = make({"warmup_epochs": 2})
    labels = torch.tensor([1])
    a, v = torch.tensor([[0.0, math.log(3)]]), torch.zeros(1, 2)
    # −ln 0.5 (fused) − ln 0.75 (audio) − ln 0.5 (visual)
    assert float(method.loss(_out(torch.zeros(1, 2), a, v), labels)) == pytest.approx(2 * math.log(2) - math.log(0.75))


@pytest.mark.parametrize("cfg, expected", [
    # gap 0.25, GMM below; w_imb = posterior of 0.25; λ_t = 1 (first adaptive epoch)
    ({}, "full"),
    ({"gmm_weights": False}, "unweighted"),
    ({"alpha": 0.0}, "no_ce"),
])
def test_adaptive_loss_switches(cfg, expected):
    method, _ = make({"warmup_epochs": 0, "beta": 0.5, "gamma": 2.0, **cfg})
    method.gmm = {"weights": [0.8, 0.2], "means": [0.05, 0.7], "vars": [0.01, 0.04]}
    labels = torch.tensor([1])
    out = _out(torch.zeros(1, 2), torch.tensor([[0.0, math.log(3)]]), torch.zeros(1, 2))
    w_bal, w_imb = (float(w) for w in posteriors(torch.tensor([0.25]), method.gmm))
    if expected == "unweighted":
        w_bal = w_imb = 1.0
    ce = math.log(2) * (0.0 if expected == "no_ce" else 1.0)
    want = ce * w_bal + 0.5 * 0.25**2 + 2.0 * w_imb * (0.25 - 0.05) ** 2
    assert float(method.loss(out, labels)) == pytest.approx(want, rel=1e-5)


def test_epoch_hooks_fit_reset_and_anneal():
    method, model = make({"warmup_epochs": 1})
    trainer = Trainer(model, method, splits(), TRAIN, seed=0, name="gmm_al")
    first = trainer.optimizer
    method.on_epoch_start(0, trainer)
    assert method.gmm is None and trainer.optimizer is first  # warm-up: nothing happens
    method.on_epoch_start(1, trainer)
    assert trainer.optimizer is not first and method.lam_t == 1.0
    assert set(method.gmm) == {"weights", "means", "vars"} and abs(method.gmm["means"][0]) <= abs(method.gmm["means"][1])
    assert method.state_dict()["gmm"] == method.gmm
    assert {"gap_mean", "gmm_mu0", "gmm_mu1", "gmm_pi0"} <= set(method.ctx.logs)
    method.on_epoch_start(3, trainer)
    assert method.lam_t == pytest.approx(0.96**2)


def test_no_reset_and_adam_override():
    method, model = make({"warmup_epochs": 1, "reset_optimizer": False, "optimizer": "adam", "lr": 0.001})
    trainer = Trainer(model, method, splits(), TRAIN, seed=0, name="gmm_al")
    method.on_epoch_start(0, trainer)
    adam = trainer.optimizer
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 0.001
    method.on_epoch_start(1, trainer)
    assert trainer.optimizer is adam  # "same state"


def test_two_modalities_only():
    with pytest.raises(ValueError, match="gmm_al.*text"):
        build_method("gmm_al", {}, MethodContext(["text", "audio", "vision"], 2, 1))


def test_fit_through_adaptive_phase():
    method, model = make({"warmup_epochs": 1})
    res = fit(model, method, splits(), TRAIN, seed=0, name="gmm_al")
    assert res["epochs"] == 3 and math.isfinite(res["history"][-1]["train_loss"])
    assert "gmm_mu0" in res["history"][1] and "lambda_t" in res["history"][2]
    assert res["history"][2]["lambda_t"] == pytest.approx(0.96)


def _step(method, trainer, batch_logits, labels):
    """One training step's loss on given unimodal logits (a graph, as in training)."""
    uni = {m: z.clone().requires_grad_(True) for m, z in batch_logits.items()}
    fused = sum(uni.values())
    return method.loss(Output(fused, {}, uni), labels)


def test_step_gaps_feed_the_next_fit_without_a_pass(monkeypatch):
    # gap_source steps: the fit at the start of epoch 1 uses exactly the gaps of epoch 0's steps
    method, model = make({"warmup_epochs": 1, "gap_source": "steps"})
    trainer = Trainer(model, method, splits(), TRAIN, seed=0, name="gmm_al")
    monkeypatch.setattr(method, "collect_gaps", lambda t: pytest.fail("no evaluation pass with step gaps"))
    gen = torch.Generator().manual_seed(0)
    want = []
    method.on_epoch_start(0, trainer)
    for _ in range(3):
        logits = {m: torch.randn(4, 6, generator=gen) for m in AV}
        labels = torch.randint(0, 6, (4,), generator=gen)
        want.append(modality_gap(logits, labels, AV))
        _step(method, trainer, logits, labels)
    with torch.no_grad():  # an evaluation-time loss is not a training step: not buffered
        method.loss(Output(torch.zeros(2, 6), {}, {m: torch.zeros(2, 6) for m in AV}), torch.zeros(2, dtype=torch.long))
    method.on_epoch_end(0, trainer)
    gaps = torch.cat(want).numpy()
    method.on_epoch_start(1, trainer)
    assert method.fits[0]["n"] == 12 and method.fits[0]["gap_mean"] == pytest.approx(float(gaps.mean()), abs=1e-6)
    assert method.gmm == fit_gmm(gaps, 0)


def test_pass_source_and_missing_step_gaps_use_the_evaluation_pass():
    for cfg, buffered in (({"gap_source": "pass"}, True), ({"gap_source": "steps"}, False)):
        method, model = make({"warmup_epochs": 1, **cfg})
        trainer = Trainer(model, method, splits(), TRAIN, seed=0, name="gmm_al")
        if buffered:
            _step(method, trainer, {m: torch.randn(4, 6) for m in AV}, torch.zeros(4, dtype=torch.long))
            method.on_epoch_end(0, trainer)
        method.on_epoch_start(1, trainer)
        assert method.fits[0]["n"] == 12  # the whole training split, scored by the pass


def test_step_gaps_travel_with_the_state():
    method, model = make({"warmup_epochs": 1})
    trainer = Trainer(model, method, splits(), TRAIN, seed=0, name="gmm_al")
    _step(method, trainer, {m: torch.randn(5, 6) for m in AV}, torch.arange(5))
    method.on_epoch_end(0, trainer)
    other, _ = make({"warmup_epochs": 1})
    other.load_state_dict(method.state_dict())
    other.on_epoch_start(1, trainer)
    method.on_epoch_start(1, trainer)
    assert other.fits == method.fits and other.fits[0]["n"] == 5


def test_unknown_gap_source():
    with pytest.raises(ValueError, match="gap_source"):
        make({"gap_source": "batch"})
