"""IPRM formulas against hand-computed values, and its two-pass step."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.iprm import IPRMOutput, ema_update, kl_to_fused, linear_mix, slerp, strength_weight
from mmbalance.models import Output, build_model

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


# ---- Tri-CLS and Single-CLS (paper §5.5 "GMM Strategy for Trimodal Dataset", Tab. 5) --------

NVG = ["rgb", "flow", "depth"]


@pytest.mark.parametrize("pairs, heads", [("all", {"rgb__flow", "rgb__depth", "flow__depth"}), ("random", {"shared"})])
def test_pair_enumeration_and_heads(pairs, heads):
    # every unordered pair once, in modality order: (RGB, OF), (RGB, Depth), (OF, Depth) as in §5.5
    method = build_method("iprm", {"pairs": pairs}, MethodContext(NVG, 4, 1))
    assert method.pairs == [("rgb", "flow"), ("rgb", "depth"), ("flow", "depth")]
    method.modules({m: 8 for m in NVG}, 4)
    assert set(method.heads) == heads  # Tri-CLS: three fused heads; Single-CLS: one for all pairs
    assert build_method("iprm", {"pairs": pairs}, MethodContext(AV, 4, 1)).pairs == [("audio", "visual")]


def _head_grads(method, loss):
    """{head name: gradient of ``loss`` w.r.t. its weight [C, D]} (zeros where it does not reach)."""
    weights = {k: h.weight for k, h in method.heads.items()}
    grads = torch.autograd.grad(loss, list(weights.values()), retain_graph=True, allow_unused=True)
    return {k: torch.zeros_like(w) if g is None else g for (k, w), g in zip(weights.items(), grads)}


def test_tri_cls_each_head_learns_from_its_own_pair_only(batch):
    inputs, labels = _tri_inputs(batch)
    method, model = make({"pairs": "all"}, TRI, TRI_CFG, TRI_IN)
    out = method.forward(model, inputs, labels)
    keys = ["audio__visual", "audio__flow", "visual__flow"]
    total = _head_grads(method, method.loss(out, labels))
    for k, fused in zip(keys, out.pair_logits):
        own = _head_grads(method, F.cross_entropy(fused, labels))
        assert own[k].abs().sum() > 0 and all(own[o].abs().sum() == 0 for o in keys if o != k)
        torch.testing.assert_close(total[k], own[k])  # the summed loss reaches head k only through its pair
    # every pair probed and rebalanced this step: three λ moved off λ₀ and three logged
    assert sorted(method.ctx.logs) == sorted(f"{p}_{i}_vs_{j}" for p in ("lambda", "omega") for i, j in method.pairs)


class _Features(nn.Module):
    """A stand-in model whose features and unimodal logits are fixed tensors (no random draws
    besides the method's own): [B, 4] features and [B, 3] logits per modality."""

    def __init__(self, mods):
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.feats = {m: torch.randn(6, 4, generator=gen) for m in mods}
        self.uni = {m: torch.randn(6, 3, generator=gen) for m in mods}

    def encode(self, inputs):
        return self.feats

    def fuse(self, feats):
        return Output(logits=sum(self.uni.values()), features=feats, unimodal_logits=self.uni)


def _drawn(seed, steps=12):
    """Pairs Single-CLS trains in ``steps`` forwards after ``torch.manual_seed(seed)``."""
    method = build_method("iprm", {"pairs": "random"}, MethodContext(NVG, 3, 1))
    method.modules({m: 4 for m in NVG}, 3)
    model, drawn = _Features(NVG), []
    torch.manual_seed(seed)
    for _ in range(steps):
        method.ctx.logs = {}
        out = method.forward(model, {}, torch.zeros(6, dtype=torch.long))
        assert len(out.pair_logits) == 1
        (key,) = [k.removeprefix("lambda_") for k in method.ctx.logs if k.startswith("lambda_")]
        drawn.append(tuple(key.split("_vs_")))
    return method, drawn


def test_single_cls_draws_one_pair_per_step_deterministically():
    method, drawn = _drawn(0)
    # the draw is torch.randint(3) on the run's seeded generator, one per step
    gen = torch.Generator().manual_seed(0)
    assert drawn == [method.pairs[int(torch.randint(3, (1,), generator=gen))] for _ in range(12)]
    assert _drawn(0)[1] == drawn and _drawn(1)[1] != drawn
    assert set(_drawn(0, 60)[1]) == set(method.pairs)  # every pair gets trained
    # λ moves only for the pairs drawn; a never-drawn pair would keep λ₀ = 0.5
    assert all((float(method.lam[p]) != 0.5) == (p in drawn) for p in method.pairs)


def test_single_cls_shared_head_gets_every_drawn_pair(batch):
    inputs, labels = _tri_inputs(batch)
    method, model = make({"pairs": "random"}, TRI, TRI_CFG, TRI_IN)
    torch.manual_seed(3)
    out = method.forward(model, inputs, labels)
    grads = _head_grads(method, method.loss(out, labels))
    assert set(grads) == {"shared"} and grads["shared"].abs().sum() > 0
    # the un-drawn modality still learns from its own CE but not through the mixup
    (pair,) = [tuple(k.removeprefix("lambda_").split("_vs_")) for k in method.ctx.logs if k.startswith("lambda_")]
    (left_out,) = set(TRI) - set(pair)
    proj = method.proj[left_out].weight
    (g,) = torch.autograd.grad(method.loss(out, labels), [proj], allow_unused=True)
    assert g is None


@pytest.mark.parametrize("pairs", ["all", "random"])
def test_predict_averages_the_pairs_with_their_own_lambda(batch, pairs):
    inputs, labels = _tri_inputs(batch)
    method, model = make({"pairs": pairs}, TRI, TRI_CFG, TRI_IN)
    method.lam = {p: torch.tensor(v) for p, v in zip(method.pairs, (0.2, 0.5, 0.9))}
    with torch.no_grad():
        out = model(inputs)
        z = {m: F.normalize(method.proj[m](out.features[m]), dim=1) for m in TRI}
        head = {p: method.heads["shared" if pairs == "random" else f"{p[0]}__{p[1]}"] for p in method.pairs}
        by_hand = sum(head[p](slerp(z[p[0]], z[p[1]], float(method.lam[p]))) for p in method.pairs) / 3
        torch.testing.assert_close(method.predict(out), by_hand)


@pytest.mark.parametrize("pairs", ["all", "random"])
def test_table5_columns_are_probe_and_fused_accuracy(pairs):
    """Tab. 5's per-modality columns: each modality's own head (the loop's probe accuracy, from the
    model's Output); "Multi": the method's prediction. Three sequence modalities as on CMU-MOSI."""
    from mmbalance.train.data import make_batch
    from mmbalance.train.loop import fit
    from test_methods import TRAIN
    from test_sequence_encoders import DIMS, SMALL, _split

    method = build_method("iprm", {"pairs": pairs}, MethodContext(list(DIMS), 2, 2))
    torch.manual_seed(0)
    model_cfg = {"fusion": "concat", "encoders": {"sequence": {"name": "transformer", **SMALL["transformer"]}}}
    model = build_model(model_cfg, list(DIMS), DIMS, 2, "concat", {m: "sequence" for m in DIMS})
    model.method_modules.update(method.modules(model.feature_dims, 2))
    splits = {split: _split(12, seed) for split, seed in (("train", 0), ("val", 1), ("test", 2))}
    res = fit(model, method, splits, TRAIN, seed=0, name="iprm")
    model.load_state_dict(res["best_state"]["model"])
    method.load_state_dict(res["best_state"]["method"])
    model.eval()
    inputs, labels = make_batch(splits["test"], torch.arange(12), False, torch.Generator())
    with torch.no_grad():
        out = model(inputs)
        fused = method.predict(out)
    acc = lambda logits: float((logits.argmax(1) == labels).float().mean())  # noqa: E731
    assert set(res["test"]["probe_acc"]) == set(DIMS)
    for m in DIMS:
        assert res["test"]["probe_acc"][m] == pytest.approx(acc(out.unimodal_logits[m]))
    assert res["test"]["acc"] == pytest.approx(acc(fused))
