"""MMPareto, ReconBoost, LFM, MSLR, ModDrop and the uni-modal loss against hand-computed values."""

import math
from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.lfm import fitted_weights, gap_loss, lfm_loss, pair_divergence
from mmbalance.methods.mmpareto import integrate, min_norm_weights, pareto_weights
from mmbalance.methods.moddrop import keep_masks, marginal_drop_rate, raw_rate
from mmbalance.methods.mslr import dynamic_ratio, modality_lrs
from mmbalance.methods.reconboost import boosting_loss
from mmbalance.methods.unimodal_loss import unimodal_loss
from mmbalance.models import build_model
from mmbalance.train.loop import Trainer

from conftest import IN_CHANNELS, MODEL_CFG, tiny_split

TWO = ["audio", "visual"]
TRAIN = {"epochs": 2, "batch_size": 6, "lr": 0.1, "optimizer": "sgd", "momentum": 0.9}


def setup(name, cfg, mods=TWO, epochs=2):
    ctx = MethodContext(modalities=list(mods), num_classes=6, epochs=epochs)
    method = build_method(name, cfg, ctx)
    torch.manual_seed(0)
    model_cfg = {**MODEL_CFG, "encoders": {**MODEL_CFG["encoders"], "extra": MODEL_CFG["encoders"]["visual"]}}
    model = build_model(model_cfg, list(mods), {**IN_CHANNELS, "extra": 3}, 6, "concat")
    model.method_modules.update(method.modules(model.feature_dims, 6))
    return method, model


def splits(mods=TWO):
    out = {}
    for name, seed in (("train", 0), ("val", 1), ("test", 2)):
        s = tiny_split(12, seed)
        info = {**s.info, "modalities": {**s.info["modalities"], "extra": s.info["modalities"]["visual"]}}
        arrays = {**s.arrays, "extra": s.arrays["visual"]}
        lengths = {**s.lengths, "extra": s.lengths["visual"]}
        out[name] = replace(s, arrays={m: arrays[m] for m in mods}, lengths={m: v for m, v in lengths.items() if m in mods}, info=info)
    return out


# ---------------------------------------------------------------- MMPareto


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors])


def test_min_norm_weights_two_conflicting_gradients():
    # g1 = (1, 0), g2 = (−1, 2): ⟨g1,g1⟩ = 1, ⟨g1,g2⟩ = −1, ⟨g2,g2⟩ = 5
    # a = (5 − (−1)) / (1 + 5 + 2) = 0.75
    a1, a2 = min_norm_weights(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
    assert (a1, a2) == pytest.approx((0.75, 0.25))


def test_pareto_combination_in_conflict():
    g_mm, g_u = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0])
    a_mm, a_u, cos = pareto_weights(g_mm, g_u)
    assert cos == pytest.approx(-1 / math.sqrt(5))
    assert (a_mm, a_u) == pytest.approx((0.75, 0.25))
    # g = 2(0.75·(1,0) + 0.25·(−1,2)) = (1, 1), ‖g‖ = √2 < ‖g_mm + g_u‖ = ‖(0, 2)‖ = 2
    # → rescaled to norm 2: (√2, √2), then × γ = 1.5
    (new,) = integrate([g_mm], [g_u], a_mm, a_u, gamma=1.5)
    torch.testing.assert_close(new, torch.tensor([1.5 * math.sqrt(2), 1.5 * math.sqrt(2)]))
    # a common descent direction: the same positive inner product with both gradients
    assert float(new @ g_mm) == pytest.approx(float(new @ g_u)) and float(new @ g_mm) > 0


def test_pareto_combination_without_conflict_is_the_scaled_sum():
    g_mm, g_u = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    a_mm, a_u, cos = pareto_weights(g_mm, g_u)
    assert (a_mm, a_u) == (0.5, 0.5) and cos == pytest.approx(1 / math.sqrt(2))
    (new,) = integrate([g_mm], [g_u], a_mm, a_u, gamma=1.5)
    torch.testing.assert_close(new, torch.tensor([3.0, 1.5]))  # 1.5·(g_mm + g_u)


def test_rescale_per_tensor_or_per_encoder():
    g_mm = [torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])]
    g_u = [torch.tensor([-1.0, 2.0]), torch.tensor([0.0, 0.0])]
    # tensor 1: g = (1,1), sum (0,2) → ×√2; tensor 2: g = 1.5·(2,0) = (3,0), sum (2,0) → kept
    per_tensor = integrate(g_mm, g_u, 0.75, 0.25, gamma=1.0, per_tensor=True)
    torch.testing.assert_close(per_tensor[0], torch.tensor([math.sqrt(2), math.sqrt(2)]))
    torch.testing.assert_close(per_tensor[1], torch.tensor([3.0, 0.0]))
    # whole vector: ‖g‖ = √11 > ‖sum‖ = √8 → unchanged
    whole = integrate(g_mm, g_u, 0.75, 0.25, gamma=1.0, per_tensor=False)
    torch.testing.assert_close(whole[0], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(whole[1], torch.tensor([3.0, 0.0]))


def test_mmpareto_after_backward_matches_separate_gradients(batch):
    """The encoder gradient the method writes equals the integration of separately computed
    ∇CE(fused) and ∇CE(unimodal head) (the method derives g_mm as total − g_u)."""
    inputs, labels = batch
    method, model = setup("mmpareto", {"gamma": 1.5})
    out = method.forward(model, inputs, labels)
    loss = method.loss(out, labels)
    params = {m: model.modality_parameters(m) for m in TWO}
    g_mm = {m: torch.autograd.grad(F.cross_entropy(out.logits, labels), params[m], retain_graph=True) for m in TWO}
    g_u = {m: torch.autograd.grad(F.cross_entropy(model.method_modules[f"uni_head_{m}"](out.features[m]), labels),
                                  params[m], retain_graph=True) for m in TWO}
    loss.backward()
    method.after_backward(model, out, labels)
    for m in TWO:
        a_mm, a_u, _ = pareto_weights(flat(g_mm[m]), flat(g_u[m]))
        expected = integrate(list(g_mm[m]), list(g_u[m]), a_mm, a_u, 1.5)
        for p, e in zip(params[m], expected):
            torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)
    # the unimodal heads and the fusion head keep their plain gradients
    assert all(p.grad is not None for p in model.method_modules.parameters())


# ---------------------------------------------------------------- MSLR


def test_mslr_group_learning_rates():
    method, model = setup("mslr", {"scales": {"audio": 0.5, "visual": 2.0, "text": 3.0}})
    trainer = Trainer(model, method, splits(), TRAIN, seed=0, name="mslr")
    lrs = {g.get("modality", "rest"): g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs == pytest.approx({"audio": 0.05, "visual": 0.2, "rest": 0.1})
    # every trainable parameter in exactly one group; encoders in their modality's group
    ids = [id(p) for g in trainer.optimizer.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(ids) == len(set(ids))
    audio = next(g for g in trainer.optimizer.param_groups if g.get("modality") == "audio")
    assert {id(p) for p in audio["params"]} == {id(p) for p in model.encoders["audio"].parameters()}


def test_mslr_formulas():
    assert modality_lrs(1e-3, ["audio", "visual"], {"audio": 0.9, "visual": 1.1}) == pytest.approx({"audio": 9e-4, "visual": 1.1e-3})
    assert modality_lrs(1e-3, ["text"], {"audio": 0.9}) == {"text": 1e-3}
    # AGM's update: current probe accuracy / mean of the previous five epochs
    assert dynamic_ratio(0.6, [0.4, 0.5, 0.6, 0.5, 0.5]) == pytest.approx(1.2)


def test_mslr_dynamic_rescales_after_window():
    method, model = setup("mslr", {"scales": {"audio": 0.5}, "strategy": "dynamic", "window": 2})
    trainer = Trainer(model, method, splits(), TRAIN, seed=0, name="mslr")
    accs = iter([{"audio": 0.4, "visual": 0.2}, {"audio": 0.6, "visual": 0.2}, {"audio": 0.75, "visual": 0.1}])
    trainer.evaluate = lambda split: {"probe_acc": next(accs)}
    for epoch in range(3):
        method.on_epoch_end(epoch, trainer)
    lrs = {g.get("modality", "rest"): g["lr"] for g in trainer.optimizer.param_groups}
    # after the third epoch: audio 0.75 / mean(0.4, 0.6) = 1.5; visual 0.1 / 0.2 = 0.5
    assert lrs == pytest.approx({"audio": 0.1 * 0.5 * 1.5, "visual": 0.1 * 0.5, "rest": 0.1})


def test_mslr_without_a_scale_for_the_dataset_is_an_error():
    """A scale table that names none of the run's modalities would train Concat under MSLR's name."""
    with pytest.raises(ValueError, match="no learning-rate scale differs from 1"):
        setup("mslr", {"scales": {"rgb": 0.9}})


def test_mslr_scales_by_dataset():
    from mmbalance.methods.mslr import dataset_scales

    cfg = {"scales": {"audio": 0.9, "visual": 1.1}, "scales_by_dataset": {"mosi": {"text": 0.9, "audio": 1.1}}}
    assert dataset_scales(cfg, "mosi") == {"audio": 1.1, "visual": 1.1, "text": 0.9}
    assert dataset_scales(cfg, "cremad") == {"audio": 0.9, "visual": 1.1}


def test_mslr_rejects_unknown_strategy():
    with pytest.raises(ValueError, match="method 'mslr': unknown strategy 'smooth'"):
        build_method("mslr", {"strategy": "smooth"}, MethodContext(TWO, 6, 1))


# ---------------------------------------------------------------- ModDrop


def test_moddrop_never_drops_everything_and_hits_the_rate():
    torch.manual_seed(0)
    for mods, p in ((TWO, 0.3), (["a", "b", "c"], 0.4)):
        keep = keep_masks(200_000, mods, raw_rate(p, len(mods)))
        stacked = torch.stack([keep[m] for m in mods], dim=1)
        assert (stacked.sum(dim=1) > 0).all()
        for m in mods:
            assert float(1 - keep[m].mean()) == pytest.approx(p, abs=0.005)


def test_moddrop_rate_formulas():
    # two modalities: conditioned on not both dropped, q/(1+q); q = 0.5 → 1/3
    assert marginal_drop_rate(0.5, 2) == pytest.approx(1 / 3)
    assert raw_rate(0.3, 2) == pytest.approx(0.3 / 0.7, abs=1e-9)


def test_moddrop_forward_zeroes_dropped_features(batch):
    inputs, labels = batch
    method, model = setup("moddrop", {"p": 0.45})
    torch.manual_seed(3)
    out = method.forward(model, inputs, labels)
    zero = {m: (out.features[m].abs().sum(dim=1) == 0) for m in TWO}
    assert not (zero["audio"] & zero["visual"]).any()
    assert (zero["audio"] | zero["visual"]).any()


def test_moddrop_rejects_unreachable_rate():
    with pytest.raises(ValueError, match=r"method 'moddrop': p = 0.5 .* 2 modalities \(audio, visual\)"):
        build_method("moddrop", {"p": 0.5}, MethodContext(TWO, 6, 1))


# ---------------------------------------------------------------- uni-modal loss


def test_unimodal_loss_value():
    labels = torch.tensor([0])
    fused = torch.tensor([[2.0, 0.0]])  # CE = log(1 + e^−2) = 0.126928
    uni = {"audio": torch.tensor([[0.0, 0.0]]),  # log 2 = 0.693147
           "visual": torch.tensor([[0.0, 1.0]])}  # log(1 + e) = 1.313262
    assert float(unimodal_loss(fused, uni, labels)) == pytest.approx(2.133337, abs=1e-6)
    assert float(unimodal_loss(fused, uni, labels, weight=0.5)) == pytest.approx(0.126928 + 0.5 * 2.006409, abs=1e-6)


# ---------------------------------------------------------------- ReconBoost


def test_reconboost_loss_on_fixed_probabilities():
    # active learner p = (0.8, 0.2), ensemble of the others q = (0.6, 0.4), C = 2, w1 = 5, w2 = 1
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.8, 0.2]]))
    others = torch.log(torch.tensor([[0.6, 0.4], [0.6, 0.4]]))
    labels = torch.tensor([0, 1])
    # y = 0: −½(5 − 0.6)·log 0.8 = 2.2·0.223144 = 0.490916
    # y = 1: −½(5 − 0.4)·log 0.2 = 2.3·1.609438 = 3.701707
    loss = boosting_loss(logits, others, labels, weight1=5.0, weight2=1.0)
    assert float(loss) == pytest.approx((0.490916 + 3.701707) / 2, abs=1e-5)


def test_reconboost_phase_schedule():
    method = build_method("reconboost", {"warmup_epochs": 1, "stage_epochs": 4, "correct_epochs": 4}, MethodContext(TWO, 6, 20))
    kinds = [method.phase_of(e)[:2] for e in range(18)]
    assert kinds[0] == ("warmup", None)
    assert kinds[1:5] == [("boost", "audio")] * 4 and kinds[5:9] == [("correct", "audio")] * 4
    assert kinds[9:13] == [("boost", "visual")] * 4 and kinds[13:17] == [("correct", "visual")] * 4
    assert kinds[17] == ("boost", "audio")


def test_reconboost_boosting_step_moves_only_the_active_learner():
    method, model = setup("reconboost", {"warmup_epochs": 0, "stage_epochs": 1, "correct_epochs": 1, "order": ["visual", "audio"]})
    trainer = Trainer(model, method, splits(), TRAIN, seed=0, name="reconboost")
    method.on_epoch_start(0, trainer)
    assert method.phase[:2] == ("boost", "visual")
    inputs, labels = next(trainer.batches("train", train=True))
    trainer.optimizer.zero_grad(set_to_none=True)
    out = method.forward(model, inputs, labels)
    method.loss(out, labels).backward()
    assert all(p.grad is None for p in model.encoders["audio"].parameters())
    assert all(p.grad is not None for p in model.encoders["visual"].parameters())
    before = [p.detach().clone() for p in model.encoders["audio"].parameters()]
    trainer.optimizer.step()
    assert all(torch.equal(b, p) for b, p in zip(before, model.encoders["audio"].parameters()))
    opt = trainer.optimizer
    method.on_epoch_start(1, trainer)  # correction phase: a fresh optimizer
    assert method.phase[:2] == ("correct", "visual") and trainer.optimizer is not opt


def test_reconboost_rejects_unknown_order():
    with pytest.raises(ValueError, match="order names \\['text'\\]"):
        build_method("reconboost", {"order": ["text"]}, MethodContext(TWO, 6, 1))


# ---------------------------------------------------------------- LFM


def test_lfm_fitted_schedule():
    # α_cls(10) = 0.204623704 + 0.0335472727 + 0.0122989557 − 0.00292947416 + 0.000223835486 − 0.0000053971751
    assert fitted_weights(10, 200, stretch=False) == pytest.approx((0.2477589, 0.7522411), abs=1e-6)
    assert fitted_weights(0, 20)[0] == pytest.approx(0.204623704)
    assert fitted_weights(1, 20) == pytest.approx(fitted_weights(10, 200, stretch=False))  # t = 1·200/20
    # the code's fit rises to above 1 near t = 180 (clamped) and falls back to 0.90 at t = 200
    a = [fitted_weights(e, 20)[0] for e in range(20)]
    assert all(x < y for x, y in zip(a[:19], a[1:19])) and a[18] == 1.0 and a[19] == pytest.approx(0.9952, abs=1e-4)
    assert fitted_weights(500, 200, stretch=False) == fitted_weights(200, 200, stretch=False)  # clamped


def test_lfm_divergences_by_hand():
    # p = (0.5, 0.5), q = (0.9, 0.1), m = (0.7, 0.3)
    z1, z2 = torch.log(torch.tensor([[0.5, 0.5]])), torch.log(torch.tensor([[0.9, 0.1]]))
    # code: ½[KL(m‖p) + KL(m‖q)] = ½(0.082283 + 0.153664)
    assert float(pair_divergence(z1, z2, "code")) == pytest.approx(0.117973, abs=1e-5)
    # textbook JS: ½[KL(p‖m) + KL(q‖m)] = ½(0.087177 + 0.116321)
    assert float(pair_divergence(z1, z2, "js")) == pytest.approx(0.101749, abs=1e-5)
    # three modalities: mean over the three pairs
    z3 = torch.zeros(1, 2)
    three = gap_loss({"a": z1, "b": z2, "c": z3})
    pairs = [pair_divergence(z1, z2), pair_divergence(z1, z3), pair_divergence(z2, z3)]
    assert float(three) == pytest.approx(float(sum(pairs) / 3))


def test_lfm_loss_value():
    uni = {"audio": torch.log(torch.tensor([[0.5, 0.5]])), "visual": torch.log(torch.tensor([[0.9, 0.1]]))}
    fused = uni["audio"] + uni["visual"]  # CE(fused/2, 0) = −log softmax(½ log(0.45, 0.05))_0
    ce = -math.log(math.sqrt(0.45) / (math.sqrt(0.45) + math.sqrt(0.05)))
    loss, cls, gap = lfm_loss(fused, uni, torch.tensor([0]), 0.25, 0.75)
    assert float(cls) == pytest.approx(ce, abs=1e-6)
    assert float(loss) == pytest.approx(2 * (0.25 * ce + 0.75 * 0.117973), abs=1e-5)


def test_lfm_learned_schedule_steps_and_halves():
    method, model = setup("lfm", {"schedule": "learned", "lr_alpha": 1e-4})
    trainer = Trainer(model, method, splits(), TRAIN, seed=0, name="lfm")
    method.on_epoch_start(0, trainer)
    assert 0.05 <= method.a_gap <= 0.95 and method.weights == (1 - method.a_gap, method.a_gap)
    assert math.isfinite(method.ctx.logs["alpha_hypergrad"][0])
    method.on_epoch_start(20, trainer)
    assert method.lr_alpha == pytest.approx(5e-5)
    assert model.training


# ---------------------------------------------------------------- three modalities (MOSI)


@pytest.mark.parametrize("name", ["mmpareto", "reconboost", "lfm", "mslr", "moddrop", "unimodal_loss"])
def test_three_modalities_one_step(name):
    mods = ["audio", "visual", "extra"]
    method, model = setup(name, {"scales": {"extra": 1.2}} if name == "mslr" else {}, mods)
    trainer = Trainer(model, method, splits(mods), TRAIN, seed=0, name=name)
    method.on_epoch_start(0, trainer)
    inputs, labels = next(trainer.batches("train", train=True))
    out = method.forward(model, inputs, labels)
    loss = method.loss(out, labels)
    loss.backward()
    method.after_backward(model, out, labels)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no gradient for {pname}"
