"""MMCosine, UMT, MBSD, CML, AMCo and modality valuation (the BalanceBenchmark methods) against
hand-computed values of their formulas, and their in-loop mechanics on tiny data."""

import math

import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.amco import class_mask, dependence_shares, mask_ratio
from mmbalance.methods.cml import cml_loss, confidence_penalties, confidence_rise
from mmbalance.methods.mbsd import mbsd_regulariser, pair_terms
from mmbalance.methods.mmcosine import cosine_logits, rescale_factors
from mmbalance.methods.umt import distillation_losses
from mmbalance.methods.valuation import ValuationOutput, modality_difference, sample_copies, shapley_values
from mmbalance.train.loop import Trainer

from test_methods import TRAIN, make, splits_for

SIG2 = 1.0 / (1.0 + math.exp(-2.0))  # softmax([2, 0])[0] = 0.880797
SIG3 = 1.0 / (1.0 + math.exp(-3.0))  # softmax([0, 3])[1] = 0.952574


def ctx(mods=("audio", "visual"), classes=2):
    return MethodContext(list(mods), classes, 4)


# ---- MMCosine ----------------------------------------------------------------------------------


def test_mmcosine_logits_are_scaled_cosines_summed_over_modalities():
    feats = {"audio": torch.tensor([[3.0, 4.0]]), "visual": torch.tensor([[2.0, 0.0, 0.0]])}
    weights = {"audio": torch.tensor([[1.0, 0.0], [0.0, 2.0]]), "visual": torch.tensor([[0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])}
    z = cosine_logits(feats, weights, 10.0)
    # audio: φ/‖φ‖ = (0.6, 0.8), rows (1, 0), (0, 1) → 10·(0.6, 0.8); visual: (1, 0, 0) → 10·(0, 1)
    torch.testing.assert_close(z["audio"], torch.tensor([[6.0, 8.0]]))
    torch.testing.assert_close(z["visual"], torch.tensor([[0.0, 10.0]]))
    # true class 1: s/(‖φ‖·‖w_1‖) = 10/(5·2) = 1 (normalising changes nothing) and 10/(2·5) = 1
    r = rescale_factors(feats, weights, torch.tensor([1]), 10.0)
    assert float(r["audio"]) == pytest.approx(1.0) and float(r["visual"]) == pytest.approx(1.0)
    r = rescale_factors(feats, weights, torch.tensor([0]), 10.0)  # 10/(5·1) = 2, 10/(2·1) = 5
    assert float(r["audio"]) == pytest.approx(2.0) and float(r["visual"]) == pytest.approx(5.0)
    # the norm of the features no longer matters
    torch.testing.assert_close(cosine_logits({m: 7 * f for m, f in feats.items()}, weights, 10.0)["audio"], z["audio"])


def test_mmcosine_trains_encoders_only_through_the_cosine_loss(batch):
    inputs, labels = batch
    method, model, _ = make("mmcosine")
    out = method.forward(model, inputs, labels)
    method.loss(out, labels).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if n.startswith("encoders.")}
    assert all(p.grad is not None for p in model.fusion.parameters())  # the probe head is trained
    model.zero_grad()
    feats = model.encode(inputs)
    F.cross_entropy(sum(cosine_logits(feats, dict(method.weights.items()), method.scale).values()), labels).backward()
    for n, p in model.named_parameters():
        if n.startswith("encoders."):
            torch.testing.assert_close(grads[n], p.grad)  # the probe sends nothing into the encoders
    torch.testing.assert_close(method.predict(out), sum(cosine_logits(out.features, dict(method.weights.items()), 10.0).values()))


# ---- UMT ---------------------------------------------------------------------------------------


def test_umt_distillation_is_the_feature_mse():
    # ((1 − 0)² + (2 − 0)² + (0 − 0)² + (−2 − 0)²)/4 = 9/4; visual: (0.5² + 0.5²)/2 = 0.25
    d = distillation_losses({"audio": torch.tensor([[1.0, 2.0], [0.0, -2.0]]), "visual": torch.tensor([[1.0, 2.0]])},
                            {"audio": torch.zeros(2, 2), "visual": torch.tensor([[0.5, 2.5]])})
    assert float(d["audio"]) == pytest.approx(2.25) and float(d["visual"]) == pytest.approx(0.25)


def test_umt_trains_frozen_teachers_once_and_restores_them(batch):
    inputs, labels = batch
    method, model, mods = make("umt", {"weight": 2.0, "teacher_epochs": 2})
    initial = {k: v.clone() for k, v in model.encoders["audio"].state_dict().items()}
    trainer = Trainer(model, method, splits_for(mods), TRAIN, seed=0, name="umt")
    method.on_epoch_start(0, trainer)
    teachers = dict(method.teachers)
    assert set(teachers) == set(mods) and set(method.teacher_acc) == set(mods)
    assert all(not p.requires_grad for t in teachers.values() for p in t.parameters())
    assert any(not torch.equal(initial[k], v) for k, v in teachers["audio"].state_dict().items())  # trained
    assert all(torch.equal(initial[k], v) for k, v in model.encoders["audio"].state_dict().items())  # student untouched
    method.on_epoch_start(1, trainer)
    assert method.teachers["audio"] is teachers["audio"]  # trained once
    out = method.forward(model, inputs, labels)
    expected = F.cross_entropy(out.logits, labels) + 2.0 * sum(distillation_losses(out.features, out.teacher_features).values())
    torch.testing.assert_close(method.loss(out, labels), expected)
    restored, model2, _ = make("umt", {"weight": 2.0, "teacher_epochs": 2})
    restored.load_state_dict(method.state_dict())
    restored.on_epoch_start(0, Trainer(model2, restored, splits_for(mods), TRAIN, seed=0, name="umt"))  # no retraining
    out2 = restored.forward(model2, inputs, labels)
    for m in mods:
        torch.testing.assert_close(out2.teacher_features[m], out.teacher_features[m])


# ---- MBSD --------------------------------------------------------------------------------------


def test_mbsd_pair_terms_by_hand():
    z_i, z_j = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0])
    t = pair_terms(z_i, z_j, labels)
    # sample 0: t_i = 0.880797, t_j = 0.5, modality i right → w = 0.380797; RS = (2² + 0²)/2 = 2;
    # KL = 0.5·(ln 0.5 − 0.880797) = −0.786972. Sample 1: both wrong → w = 0
    torch.testing.assert_close(t["w"], torch.tensor([SIG2 - 0.5, 0.0]))
    torch.testing.assert_close(t["rs"], torch.tensor([2.0, 0.5]))
    assert float(t["kl"][0]) == pytest.approx(0.5 * (math.log(0.5) - SIG2), abs=1e-6)
    reg, weight = mbsd_regulariser({"a": z_i, "v": z_j}, labels)
    # mean_b(w·RS) + mean_b(w·KL) = 0.380797·2/2 + 0.380797·(−0.786972)/2 = 0.230959
    assert float(reg) == pytest.approx(0.230959, abs=1e-5)
    assert float(weight) == pytest.approx((SIG2 - 0.5) / 2)


def test_mbsd_three_modalities_average_the_pairs():
    z = {"a": torch.tensor([[2.0, 0.0]]), "b": torch.tensor([[0.0, 0.0]]), "c": torch.tensor([[2.0, 0.0]])}
    labels = torch.tensor([0])
    reg, _ = mbsd_regulariser(z, labels)
    one, _ = mbsd_regulariser({"a": z["a"], "b": z["b"]}, labels)  # pairs ab and bc alike, ac contributes 0
    assert float(reg) == pytest.approx(2 * float(one) / 3, abs=1e-6)


# ---- CML ---------------------------------------------------------------------------------------


def test_cml_penalty_and_loss_by_hand():
    full, partial = torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 1])
    # Conf: full (0.880797, 0.5), partial (0.5, 0.952574): Σ_b rise = −0.380797 + 0.452574 = 0.071777
    (pen,) = confidence_penalties([full, partial])
    assert float(pen) == pytest.approx(0.071777, abs=1e-6)
    assert float(confidence_rise([full, partial])) == pytest.approx(0.452574 / 2, abs=1e-6)
    (none,) = confidence_penalties([partial, full])  # Σ_b rise = −0.071777 → hinge 0
    assert float(none) == 0.0
    loss, penalty = cml_loss([full, partial], labels, 0.1)
    # (CE_full + CE_partial)/2 + 0.1·0.071777: CE_full = (−ln 0.880797 + ln 2)/2 = 0.410038,
    # CE_partial = (ln 2 − ln 0.952574)/2 = 0.370867 → 0.390452 + 0.007178 = 0.397630
    assert float(loss) == pytest.approx(0.397630, abs=1e-5) and float(penalty) == pytest.approx(0.071777, abs=1e-6)


def test_cml_chain_zeroes_the_removed_modality(batch):
    inputs, labels = batch
    method, model, mods = make("cml")
    method.order = ["visual", "audio"]
    out = method.forward(model, inputs, labels)
    # concat: without visual the fused logits are W_a·φ_a + b = the audio share + b/2
    torch.testing.assert_close(out.chain[0], out.unimodal_logits["audio"] + model.fusion.head.bias / 2)


# ---- AMCo --------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_idx, epoch, expected", [(0, 5, 0.0), (7, 0, 0.0), (1, 1, 0.5), (3, 1, 1.0), (10, 2, 1.0),
                                                        (1, 2, math.sin(math.pi / 3))])
def test_amco_mask_schedule(batch_idx, epoch, expected):
    # p = sin(π/2·min(0.3, b·e/10)/0.3): b·e/10 = 0.1 → sin(π/6) = 0.5; 0.2 → sin(π/3)
    assert mask_ratio(batch_idx, epoch, 0.3) == pytest.approx(expected)


def test_amco_dependence_shares_and_mask():
    shares = dependence_shares({"a": torch.tensor([[0.0, 0.0]]), "v": torch.tensor([[math.log(3.0), 0.0]])})
    # exp of [0, 0, ln 3, 0] = [1, 1, 3, 1] / 6 → a 2/6, v 4/6
    assert float(shares["a"]) == pytest.approx(1 / 3) and float(shares["v"]) == pytest.approx(2 / 3)
    mask = class_mask(6, 4)
    assert mask.shape == (6,) and float(mask.sum()) == 2.0


def test_amco_masks_the_dependent_modality(batch):
    inputs, labels = batch
    method, model, _ = make("amco")
    method.ctx.epoch, method.batch = 1, 3  # p = 1: every class masked
    method.dependent = {"visual": torch.tensor(1.0), "audio": torch.tensor(0.0)}
    out = method.forward(model, inputs, labels)
    ref = model(inputs)
    torch.testing.assert_close(out.unimodal_logits["visual"], torch.zeros_like(ref.logits))
    torch.testing.assert_close(out.unimodal_logits["audio"], ref.unimodal_logits["audio"])
    torch.testing.assert_close(out.logits, method.star(ref.logits - ref.unimodal_logits["visual"]))
    assert float(method.ctx.logs["mask_visual"][-1]) == 1.0 and float(method.ctx.logs["mask_audio"][-1]) == 0.0
    method.loss(out, labels)  # the visual logits are all 0 now: audio holds the larger share
    assert float(method.dependent["audio"]) == 1.0 and float(method.dependent["visual"]) == 0.0


def test_amco_threshold_scales_with_the_number_of_modalities():
    method = build_method("amco", {"sigma": 0.5}, ctx(("a", "b", "c"), 2))
    logits = {"a": torch.tensor([[math.log(4.0), math.log(4.0)]]), "b": torch.zeros(1, 2),
              "c": torch.tensor([[math.log(2.0), 0.0]])}
    out = type("O", (), {"logits": torch.zeros(1, 2), "unimodal_logits": logits})()
    method.star = torch.nn.Linear(2, 2)
    method.loss(out, torch.tensor([0]))
    # exp: a (4, 4), b (1, 1), c (2, 1) / 13 → a 8/13 > 0.5·2/3, b 2/13, c 3/13
    assert {m: float(v) for m, v in method.dependent.items()} == {"a": 1.0, "b": 0.0, "c": 0.0}


# ---- modality valuation ------------------------------------------------------------------------


def test_two_modality_shapley_is_the_codes_formula_and_copies_follow_its_thresholds():
    a, v, av = frozenset({"a"}), frozenset({"v"}), frozenset({"a", "v"})
    correct = {a: torch.tensor([True, False, False, True]), v: torch.tensor([False, False, True, True]),
               av: torch.tensor([True, False, False, True])}
    phi = shapley_values(correct, ["a", "v"])
    # (v_a + v_av − v_v)/2 with v_av ∈ {0, 2}: (1 + 2 − 0)/2, 0, (0 + 0 − 1)/2, (1 + 2 − 1)/2
    torch.testing.assert_close(phi["a"], torch.tensor([1.5, 0.0, -0.5, 1.0]))
    torch.testing.assert_close(phi["v"], torch.tensor([0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(sample_copies(phi["a"]), torch.tensor([0.0, 2.0, 3.0, 0.0]))
    torch.testing.assert_close(sample_copies(phi["v"]), torch.tensor([1.0, 2.0, 1.0, 0.0]))


def test_three_modality_shapley_by_hand():
    mods = ["a", "b", "c"]
    subsets = [frozenset(s) for s in ("a", "b", "c", "ab", "ac", "bc", "abc")]
    only_a = {s: torch.tensor([s == frozenset("a")]) for s in subsets}
    phi = shapley_values(only_a, mods)
    # φ_a = (0!·2!/3!)·(1 − 0) = 1/3; φ_b = (1!·1!/3!)·(v(ab) − v(a)) = −1/6; φ_c = −1/6; Σ = v(abc) = 0
    assert [float(phi[m]) for m in mods] == pytest.approx([1 / 3, -1 / 6, -1 / 6])
    only_full = {s: torch.tensor([len(s) == 3]) for s in subsets}
    assert [float(v) for v in shapley_values(only_full, mods).values()] == pytest.approx([1.0, 1.0, 1.0])  # (2/6)·3


def test_modality_level_difference():
    # gaps 1 − 0.9 = 0.1 and 1 − 0.3 = 0.7: d = 1·(2/3)·0.6 = 0.4, copies keep the visual modality
    d, keep = modality_difference({"audio": 0.9, "visual": 0.3}, 1.0)
    assert d == pytest.approx(0.4) and keep == "visual"
    d3, keep3 = modality_difference({"a": 1.0, "b": 0.4, "c": 0.7}, 0.5)  # pairs 0.6, 0.3, 0.3 → 0.5·(2/3)·0.4
    assert d3 == pytest.approx(0.5 * 2 / 3 * 0.4) and keep3 == "b"


def test_valuation_loss_weights_copies_like_samples():
    method = build_method("valuation", {"warmup_epochs": 1}, ctx())
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    alone = {"audio": torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "visual": torch.tensor([[0.0, 2.0], [3.0, 0.0]])}
    out = ValuationOutput(logits, {}, {}, {"audio": torch.tensor([1.5, -0.5]), "visual": torch.tensor([0.5, 0.0])}, alone)
    labels = torch.tensor([0, 1])
    method.ctx.epoch = 0  # warm-up: the fused CE alone
    torch.testing.assert_close(method.loss(out, labels), F.cross_entropy(logits, labels))
    method.ctx.epoch = 1
    # copies: audio (0, 3), visual (1, 2) → [Σ CE(z) + 3·CE(a_1) + CE(v_0) + 2·CE(v_1)] / 2
    ce = lambda z, i: float(F.cross_entropy(z[i : i + 1], labels[i : i + 1]))  # noqa: E731
    expected = (ce(logits, 0) + ce(logits, 1) + 3 * ce(alone["audio"], 1)
                + ce(alone["visual"], 0) + 2 * ce(alone["visual"], 1)) / 2
    assert float(method.loss(out, labels)) == pytest.approx(expected, abs=1e-6)
    assert float(method.ctx.logs["resample_ratio"][-1]) == pytest.approx(6 / 2)


def test_valuation_forward_values_each_sample_with_the_models_subsets(batch):
    inputs, labels = batch
    method, model, _ = make("valuation")
    out = method.forward(model, inputs, labels)
    zero = {m: torch.zeros_like(f) for m, f in out.features.items()}
    only_a = model.fuse({"audio": out.features["audio"], "visual": zero["visual"]}).logits
    torch.testing.assert_close(out.alone["audio"], only_a)
    hit = lambda z: (z.argmax(1) == labels).float()  # noqa: E731
    only_v = model.fuse({"audio": zero["audio"], "visual": out.features["visual"]}).logits
    torch.testing.assert_close(out.shapley["audio"], (hit(only_a) + 2 * hit(out.logits) - hit(only_v)) / 2)


def test_modality_level_estimates_once_per_epoch():
    method, model, mods = make("valuation", {"level": "modality", "warmup_epochs": 0, "part_ratio": 0.5, "alpha": 1.0})
    trainer = Trainer(model, method, splits_for(mods), TRAIN, seed=0, name="valuation__modality_level")
    method.on_epoch_start(0, trainer)
    assert method.keep in mods and 0.0 <= method.difference <= 2.0
