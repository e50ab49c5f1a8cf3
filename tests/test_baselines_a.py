"""Hand-computed checks of the comparison methods g_blending, greedy, pmr, agm, mla and dr."""

import math
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods import agm, dr, g_blending, greedy, mla, pmr
from mmbalance.models import Output, build_model
from mmbalance.train.data import SplitData
from mmbalance.train.loop import Trainer, fit

from conftest import IN_CHANNELS, INFO, MODEL_CFG, tiny_split
from test_methods import TRAIN, make, splits_for

NAMES = ["g_blending", "greedy", "pmr", "agm", "mla", "dr"]


# ---- G-Blending -------------------------------------------------------------------------------

def test_blend_weights_from_losses():
    # (L^T, L^V) before/after: ΔG = 0.2, 0.2, 0.3; ΔO = 0.3, 0.1, 0.3 → ΔG/ΔO² = 20/9, 20, 30/9
    before = {"audio": (1.0, 1.2), "visual": (1.5, 1.6), "fused": (1.0, 1.1)}
    after = {"audio": (0.5, 1.0), "visual": (1.2, 1.4), "fused": (0.4, 0.8)}
    w = g_blending.blend_weights(before, after)
    assert w == pytest.approx({"audio": 2 / 23, "visual": 18 / 23, "fused": 3 / 23}, rel=1e-6)


def test_blend_weights_no_generalisation():
    before = {"audio": (1.0, 1.0), "fused": (1.0, 1.0)}
    assert g_blending.blend_weights(before, {"audio": (0.5, 1.1), "fused": (0.5, 1.0)}) is None
    w = g_blending.blend_weights(before, {"audio": (0.5, 1.1), "fused": (0.5, 0.9)})
    assert w == {"audio": 0.0, "fused": 1.0}


def test_g_blending_weights_every_super_epoch(monkeypatch):
    method, model, mods = make("g_blending", {"super_epoch": 1})
    assert method.weights == pytest.approx({"audio": 1 / 3, "visual": 1 / 3, "fused": 1 / 3})
    # measurements: start (1.0, 1.2) / (1.5, 1.6) / (1.0, 1.1), then the "after" losses above
    seq = iter([{"audio": 1.0, "visual": 1.5, "fused": 1.0}, {"audio": 1.2, "visual": 1.6, "fused": 1.1},
                {"audio": 0.5, "visual": 1.2, "fused": 0.4}, {"audio": 1.0, "visual": 1.4, "fused": 0.8}])
    monkeypatch.setattr(method, "head_losses", lambda trainer, split: next(seq))
    fit(model, method, splits_for(mods), TRAIN, seed=0, name="g_blending")
    assert method.weights == pytest.approx({"audio": 2 / 23, "visual": 18 / 23, "fused": 3 / 23}, rel=1e-6)


def test_g_blending_loss_is_weighted_sum(batch):
    inputs, labels = batch
    method, model, _ = make("g_blending")
    method.weights = {"audio": 0.2, "visual": 0.5, "fused": 0.3}
    out = method.forward(model, inputs, labels)
    want = (0.3 * F.cross_entropy(out.logits, labels)
            + 0.2 * F.cross_entropy(method.heads["audio"](out.features["audio"]), labels)
            + 0.5 * F.cross_entropy(method.heads["visual"](out.features["visual"]), labels))
    torch.testing.assert_close(method.loss(out, labels), want)


# ---- Greedy -----------------------------------------------------------------------------------

def test_greedy_relative_speed_and_speed_difference():
    p1, p2 = torch.nn.Parameter(torch.tensor([3.0, 4.0])), torch.nn.Parameter(torch.tensor([0.0, 5.0]))
    p1.grad, p2.grad = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert greedy.relative_speed([p1, p2]) == pytest.approx((1 + 4) / (25 + 25))
    assert greedy.relative_speed([torch.nn.Parameter(torch.ones(2))]) == 0.0  # no gradient yet
    # log10(1/0.1) − log10(0.1/1) = 2
    assert greedy.speed_difference([1.0, 0.1], [0.1, 1.0]) == pytest.approx(2.0)


def test_greedy_rebalancing_window(batch):
    inputs, labels = batch
    method, model, _ = make("greedy", {"alpha": 0.0, "window": 2})
    out = method.forward(model, inputs, labels)
    method.loss(out, labels).backward()
    method.after_backward(model, out, labels)
    speed = greedy.speed_difference(method.bypass, method.main)
    assert method.curation and method.caring == (0 if speed > 0 else 1)
    cared = method.mmtm.modalities[method.caring]
    model.zero_grad(set_to_none=True)
    out = method.forward(model, inputs, labels)
    method.loss(out, labels).backward()
    # the cared-for modality's gate is its running mean: its excitation layer gets no gradient
    assert method.mmtm.excite[cared].weight.grad is None
    method.after_backward(model, out, labels)
    assert method.curation and method.curation_step == 1
    method.after_backward(model, out, labels)
    assert not method.curation


def test_greedy_rejects_three_modalities():
    ctx = MethodContext(modalities=["text", "audio", "vision"], num_classes=2, epochs=1)
    with pytest.raises(ValueError, match="greedy.*two modalities.*text"):
        build_method("greedy", {}, ctx)


# ---- PMR --------------------------------------------------------------------------------------

def test_pmr_prototypes_and_prototype_ce():
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [3.0, 4.0]])
    protos = pmr.class_prototypes(feats, torch.tensor([0, 0, 1]), 3, previous=torch.full((3, 2), 7.0))
    torch.testing.assert_close(protos, torch.tensor([[1.0, 0.0], [3.0, 4.0], [7.0, 7.0]]))
    # distances to c = [[0,0],[3,0]]: φ0 → (0, 3), φ1 = (3,4) → (5, 4)
    logits = pmr.prototype_logits(torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True), torch.tensor([[0.0, 0.0], [3.0, 0.0]]))
    torch.testing.assert_close(logits, torch.tensor([[0.0, -3.0], [-5.0, -4.0]]))
    pce = F.cross_entropy(logits, torch.tensor([0, 1]))
    # (log(1 + e^−3) + log(1 + e^−1)) / 2
    assert float(pce.detach()) == pytest.approx(0.1809245195459824, rel=1e-6)
    pce.backward()  # a feature sitting on its prototype: finite (zero) gradient, not NaN


def test_pmr_loss_boosts_the_slow_modality(batch):
    inputs, labels = batch
    method, model, _ = make("pmr", {"alpha": 2.0})
    out = model(inputs)
    method.protos = {m: torch.randn(6, f.shape[1], generator=torch.Generator().manual_seed(i))
                     for i, (m, f) in enumerate(out.features.items())}
    pl = {m: pmr.prototype_logits(f, method.protos[m]) for m, f in out.features.items()}
    scores = {m: float(torch.softmax(l.detach(), 1).gather(1, labels[:, None]).sum()) for m, l in pl.items()}
    slow = min(scores, key=scores.get)
    mask = pmr.slow_mask({m: torch.tensor(s, dtype=torch.float64) for m, s in scores.items()})
    assert [m for m, k in mask.items() if k] == [slow]
    want = F.cross_entropy(out.logits, labels) + 2.0 * F.cross_entropy(pl[slow], labels)
    torch.testing.assert_close(method.loss(out, labels), want)
    method.ctx.epoch = 71  # after the modulation epochs (0–70): plain CE
    torch.testing.assert_close(method.loss(out, labels), F.cross_entropy(out.logits, labels))


# ---- AGM --------------------------------------------------------------------------------------

def test_agm_shapley_matrix_two_modalities():
    masks, w = agm.shapley_matrix(2)
    assert masks.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    # φ_a = ½(f(a) − f(∅)) + ½(f(a,v) − f(v))
    assert w.tolist() == [[-0.5, -0.5, 0.5, 0.5], [-0.5, 0.5, -0.5, 0.5]]


def test_agm_contributions_linear_head_and_efficiency(batch):
    inputs, _ = batch
    _, model, _ = make("concat")
    feats = model.encode(inputs)
    c = agm.contributions(model.fusion.fuse, feats)
    base = model.fuse(feats)
    for m in feats:  # linear concat head: c_m = W_m·φ_m + b/2
        torch.testing.assert_close(c[m], base.unimodal_logits[m])
    head = torch.nn.Sequential(torch.nn.Linear(24, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    three = {m: torch.randn(4, 8) for m in ("t", "a", "v")}
    fuse = lambda f: head(torch.cat([f[m] for m in ("t", "a", "v")], 1))
    torch.testing.assert_close(sum(agm.contributions(fuse, three).values()), fuse(three))  # Σ c_m = f(all)


def test_agm_coefficient_update():
    # s = (0.5, 1.0), S̄ = (0.8, 0.9): r = (e^0.5, e^−0.5), r̄ = (e^0.1, e^−0.1), k = exp(r̄ − r)
    k = agm.agm_coefficients(torch.tensor([0.5, 1.0]), torch.tensor([0.8, 0.9]), alpha=1.0)
    torch.testing.assert_close(k, torch.tensor([0.5806829590160277, 1.3475751043617474]))
    # S̄ = (0, 5), s = (0, 0): r̄ − r = (e^5 − 1, e^−5 − 1); the first is capped at 10
    k = agm.agm_coefficients(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 5.0]), alpha=0.5, cap=10.0)
    torch.testing.assert_close(k, torch.tensor([math.exp(5.0), math.exp(0.5 * (math.exp(-5.0) - 1.0))]))


def test_agm_running_scores_and_gradient_scaling(batch):
    inputs, labels = batch
    method, model, _ = make("agm", {"alpha": 1.0})
    out = method.forward(model, inputs, labels)
    base = model(inputs)
    torch.testing.assert_close(out.logits, base.logits)  # same value as the fused logits
    scores = agm.mono_scores(base.unimodal_logits, labels)
    torch.testing.assert_close(method.running, scores)  # S̄ after one iteration = s
    x = torch.tensor([2.0], requires_grad=True)
    y = agm.scale_grad(x * 3.0, 0.25)  # value 6, gradient 0.25·3
    y.backward()
    assert float(y.detach()) == 6.0 and float(x.grad) == 0.75


def test_mono_scores_floor():
    logits = {"a": torch.tensor([[0.0, 100.0]]), "v": torch.tensor([[0.0, 0.0]])}
    s = agm.mono_scores(logits, torch.tensor([0]))
    torch.testing.assert_close(s, torch.tensor([-math.log(1e-8), math.log(2.0)]))


# ---- MLA --------------------------------------------------------------------------------------

def test_mla_projection_update_paper_and_code():
    P, r = torch.eye(2), torch.tensor([1.0, 0.0])
    new = mla.owm_update(P, r, 0.1, "paper")  # I − e1e1ᵀ / 1.1
    torch.testing.assert_close(new, torch.tensor([[1 - 1 / 1.1, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(torch.tensor([[1.0, 1.0]]) @ new.t(), torch.tensor([[1 - 1 / 1.1, 1.0]]))
    code = mla.owm_update(P, r, 0.1, "code")  # same matrix here, then divided by its Frobenius norm
    torch.testing.assert_close(code, torch.tensor([[0.09053574604251856, 0.0], [0.0, 0.9958932064677037]]))


def test_mla_closed_form_head_gradient_matches_autograd():
    torch.manual_seed(0)
    head, h, y = torch.nn.Linear(5, 3), torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    logits = head(h)
    F.cross_entropy(logits, y).backward()
    torch.testing.assert_close(mla.head_weight_grad(logits, h, y), head.weight.grad)


def test_mla_entropy_weights():
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])  # entropies ln 2 and H(¾, ¼)
    w = mla.entropy_weights(logits)
    torch.testing.assert_close(w[:, 0], torch.tensor([1 - 0.532656454731222, 0.532656454731222]))


def test_mla_after_backward_projects_each_modality(batch):
    inputs, labels = batch
    method, model, mods = make("mla")
    out = method.forward(model, inputs, labels)
    method.loss(out, labels).backward()
    g = {m: mla.head_weight_grad(out.head_logits[m], out.head_inputs[m], labels) for m in mods}
    torch.testing.assert_close(sum(g.values()), method.head.weight.grad)  # before modification
    method.after_backward(model, out, labels)  # first modality unmodified, second projected
    P = mla.owm_update(torch.eye(8), out.head_inputs[mods[1]].detach().mean(0), 0.1, "paper")
    torch.testing.assert_close(method.head.weight.grad, g[mods[0]] + g[mods[1]] @ P.t())
    assert method.updates == 2


# ---- D&R --------------------------------------------------------------------------------------

def test_dr_purity_and_strength():
    assert dr.purity(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 0, 1, 1, 1])) == pytest.approx(4 / 6)
    assert dr.reinit_strength(0.9, 0.6, 3.0) == pytest.approx(math.tanh(0.9))
    assert dr.reinit_strength(0.5, 0.8, 3.0) == pytest.approx(math.tanh(0.9))
    np.testing.assert_allclose(dr.minmax_scale(np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]])),
                               [[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0]])
    x = [torch.tensor([1.0, 1.0])]
    dr.soft_reinit(x, [torch.tensor([0.0, 2.0])], 0.25)
    torch.testing.assert_close(x[0], torch.tensor([0.75, 1.25]))


def test_dr_reinit_moves_encoders_towards_init(monkeypatch):
    method, model, mods = make("dr", {"reinit_every": 1, "reinit_num": 1})
    trainer = Trainer(model, method, splits_for(mods), TRAIN, seed=0, name="dr")
    method.on_epoch_start(0, trainer)
    init = {m: [t.clone() for t in method.init[m]] for m in mods}
    trainer.train_epoch()
    purities = iter([0.9, 0.6, 0.5, 0.5])  # audio train/val, visual train/val
    monkeypatch.setattr(dr, "separability", lambda *a, **k: next(purities))
    method.on_epoch_start(1, trainer)
    assert method.done == 0  # epoch 0 is never a diagnosis epoch (the code's e > 0)
    trainer.train_epoch()
    before = {m: [p.detach().clone() for p in model.modality_parameters(m)] for m in mods}
    method.on_epoch_start(2, trainer)
    assert method.done == 1
    for m, a in zip(mods, (math.tanh(0.9), 0.0)):
        for p, b, i in zip(model.modality_parameters(m), before[m], init[m]):
            torch.testing.assert_close(p.detach(), (1 - a) * b + a * i)


# ---- all six: three modalities, resume ------------------------------------------------------

def _three_modality_run(name):
    cfg = {"fusion": "concat", "encoders": {**MODEL_CFG["encoders"], "text": MODEL_CFG["encoders"]["audio"]}}
    ctx = MethodContext(modalities=["text", "audio", "visual"], num_classes=6, epochs=1)
    method = build_method(name, {}, ctx)
    torch.manual_seed(0)
    model = build_model(cfg, ctx.modalities, {**IN_CHANNELS, "text": 1}, 6, "concat")
    model.method_modules.update(method.modules(model.feature_dims, 6))
    base = tiny_split(12, 0)
    info = {**INFO, "modalities": {**INFO["modalities"], "text": INFO["modalities"]["audio"]}}
    split = SplitData(base.keys, base.labels, {**base.arrays, "text": base.arrays["audio"].flip(2)}, base.lengths, info)
    return method, model, {"train": split, "val": split, "test": split}


@pytest.mark.parametrize("name", [n for n in NAMES if n != "greedy"])
def test_three_modalities_one_step(name):
    method, model, splits = _three_modality_run(name)
    trainer = Trainer(model, method, splits, TRAIN, seed=0, name=name)
    method.on_epoch_start(0, trainer)
    model.train()
    inputs, labels = next(trainer.batches("train", train=True))
    out = method.forward(model, inputs, labels)
    method.loss(out, labels).backward()
    method.after_backward(model, out, labels)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: {pname}"
    assert 0.0 <= trainer.evaluate("test")["acc"] <= 1.0


RESUME_CFG = {"g_blending": {"super_epoch": 1}, "dr": {"reinit_every": 1, "reinit_num": 2},
              "greedy": {"alpha": 0.001, "window": 2}, "pmr": {}, "agm": {}, "mla": {}}


@pytest.mark.parametrize("name", NAMES)
def test_resume_matches_uninterrupted(name, tmp_path, monkeypatch):
    from mmbalance.train import loop

    epochs = 3 if name == "dr" else 2  # dr re-initialises at the start of epoch 2, after the resume

    def run(checkpoint=None):
        method, model, mods = make(name, RESUME_CFG[name])
        return fit(model, method, splits_for(mods), {**TRAIN, "epochs": epochs}, seed=0, name=name, checkpoint=checkpoint)

    full = run()
    ckpt, real, calls = tmp_path / "ckpt.pt", loop.Trainer.train_epoch, {"n": 0}

    def dying(self):
        calls["n"] += 1
        if calls["n"] == epochs:
            raise KeyboardInterrupt("simulated kill during the last epoch")
        return real(self)

    monkeypatch.setattr(loop.Trainer, "train_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        run(ckpt)
    monkeypatch.setattr(loop.Trainer, "train_epoch", real)
    resumed = run(ckpt)
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in full["history"]]
    assert resumed["test"] == full["test"]
