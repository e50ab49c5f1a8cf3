"""OGM-GE formulas against hand-computed values."""

import math

import pytest
import torch

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.ogm_ge import discrepancy_ratios, modulation_coefficient
from mmbalance.models import build_model

from conftest import IN_CHANNELS, MODEL_CFG


def test_discrepancy_ratio_two_modalities():
    # Σ s_a = 0.9 + 0.7 = 1.6, Σ s_v = 0.2 + 0.2 = 0.4 → ρ_a = 4, ρ_v = 0.25
    rho = discrepancy_ratios({"audio": torch.tensor([0.9, 0.7]), "visual": torch.tensor([0.2, 0.2])})
    assert rho["audio"] == pytest.approx(4.0)
    assert rho["visual"] == pytest.approx(0.25)


def test_discrepancy_ratio_three_modalities_averages():
    # sums 2, 1, 4: ρ_0 = (2/1 + 2/4)/2 = 1.25
    rho = discrepancy_ratios({"a": torch.tensor([2.0]), "b": torch.tensor([1.0]), "c": torch.tensor([4.0])})
    assert rho["a"] == pytest.approx(1.25)
    assert rho["c"] == pytest.approx((4 / 2 + 4 / 1) / 2)


@pytest.mark.parametrize(
    "rho, alpha, form, expected",
    [
        (4.0, 0.8, "paper", 1 - 0.8 * math.tanh(3.0)),  # 0.2039…
        (1.5, 0.5, "paper", 1 - 0.5 * math.tanh(0.5)),  # 0.7689…
        (4.0, 2.0, "paper", 0.0),  # 1 − 2·0.995 < 0 → floored at 0
        (0.25, 0.8, "paper", 1.0),  # the weak modality is not modulated
        (1.0, 0.8, "paper", 1.0),
        (4.0, 0.8, "code", 1 - math.tanh(3.2)),
        (0.5, 0.8, "code", 1.0),
    ],
)
def test_coefficient(rho, alpha, form, expected):
    assert modulation_coefficient(rho, alpha, form) == pytest.approx(expected)


def test_coefficient_by_hand():
    # tanh(3) = 0.995055 → 1 − 0.8·0.995055 = 0.203956
    assert modulation_coefficient(4.0, 0.8, "paper") == pytest.approx(0.203956, abs=1e-6)


def test_cvpr_and_journal_forms_differ():
    """OGM-GE (CVPR 2022 Eq. 10) and OGM (TPAMI 2024 Eq. 11) at ρ = 2, α = 0.8, by hand:
    1 − tanh(1.6) = 0.078331 and 1 − 0.8·tanh(1) = 0.390725."""
    assert modulation_coefficient(2.0, 0.8, "cvpr") == pytest.approx(0.078331, abs=1e-6)
    assert modulation_coefficient(2.0, 0.8, "code") == pytest.approx(0.078331, abs=1e-6)
    assert modulation_coefficient(2.0, 0.8, "paper") == pytest.approx(0.390725, abs=1e-6)


def test_default_ogm_ge_and_ogm_configurations_differ():
    """The benchmark's ogm_ge (CVPR form, GE on conv weights, epochs 0–50) is not a copy of ogm."""
    import yaml
    from pathlib import Path

    methods = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]
    assert methods["ogm_ge"]["form"] == "cvpr" and methods["ogm"]["form"] == "paper"
    assert methods["ogm_ge"]["noise_on"] == "conv"


def test_unknown_form_raises():
    with pytest.raises(ValueError, match="choices: code, cvpr, paper"):
        modulation_coefficient(2.0, 0.5, "other")


def test_gradient_scaled_only_for_dominant_modality(batch):
    """Without noise, the dominant encoder's gradient is exactly k times the plain gradient."""
    inputs, labels = batch
    torch.manual_seed(0)
    model = build_model(MODEL_CFG, ["audio", "visual"], IN_CHANNELS, 6, "concat")
    method = build_method("ogm_ge", {"alpha": 0.8, "noise": False}, MethodContext(["audio", "visual"], 6, 1))
    out = model(inputs)
    method.loss(out, labels).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    method.after_backward(model, out, labels)
    k = method.ctx.logs
    k_a, k_v = k["k_audio"][0], k["k_visual"][0]
    assert min(k_a, k_v) < 1.0 or k["rho_audio"][0] == pytest.approx(1.0)
    assert max(k_a, k_v) == 1.0
    for n, p in model.named_parameters():
        scale = k_a if n.startswith("encoders.audio") else k_v if n.startswith("encoders.visual") else 1.0
        torch.testing.assert_close(p.grad, plain[n] * scale)


def test_conv_only_falls_back_to_every_weight_without_convolutions():
    """``noise_on: conv`` (the released code) modulates 4-D conv weights only; an encoder with no
    conv weights (a sequence Transformer) is then modulated on every weight, not skipped."""
    from mmbalance.methods.ogm_ge import OGMGE

    method = OGMGE({"alpha": 0.8, "form": "cvpr", "noise": False, "noise_on": "conv"},
                   MethodContext(modalities=["a"], num_classes=2, epochs=1))
    linear = torch.nn.Linear(3, 2)
    linear.weight.grad = torch.ones(2, 3)
    method._modulate(list(linear.parameters()), 0.5)  # bias has no grad: skipped
    assert torch.equal(linear.weight.grad, torch.full((2, 3), 0.5))
    conv, lin = torch.nn.Conv2d(1, 1, 1), torch.nn.Linear(1, 1)
    conv.weight.grad, lin.weight.grad = torch.ones(1, 1, 1, 1), torch.ones(1, 1)
    method._modulate([conv.weight, lin.weight], 0.5)
    assert conv.weight.grad.item() == 0.5 and lin.weight.grad.item() == 1.0  # conv only, as the code
