"""IPRM formulas against hand-computed values, and its two-pass step."""

import math

import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.iprm import IPRMOutput, ema_update, kl_to_fused, linear_mix, slerp, strength_weight
from mmbalance.models import build_model

from conftest import IN_CHANNELS, MODEL_CFG

AV = ["audio", "visual"]


def make(cfg=None, mods=AV, model_cfg=MODEL_CFG, in_channels=IN_CHANNELS):
    method = build_method("iprm", cfg or {}, MethodContext(list(mods), 6, 2))
    torch.manual_seed(0)
    model = build_model(model_cfg, list(mods), in_channels, 6, "concat")
    model.method_modules.update(method.modules(model.feature_dims, 6))
    return method, model


def by_hand_step(method, model, inputs, lam):
    """Reference two-pass step written from the paper's equations (Eq. 1–3)."""
    feats = model.encode(inputs)
    base = model.fuse(feats)
    za, zv = (F.normalize(feats[m], dim=1) for m in AV)
    head = method.heads["audio__visual"]
    probe = head(slerp(za, zv, lam))
    kl = [kl_to_fused(base.unimodal_logits[m], probe) for m in AV]
    omega = kl[1] / (kl[0] + kl[1])
    return omega.detach(), head(slerp(za, zv, omega))


# ---- formulas ---------------------------------------------------------------------------


def test_slerp_quarter_circle():
    # θ = π/2 between e1 and e2: weights sin(λπ/2), sin((1−λ)π/2)
    za, zb = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(slerp(za, zb, 0.5), torch.tensor([[math.sqrt(0.5), math.sqrt(0.5)]]))
    torch.testing.assert_close(slerp(za, zb, 1 / 3), torch.tensor([[0.5, math.sqrt(3) / 2]]))  # sin 30°, sin 60°
    torch.testing.assert_close(slerp(za, zb, 1.0), za, atol=1e-6, rtol=0)
    torch.testing.assert_close(slerp(za, zb, 0.0), zb, atol=1e-6, rtol=0)


def test_slerp_stays_on_the_sphere_and_handles_parallel_vectors():
    gen = torch.Generator().manual_seed(0)
    za, zb = F.normalize(torch.randn(5, 7, generator=gen), dim=1), F.normalize(torch.randn(5, 7, generator=gen), dim=1)
    torch.testing.assert_close(slerp(za, zb, 0.3).norm(dim=1), torch.ones(5))
    same = slerp(za, za.clone().requires_grad_(), 0.3)  # θ → 0: finite value and gradient
    same.sum().backward()
    torch.testing.assert_close(same, za, atol=1e-3, rtol=0)


def test_linear_mix():
    za, zb = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(linear_mix(za, zb, 0.25), torch.tensor([[0.25, 0.75]]))


def test_kl_by_hand():
    # P^o = (0.5, 0.5), P̄ = (0.9, 0.1): 0.5·ln(0.5/0.9) + 0.5·ln(0.5/0.1) = 0.510826
    uni = torch.zeros(1, 2)
    fused = torch.log(torch.tensor([[0.9, 0.1]]))
    assert float(kl_to_fused(uni, fused)) == pytest.approx(0.510826, abs=1e-6)
    # batch mean: a second, identical row leaves it unchanged; a zero-KL row halves it
    assert float(kl_to_fused(torch.cat([uni, fused]), torch.cat([fused, fused]))) == pytest.approx(0.510826 / 2, abs=1e-6)


def test_strength_weight_and_ema():
    # KL_a 0.1, KL_v 0.3 → ω_a = 0.3/0.4 = 0.75 (audio closer to the fused prediction: stronger)
    assert float(strength_weight(torch.tensor(0.1), torch.tensor(0.3))) == pytest.approx(0.75)
    assert float(strength_weight(torch.tensor(0.0), torch.tensor(0.0))) == 0.5
    # λ = 0.8·0.5 + 0.2·0.75 = 0.55
    assert float(ema_update(torch.tensor(0.5), torch.tensor(0.75), 0.8)) == pytest.approx(0.55)


@pytest.mark.parametrize("mods, alpha", [(AV, 0.8), (["text", "audio", "vision"], 0.7), (["rgb", "flow"], 0.7)])
def test_alpha_auto(mods, alpha):
    assert build_method("iprm", {}, MethodContext(mods, 2, 1)).alpha == alpha


def test_loss_is_fused_plus_unimodal_ce():
    labels = torch.tensor([0, 1])
    out = IPRMOutput(logits=torch.zeros(2, 2), features={}, pair_logits=[torch.zeros(2, 2)],
                     unimodal_logits={"audio": torch.zeros(2, 2), "visual": torch.tensor([[0.0, 0.0], [0.0, math.log(3)]])})
    method = build_method("iprm", {}, MethodContext(AV, 2, 1))
    # ln2 (fused) + ln2 (audio) + mean(ln2, −ln 0.75) (visual)
    expected = 2 * math.log(2) + (math.log(2) - math.log(0.75)) / 2
    assert float(method.loss(out, labels)) == pytest.approx(expected)


# ---- the two-pass step -------------------------------------------------------------------


def test_two_pass_step_matches_the_equations(batch):
    inputs, labels = batch
    method, model = make({"alpha": 0.8})
    out = method.forward(model, inputs, labels)
    omega, fused = by_hand_step(method, model, inputs, 0.5)
    torch.testing.assert_close(out.logits, fused)
    assert method.ctx.logs["lambda_audio_vs_visual"] == [0.5]
    assert method.ctx.logs["omega_audio_vs_visual"][0] == pytest.approx(float(omega))
    lam1 = 0.8 * 0.5 + 0.2 * float(omega)
    assert float(method.lam[("audio", "visual")]) == pytest.approx(lam1)
    # second step probes with λ_2 and trains with its own ω_2
    out2 = method.forward(model, inputs, labels)
    omega2, fused2 = by_hand_step(method, model, inputs, lam1)
    torch.testing.assert_close(out2.logits, fused2)
    assert float(method.lam[("audio", "visual")]) == pytest.approx(0.8 * lam1 + 0.2 * float(omega2))


def test_without_ema_lambda_is_last_omega(batch):
    inputs, labels = batch
    method, model = make({"ema": False})
    method.forward(model, inputs, labels)
    assert float(method.lam[("audio", "visual")]) == pytest.approx(method.ctx.logs["omega_audio_vs_visual"][0])


def test_one_pass_trains_with_the_ema_weight(batch):
    inputs, labels = batch
    method, model = make({"two_pass": False})
    out = method.forward(model, inputs, labels)
    za, zv = (F.normalize(f, dim=1) for f in model.encode(inputs).values())
    torch.testing.assert_close(out.logits, method.heads["audio__visual"](slerp(za, zv, 0.5)))


def test_linear_mixup_variant(batch):
    inputs, labels = batch
    method, model = make({"mixup": "linear", "two_pass": False})
    out = method.forward(model, inputs, labels)
    za, zv = (F.normalize(f, dim=1) for f in model.encode(inputs).values())
    torch.testing.assert_close(out.logits, method.heads["audio__visual"](0.5 * za + 0.5 * zv))


def test_predict_fused_and_sum(batch):
    inputs, labels = batch
    method, model = make({"test_logits": "fused"})
    with torch.no_grad():
        out = model(inputs)
    za, zv = (F.normalize(out.features[m], dim=1) for m in AV)
    fused = method.heads["audio__visual"](slerp(za, zv, 0.5))
    torch.testing.assert_close(method.predict(out), fused)
    method.test_logits = "sum"
    torch.testing.assert_close(method.predict(out), fused + out.unimodal_logits["audio"] + out.unimodal_logits["visual"])


def test_state_dict_round_trip(batch):
    inputs, labels = batch
    method, model = make()
    method.forward(model, inputs, labels)
    other, _ = make()
    other.load_state_dict(method.state_dict())
    assert float(other.lam[("audio", "visual")]) == pytest.approx(float(method.lam[("audio", "visual")]))


def test_unknown_options_raise():
    for cfg, word in (({"mixup": "cubic"}, "linear, slerp"), ({"pairs": "some"}, "all, random"), ({"test_logits": "x"}, "fused, sum")):
        with pytest.raises(ValueError, match=word):
            build_method("iprm", cfg, MethodContext(AV, 2, 1))
    with pytest.raises(ValueError, match="iprm"):
        build_method("iprm", {}, MethodContext(["audio"], 2, 1))


# ---- feature sizes and three modalities -----------------------------------------------------

TRI_CFG = {"fusion": "concat", "encoders": {**MODEL_CFG["encoders"], "flow": {"name": "tiny_cnn", "channels": [4, 16]}}}
TRI_IN = {**IN_CHANNELS, "flow": 3}
TRI = ["audio", "visual", "flow"]


def _tri_inputs(batch):
    inputs, labels = batch
    return {**inputs, "flow": inputs["visual"].flip(-1)}, labels


@pytest.mark.parametrize("pairs, heads, trained", [("all", 3, 3), ("random", 1, 1)])
def test_three_modalities_pairwise_heads_and_projection(batch, pairs, heads, trained):
    inputs, labels = _tri_inputs(batch)
    method, model = make({"pairs": pairs}, TRI, TRI_CFG, TRI_IN)
    assert model.feature_dims == {"audio": 8, "visual": 8, "flow": 16}
    assert len(method.heads) == heads and set(method.proj) == set(TRI)  # sizes differ → project to 16
    out = method.forward(model, inputs, labels)
    assert len(out.pair_logits) == trained and len(method.lam) == 3
    loss = method.loss(out, labels)
    expected = sum(F.cross_entropy(p, labels) for p in out.pair_logits)
    expected = expected + sum(F.cross_entropy(u, labels) for u in out.unimodal_logits.values())
    torch.testing.assert_close(loss, expected)
    loss.backward()
    if pairs == "all":
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with torch.no_grad():
        assert method.predict(model(inputs)).shape == (8, 6)
