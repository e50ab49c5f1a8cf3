"""ARL formulas (ICCV 2025 Eq. 4, 17–22, Tab. 5) against hand-computed values."""

import math

import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.arl import arl_coefficients, dependency, inverse_entropy, temperature, zeroed_logits
from mmbalance.models import build_model

from conftest import IN_CHANNELS, MODEL_CFG

MODS = ["audio", "visual"]


def setup(cfg, epoch=0, dataset=None):
    torch.manual_seed(0)
    model = build_model(MODEL_CFG, MODS, IN_CHANNELS, 6, "concat")
    method = build_method("arl", cfg, MethodContext(list(MODS), 6, 10, dataset=dataset))
    method.ctx.epoch = epoch
    return model, method


def test_inverse_entropy_uniform_and_peaked():
    # uniform over 4 classes: H = ln 4 → q = 1/ln 4 = 0.721348
    assert float(inverse_entropy(torch.zeros(3, 4))) == pytest.approx(0.721348, abs=1e-6)
    # rows with probabilities (0.5, 0.5, 0, 0)-like logits: H = ln 2 → q = 1/ln 2
    peaked = torch.tensor([[0.0, 0.0, -100.0, -100.0]])
    assert float(inverse_entropy(peaked)) == pytest.approx(1 / math.log(2), rel=1e-5)


def test_dependency_sums_true_class_probability():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]))
    assert float(dependency(logits, torch.tensor([0, 2]))) == pytest.approx(0.7 + 0.3)


def test_coefficients_two_modalities_eq18():
    # q_a/q_v = 2, d_a/d_v = 1, T = 4: softmax([8, 4]) → a_a = 1/(1 + e^−4) = 0.982014
    q = {"audio": torch.tensor(2.0), "visual": torch.tensor(1.0)}
    d = {"audio": torch.tensor(3.0), "visual": torch.tensor(3.0)}
    a = arl_coefficients(q, d, 4.0, "visual")
    assert float(a["audio"]) == pytest.approx(0.982014, abs=1e-6)
    assert float(a["visual"]) == pytest.approx(0.017986, abs=1e-6)
    # literally softmax([T·q0/q1, T·d0/d1]) for random values
    q = {"audio": torch.tensor(0.7), "visual": torch.tensor(1.3)}
    d = {"audio": torch.tensor(5.0), "visual": torch.tensor(2.0)}
    ref = torch.softmax(torch.tensor([8 * 0.7 / 1.3, 8 * 5.0 / 2.0]), 0)
    a = arl_coefficients(q, d, 8.0, "visual")
    assert float(a["audio"]) == pytest.approx(float(ref[0]), rel=1e-6)


def test_coefficients_three_modalities_reference_form():
    # q = (2, 1, 1), d = (1, 1, 1), T = 1, reference c: logits (1, 0, 0) → (e, 1, 1)/(e + 2)
    q = {m: torch.tensor(v) for m, v in zip("abc", (2.0, 1.0, 1.0))}
    d = {m: torch.tensor(1.0) for m in "abc"}
    a = arl_coefficients(q, d, 1.0, "c")
    assert float(a["a"]) == pytest.approx(0.576117, abs=1e-6)
    assert float(a["b"]) == pytest.approx(float(a["c"])) == pytest.approx(1 / (math.e + 2), abs=1e-6)


def test_zeroed_logits_use_full_bias(batch):
    inputs, _ = batch
    model, _ = setup({})
    with torch.no_grad():
        feats = model.encode(inputs)
        out = model.fuse(feats)
        p = zeroed_logits(model, feats, grad=False)
    bias = model.fusion.head.bias.detach()
    for m in MODS:
        # W_m·φ_m + b, i.e. the b/M share of out.unimodal_logits plus the other (M−1)/M of b
        torch.testing.assert_close(p[m], out.unimodal_logits[m] + bias / 2)


def test_loss_is_fused_ce_plus_gamma_unimodal(batch):
    inputs, labels = batch
    model, method = setup({"gamma": 4.0})
    out = method.forward(model, inputs, labels)
    with torch.no_grad():
        p = zeroed_logits(model, model.encode(inputs), grad=False)
        expected = F.cross_entropy(out.logits, labels) + 4.0 * sum(F.cross_entropy(p[m], labels) for m in MODS)
    torch.testing.assert_close(method.loss(out, labels).detach(), expected)
    model, method = setup({"ur": False})
    out = method.forward(model, inputs, labels)
    torch.testing.assert_close(method.loss(out, labels), F.cross_entropy(out.logits, labels))


def run_step(cfg, batch, epoch=0, dataset=None):
    inputs, labels = batch
    model, method = setup(cfg, epoch, dataset)
    out = method.forward(model, inputs, labels)
    loss = method.loss(out, labels)
    loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    method.after_backward(model, out, labels)
    return model, method, plain, loss


def expected_coefficients(model, batch, T):
    inputs, labels = batch
    with torch.no_grad():
        p = zeroed_logits(model, model.encode(inputs), grad=False)
    h = {m: float(-(torch.softmax(p[m], 1) * torch.log_softmax(p[m], 1)).sum(1).mean()) for m in MODS}
    d = {m: float(torch.softmax(p[m], 1).gather(1, labels[:, None]).sum()) for m in MODS}
    q_ratio, d_ratio = h["visual"] / h["audio"], d["audio"] / d["visual"]  # q = 1/H
    a_audio = 1 / (1 + math.exp(-T * (q_ratio - d_ratio)))
    return {"audio": a_audio, "visual": 1 - a_audio}, q_ratio, d_ratio


@pytest.mark.parametrize("ur, al, gr", [(True, True, True), (True, True, False), (False, True, True), (True, False, True), (False, False, True)])
def test_gradient_scaling_per_ablation_row(batch, ur, al, gr):
    model, method, plain, _ = run_step({"T": 4.0, "ur": ur, "al": al, "gr": gr}, batch)
    a, q_ratio, d_ratio = expected_coefficients(model, batch, 4.0)
    logs = method.ctx.logs
    assert logs["arl_q_ratio_audio"][0] == pytest.approx(q_ratio, rel=1e-4)
    assert logs["arl_d_ratio_audio"][0] == pytest.approx(d_ratio, rel=1e-4)
    assert logs["arl_a_audio"][0] == pytest.approx(a["audio"], rel=1e-4, abs=1e-6)
    scale = {m: ((1.0 if gr else 0.0) + a[m]) if al else 1.0 for m in MODS}
    for n, p in model.named_parameters():
        m = n.split(".")[1] if n.startswith("encoders.") else None
        torch.testing.assert_close(p.grad, plain[n] * (scale[m] if m else 1.0), rtol=1e-4, atol=1e-7)


def test_temperature_per_dataset():
    # the params block: T 4 by default, 8 on CREMA-D (ARL §4.1)
    cfg = {"T": 4.0, "T_by_dataset": {"cremad": 8.0}}
    assert temperature(cfg, "cremad") == 8.0
    assert temperature(cfg, "ave") == temperature(cfg, None) == 4.0
    assert temperature({}, "cremad") == 4.0  # no table: the default T
    assert build_method("arl", cfg, MethodContext(list(MODS), 6, 1, dataset="cremad")).diagnostics() == {"T": 8.0}


def test_cremad_step_uses_its_temperature(batch):
    # a_audio = σ(T·(q_ratio − d_ratio)) with T = 8 on CREMA-D, 4 on another dataset
    cfg = {"T": 4.0, "T_by_dataset": {"cremad": 8.0}}
    for dataset, T in (("cremad", 8.0), ("mosi", 4.0)):
        model, method, _, _ = run_step(cfg, batch, dataset=dataset)
        a, _, _ = expected_coefficients(model, batch, T)
        assert method.ctx.logs["arl_a_audio"][0] == pytest.approx(a["audio"], rel=1e-4, abs=1e-6)


def test_code_variant_warmup_then_constant_scale(batch):
    inputs, labels = batch
    # epoch 5: warm-up, loss CE_f + CE_a + CE_v, gradients untouched
    model, method, plain, loss = run_step({"variant": "code", "gamma": 4.0, "clip_grad_norm": None}, batch, epoch=5)
    with torch.no_grad():
        out = model(inputs)
        p = zeroed_logits(model, model.encode(inputs), grad=False)
        ces = sum(F.cross_entropy(p[m], labels) for m in MODS)
    torch.testing.assert_close(loss.detach(), F.cross_entropy(out.logits, labels) + ces)
    for n, prm in model.named_parameters():
        torch.testing.assert_close(prm.grad, plain[n])
    # epoch 6: CE_f + γ(CE_a + CE_v), both encoders × 1.5 whatever the coefficients say
    model, method, plain, loss = run_step({"variant": "code", "gamma": 4.0, "clip_grad_norm": None}, batch, epoch=6)
    torch.testing.assert_close(loss.detach(), F.cross_entropy(out.logits, labels) + 4.0 * ces)
    for n, prm in model.named_parameters():
        torch.testing.assert_close(prm.grad, plain[n] * (1.5 if n.startswith("encoders.") else 1.0))
    assert "arl_a_audio" in method.ctx.logs  # computed (and logged) but not applied


def test_code_variant_clips_gradient_norm(batch):
    model, _, _, _ = run_step({"variant": "code", "clip_grad_norm": 1e-3}, batch, epoch=6)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
    assert float(norm) == pytest.approx(1e-3, rel=1e-3)


def test_invalid_config_raises():
    with pytest.raises(ValueError, match="'arl' needs at least 2 modalities"):
        build_method("arl", {}, MethodContext(["audio"], 6, 1))
    with pytest.raises(ValueError, match="variant"):
        build_method("arl", {"variant": "other"}, MethodContext(list(MODS), 6, 1))
    with pytest.raises(ValueError, match="reference 'text'"):
        build_method("arl", {"reference": "text"}, MethodContext(list(MODS), 6, 1))
    assert build_method("arl", {}, MethodContext(["text", "audio", "vision"], 2, 1)).reference == "vision"


@pytest.mark.parametrize(
    "name, ur, al, gr",
    [("arl", True, True, True), ("arl_ur", True, False, False), ("arl_al", False, True, False),
     ("arl_al_gr", False, True, True), ("arl_ur_al", True, True, False)],
)
def test_registered_ablation_rows(name, ur, al, gr):
    cfg = build_method(name, {}, MethodContext(list(MODS), 6, 1)).cfg
    assert (cfg.get("ur", True), cfg.get("al", True), cfg.get("gr", True)) == (ur, al, gr)
    # a params block overrides the row's settings
    assert build_method(name, {"T": 8.0, "gr": not gr}, MethodContext(list(MODS), 6, 1)).cfg["gr"] == (not gr)


def test_code_variant_defaults_follow_variant_when_null(batch):
    method = build_method("arl_code", {"warmup_epochs": None, "clip_grad_norm": None}, MethodContext(list(MODS), 6, 10))
    method.ctx.epoch = 5
    assert method._warmup()
    method.ctx.epoch = 6
    assert not method._warmup()
