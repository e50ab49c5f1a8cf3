"""OGM (TPAMI Eq. 11), OGM* and OPM+OGM against hand-computed values."""

import math

import pytest
import torch

from mmbalance.methods import MethodContext, build_method, true_class_scores
from mmbalance.methods.ogm import boost_coefficient, gradient_coefficient
from mmbalance.methods.ogm_ge import modulation_coefficient
from mmbalance.methods.opm import discrepancy
from mmbalance.models import build_model

from conftest import IN_CHANNELS, MODEL_CFG

MODS = ["audio", "visual"]


def setup(name, cfg, epoch=0):
    torch.manual_seed(0)
    model = build_model(MODEL_CFG, MODS, IN_CHANNELS, 6, "concat")
    method = build_method(name, cfg, MethodContext(list(MODS), 6, 3))
    method.ctx.epoch = epoch
    return model, method


def plain_and_modulated(name, cfg, batch, epoch=0):
    """Gradients after plain backward and after the method's after_backward (same weights/batch)."""
    inputs, labels = batch
    model, method = setup(name, cfg, epoch)
    out = method.forward(model, inputs, labels)
    method.loss(out, labels).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    method.after_backward(model, out, labels)
    return model, method, plain


def scale_of(name, k):
    return k["audio"] if name.startswith("encoders.audio") else k["visual"] if name.startswith("encoders.visual") else 1.0


@pytest.mark.parametrize(
    "rho, alpha, form, z, expected",
    [
        (4.0, 0.8, "paper", "tanh", 1 - 0.8 * math.tanh(3.0)),  # 0.203956
        (2.0, 0.8, "paper", "sigmoid", 0.295362),  # 1 − 0.8·sigmoid(2)
        (0.5, 0.8, "paper", "sigmoid", 1.0),
        (4.0, 0.8, "code", "sigmoid", 1 - math.tanh(3.2)),  # the code form ignores z
    ],
)
def test_gradient_coefficient(rho, alpha, form, z, expected):
    assert gradient_coefficient(rho, alpha, form, z) == pytest.approx(expected, abs=1e-6)


def test_gradient_coefficient_is_ogm_ge_for_tanh():
    for rho in (0.3, 1.0, 1.7, 5.0):
        assert gradient_coefficient(rho, 0.6) == modulation_coefficient(rho, 0.6, "paper")


@pytest.mark.parametrize(
    "rho_inv, form, expected",
    [
        (4.0, "paper", 1 + 0.8 * math.tanh(3.0)),  # 1.796044: the weak modality of ρ_dominant = 4
        (4.0, "code", 4.0),  # the released code's constant
        (0.25, "paper", 1.0),  # the dominant modality is left as it is
        (1.0, "code", 1.0),
    ],
)
def test_boost_coefficient(rho_inv, form, expected):
    assert boost_coefficient(rho_inv, 0.8, form) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="choices: code, paper"):
        boost_coefficient(2.0, 0.8, "other")


def test_ogm_scales_dominant_encoder_by_eq11(batch):
    model, method, plain = plain_and_modulated("ogm", {"alpha": 0.8, "noise": False}, batch)
    inputs, labels = batch
    with torch.no_grad():
        rho = {m: float(r) for m, r in discrepancy(true_class_scores(model(inputs), labels)).items()}
    k = {m: 1 - 0.8 * math.tanh(r - 1) if r > 1 else 1.0 for m, r in rho.items()}
    logs = method.ctx.logs
    for m in MODS:
        assert logs[f"k_{m}"][0] == pytest.approx(max(k[m], 0.0), rel=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[n] * scale_of(n, {m: logs[f"k_{m}"][0] for m in MODS}))


def test_ogm_noise_on_both_encoders_only(batch):
    model, method, plain = plain_and_modulated("ogm", {"alpha": 0.8}, batch)
    for n, p in model.named_parameters():
        if n.startswith("encoders.") and p.grad.numel() > 1 and float(plain[n].std()) > 0:
            assert not torch.allclose(p.grad, plain[n] * scale_of(n, {m: method.ctx.logs[f"k_{m}"][0] for m in MODS}))
        elif not n.startswith("encoders."):
            torch.testing.assert_close(p.grad, plain[n])  # the fusion head is never touched


def test_ogm_outside_epoch_range_is_plain(batch):
    model, method, plain = plain_and_modulated("ogm", {"start_epoch": 6, "end_epoch": 60}, batch, epoch=5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[n])
    assert "k_audio" not in method.ctx.logs


def test_ogm_star_raises_weak_gradient_only(batch):
    model, method, plain = plain_and_modulated("ogm_star", {"alpha": 0.8}, batch)
    logs = method.ctx.logs
    rho = {m: logs[f"rho_{m}"][0] for m in MODS}
    dominant, weak = sorted(MODS, key=lambda m: -rho[m])
    # two modalities: ρ̃ of the weak modality = ρ of the dominant one
    assert logs[f"k_{weak}"][0] == pytest.approx(1 + 0.8 * math.tanh(rho[dominant] - 1), rel=1e-5)
    assert logs[f"k_{dominant}"][0] == 1.0
    for n, p in model.named_parameters():  # noise off by default: exact scaling
        torch.testing.assert_close(p.grad, plain[n] * scale_of(n, {m: logs[f"k_{m}"][0] for m in MODS}))


def test_ogm_star_code_form_constant(batch):
    _, method, _ = plain_and_modulated("ogm_star", {"form": "code", "noise": False}, batch)
    assert sorted(method.ctx.logs[f"k_{m}"][0] for m in MODS) == [1.0, 4.0]


def test_opm_ogm_drops_then_modulates_from_pre_drop_rho(batch):
    cfg = {"q_from": "current", "q_base": 1.0, "lam": 1.0, "alpha": 0.8, "noise": False}
    model, method, plain = plain_and_modulated("opm_ogm", cfg, batch)
    inputs, labels = batch
    with torch.no_grad():
        rho = {m: float(r) for m, r in discrepancy(true_class_scores(model(inputs), labels)).items()}
    logs = method.ctx.logs
    assert len(logs["rho_audio"]) == 1  # logged once per step (by the forward pass)
    dominant = max(rho, key=rho.get)
    assert logs[f"dropped_{dominant}"][0] == 1.0
    for m in MODS:
        assert logs[f"rho_{m}"][0] == pytest.approx(rho[m], rel=1e-5)
        assert logs[f"k_{m}"][0] == pytest.approx(modulation_coefficient(rho[m], 0.8), rel=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[n] * scale_of(n, {m: logs[f"k_{m}"][0] for m in MODS}))


def test_three_modalities_supported():
    ctx = MethodContext(["text", "audio", "vision"], 2, 1)
    for name in ("ogm", "ogm_star", "opm_ogm"):
        build_method(name, {}, ctx)
    with pytest.raises(ValueError, match="'ogm_star' needs at least 2 modalities"):
        build_method("ogm_star", {}, MethodContext(["audio"], 6, 1))


def test_code_variants_carry_the_released_settings(batch):
    ogm_code = build_method("ogm_code", {}, MethodContext(list(MODS), 6, 1)).cfg
    assert (ogm_code["form"], ogm_code["noise_on"], ogm_code["start_epoch"], ogm_code["end_epoch"]) == ("code", "conv", 6, 60)
    opm_code = build_method("opm_code", {"p_exe": 0.5}, MethodContext(list(MODS), 6, 1)).cfg
    assert (opm_code["q_from"], opm_code["p_exe"], opm_code["rescale"], opm_code["start_epoch"]) == ("current", 0.5, "code", 6)
    # ogm_code modulates 4-D conv weights only: the tiny encoders' other tensors keep their gradient
    model, method, plain = plain_and_modulated("ogm_code", {}, batch, epoch=6)
    for n, p in model.named_parameters():
        if p.grad.dim() != 4:
            torch.testing.assert_close(p.grad, plain[n])
