"""The neuron-dropout baselines of OPM/OGM Tab. 6 (dropout, annealed, evolutional, curriculum)
against hand-computed schedules, probabilities and scalings."""

import math

import pytest
import torch

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.annealed_dropout import annealed_rate
from mmbalance.methods.curriculum_dropout import curriculum_retain, steps_per_epoch
from mmbalance.methods.dropout import bernoulli_masks
from mmbalance.methods.evolutional_dropout import evolutional_probabilities, multinomial_masks
from mmbalance.models import build_model
from mmbalance.train.loop import Trainer

from conftest import IN_CHANNELS, MODEL_CFG, tiny_split

TWO = ["audio", "visual"]


def setup(name, cfg, epochs=10):
    ctx = MethodContext(modalities=list(TWO), num_classes=6, epochs=epochs)
    method = build_method(name, cfg, ctx)
    torch.manual_seed(0)
    return method, build_model(MODEL_CFG, TWO, IN_CHANNELS, 6, "concat")


# ---------------------------------------------------------------- standard dropout


def test_survivors_are_scaled_by_one_over_keep_rate():
    torch.manual_seed(0)
    feats = {"a": torch.full((400, 500), 2.0)}  # [B, D]
    mask = bernoulli_masks(feats, 0.25)["a"]
    assert torch.unique(mask).tolist() == pytest.approx([0.0, 1 / 0.75])
    assert float((mask == 0).float().mean()) == pytest.approx(0.25, abs=0.005)
    assert float((feats["a"] * mask).mean()) == pytest.approx(2.0, abs=0.02)  # E[x·mask] = x


def test_dropout_forward_masks_single_units_not_whole_modalities(batch):
    inputs, labels = batch
    method, model = setup("dropout", {"p": 0.5})
    torch.manual_seed(1)
    clean = model.encode(inputs)
    torch.manual_seed(1)
    out = method.forward(model, inputs, labels)
    for m in TWO:
        f, c = out.features[m], clean[m]
        kept = f != 0
        assert torch.allclose(f[kept], 2.0 * c[kept])  # p = 0.5: survivors × 2
        assert kept.any(dim=1).all()  # a row keeps some units: not ModDrop's whole-modality drop
    assert set(method.ctx.logs) == {"rate", "dropped_audio", "dropped_visual"}
    assert method.ctx.logs["rate"] == [0.5]


# ---------------------------------------------------------------- annealed dropout


def test_annealed_rate_linear_to_zero():
    # p0 = 0.5, N = 10: 0.5·(1 − t/10)
    assert annealed_rate(0.5, 0, 10) == 0.5
    assert annealed_rate(0.5, 4, 10) == pytest.approx(0.3)
    assert annealed_rate(0.5, 10, 10) == 0.0
    assert annealed_rate(0.5, 12, 10) == 0.0  # max(0, ·): stays at 0 after N


def test_annealed_default_reaches_zero_in_the_last_epoch():
    method, _ = setup("annealed_dropout", {"p0": 0.6, "anneal_epochs": None}, epochs=4)
    rates = []
    for epoch in range(4):
        method.ctx.epoch = epoch
        rates.append(method.drop_rate())
    assert rates == pytest.approx([0.6, 0.4, 0.2, 0.0])  # N = epochs − 1 = 3


# ---------------------------------------------------------------- curriculum dropout


def test_curriculum_retain_schedule():
    # θ̄ = 0.5, γ = 0.1: θ(0) = 1, θ(10) = 0.5·e⁻¹ + 0.5 = 0.683940, θ(∞) = 0.5
    assert curriculum_retain(0, 0.5, 0.1) == 1.0
    assert curriculum_retain(10, 0.5, 0.1) == pytest.approx(0.5 * math.exp(-1) + 0.5)
    assert curriculum_retain(10, 0.5, 0.1) == pytest.approx(0.683940, abs=1e-6)
    assert curriculum_retain(10_000, 0.5, 0.1) == pytest.approx(0.5)


def test_curriculum_gamma_from_the_run_length():
    # 12 training clips, batch 6: 2 steps per epoch; 5 epochs → T = 10, γ = 10/T = 1 per step
    method, model = setup("curriculum_dropout", {"theta_bar": 0.5, "gamma_T": 10.0}, epochs=5)
    trainer = Trainer(model, method, {"train": tiny_split(12, 0)}, {"batch_size": 6, "lr": 0.1, "optimizer": "sgd"}, 0, "cd")
    assert steps_per_epoch(trainer) == 2
    method.on_epoch_start(0, trainer)
    assert method.total_steps == 10 and method.gamma() == pytest.approx(1.0)
    method.ctx.step = 0
    assert method.drop_rate() == 0.0  # starts without dropout
    method.ctx.step = 3
    assert method.drop_rate() == pytest.approx(0.5 - 0.5 * math.exp(-3))  # 1 − θ(3) = 0.475107
    fixed, _ = setup("curriculum_dropout", {"theta_bar": 0.7, "gamma": 0.01})
    fixed.ctx.step = 100
    assert fixed.drop_rate() == pytest.approx(0.3 - 0.3 * math.exp(-1))  # a fixed γ needs no run length


# ---------------------------------------------------------------- evolutional dropout


def test_evolutional_probabilities_from_second_moments():
    # columns' RMS over the batch: sqrt((1+1)/2) = 1, sqrt((4+4)/2) = 2, sqrt((0+4)/2) = √2
    x = torch.tensor([[1.0, 2.0, 0.0], [1.0, -2.0, 2.0]])  # [B=2, D=3]
    p = evolutional_probabilities(x)
    expected = torch.tensor([1.0, 2.0, math.sqrt(2)]) / (3 + math.sqrt(2))  # [0.2265, 0.4531, 0.3204]
    assert torch.allclose(p, expected)
    assert torch.allclose(evolutional_probabilities(torch.zeros(4, 5)), torch.full((5,), 0.2))


def test_evolutional_masks_are_counts_over_k_p_and_unbiased():
    x = torch.tensor([[1.0, 2.0, 0.0], [1.0, -2.0, 2.0]])
    p = evolutional_probabilities(x)
    gen = torch.Generator().manual_seed(0)
    masks = multinomial_masks(x.repeat(20_000, 1), k=2, generator=gen)  # [40000, 3]; same p (same rows)
    counts = masks * (2 * p)  # back to the per-sample draw counts
    assert torch.allclose(counts, counts.round(), atol=1e-5) and torch.allclose(counts.sum(dim=1), torch.full((40_000,), 2.0))
    assert torch.allclose(masks.mean(dim=0), torch.ones(3), atol=0.02)  # E[m_i/(k p_i)] = 1
    # P(unit i never drawn in k = 2 draws) = (1 − p_i)²
    assert torch.allclose((masks == 0).float().mean(dim=0), (1 - p) ** 2, atol=0.01)


def test_evolutional_unit_without_signal_is_never_kept():
    x = torch.tensor([[0.0, 1.0], [0.0, 3.0]])  # unit 0 is zero over the batch: p_0 = 0
    masks = multinomial_masks(x, k=3)
    assert (masks[:, 0] == 0).all() and torch.allclose(masks[:, 1], torch.ones(2))  # p_1 = 1: 3/(3·1)


def test_evolutional_forward_uses_k_ratio_draws(batch):
    inputs, labels = batch
    method, model = setup("evolutional_dropout", {"k_ratio": 0.5})
    out = method.forward(model, inputs, labels)
    for m in TWO:
        assert method.draws(model.feature_dims[m]) == round(0.5 * model.feature_dims[m])
        assert out.features[m].shape == (8, model.feature_dims[m])
    assert set(method.ctx.logs) == {"dropped_audio", "dropped_visual"}


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("name, cfg, message", [
    ("dropout", {"p": 1.0}, r"method 'dropout': p = 1.0 must lie in \[0, 1\)"),
    ("annealed_dropout", {"p0": -0.1}, r"method 'annealed_dropout': p0 = -0.1 must lie in \[0, 1\)"),
    ("annealed_dropout", {"anneal_epochs": 0}, r"anneal_epochs = 0 must be a positive number"),
    ("curriculum_dropout", {"theta_bar": 0.0}, r"theta_bar = 0.0 must lie in \(0, 1\]"),
    ("curriculum_dropout", {"gamma_T": -1}, r"gamma_T = -1 must be positive"),
    ("evolutional_dropout", {"k_ratio": 0}, r"k_ratio = 0.0 must be positive"),
])
def test_bad_settings_are_refused_at_construction(name, cfg, message):
    with pytest.raises(ValueError, match=message):
        build_method(name, cfg, MethodContext(TWO, 6, 2))

