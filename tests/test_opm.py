"""OPM formulas (TPAMI 2024 Eq. 6–8, Tab. 14–15) against hand-computed values."""

import math

import pytest
import torch

from mmbalance.methods import MethodContext, build_method, true_class_scores
from mmbalance.methods.opm import discrepancy, drop_masks, drop_probability, in_epoch_range, unimodal_scores, z_value
from mmbalance.models import build_model

from conftest import IN_CHANNELS, MODEL_CFG

MODS = ["audio", "visual"]


def tiny_model():
    torch.manual_seed(0)
    return build_model(MODEL_CFG, MODS, IN_CHANNELS, 6, "concat")


def opm(cfg=None, name="opm"):
    return build_method(name, cfg or {}, MethodContext(list(MODS), 6, 3))


@pytest.mark.parametrize(
    "rho, q_base, lam, z, expected",
    [
        (1.5, 0.5, 0.5, "tanh", 0.5 * (1 + 0.5 * math.tanh(0.5))),  # 0.615529
        (1.5, 0.5, 0.5, "tanh", 0.615529),
        (2.0, 0.5, 0.5, "sigmoid", 0.720199),  # 0.5·(1 + 0.5·sigmoid(2) = 0.880797)
        (4.0, 0.9, 1.0, "tanh", 1.0),  # 0.9·(1 + 0.995) = 1.79 → capped at 1
        (1.0, 0.5, 0.5, "tanh", 0.0),  # not dominant
        (0.25, 0.5, 0.5, "tanh", 0.0),
    ],
)
def test_drop_probability(rho, q_base, lam, z, expected):
    assert drop_probability(rho, q_base, lam, z) == pytest.approx(expected, abs=1e-6)


def test_z_functions_and_unknown_names():
    assert z_value(1.0, "tanh") == 0.0
    assert z_value(0.0, "sigmoid") == 0.5
    with pytest.raises(ValueError, match="choices: sigmoid, tanh"):
        z_value(1.0, "relu")
    with pytest.raises(ValueError, match="choices: difference, ratio"):
        discrepancy({"a": torch.ones(1), "b": torch.ones(1)}, "log")


def test_discrepancy_difference_form():
    # Σ s_a = 1.6, Σ s_v = 0.4 → ρ_a = 1.2, ρ_v = −1.2 (Tab. 15's difference measure)
    rho = discrepancy({"audio": torch.tensor([0.9, 0.7]), "visual": torch.tensor([0.2, 0.2])}, "difference")
    assert rho["audio"] == pytest.approx(1.2) and rho["visual"] == pytest.approx(-1.2)
    # three modalities, sums 2, 1, 4: ρ_a = ((2 − 1) + (2 − 4)) / 2 = −0.5
    three = discrepancy({"a": torch.tensor([2.0]), "b": torch.tensor([1.0]), "c": torch.tensor([4.0])}, "difference")
    assert three["a"] == pytest.approx(-0.5) and three["c"] == pytest.approx(2.5)


def test_discrepancy_ratio_is_eq7_and_inverse():
    scores = {"a": torch.tensor([4.0]), "b": torch.tensor([3.0]), "c": torch.tensor([1.0])}
    rho = discrepancy(scores)
    assert rho["a"] == pytest.approx((4 / 3 + 4 / 1) / 2)
    inv = discrepancy(scores, inverse=True)  # 1/(M−1) Σ_j S^j / S^m
    assert inv["c"] == pytest.approx((4 + 3) / 2)
    assert inv["b"] == pytest.approx((4 / 3 + 1 / 3) / 2)


def test_drop_masks_rescale_and_all_dropped_guard():
    dims = {"audio": 8, "visual": 24}
    # q_a = 1: audio always dropped; code rescale θ = (8·1 + 24·0) / 32 = 0.25 → survivors × 4/3
    keep = drop_masks({"audio": 1.0, "visual": 0.0}, 5, torch.device("cpu"), "code", dims)
    assert torch.equal(keep["audio"], torch.zeros(5))
    torch.testing.assert_close(keep["visual"], torch.full((5,), 4 / 3))
    # both q = 1: every sample would lose both → the lowest-q modality (first on a tie) is kept
    keep = drop_masks({"audio": 1.0, "visual": 1.0}, 4, torch.device("cpu"))
    assert torch.equal(keep["audio"], torch.ones(4)) and torch.equal(keep["visual"], torch.zeros(4))
    keep = drop_masks({"audio": 1.0, "visual": 0.9}, 6, torch.device("cpu"))
    assert torch.equal(keep["visual"], torch.ones(6))
    # per-modality inverted dropout: survivors × 1 / (1 − 0.5) = 2
    torch.manual_seed(0)
    keep = drop_masks({"audio": 0.5, "visual": 0.0}, 50, torch.device("cpu"), "per_modality")
    assert set(keep["audio"].unique().tolist()) <= {0.0, 2.0}
    with pytest.raises(ValueError, match="choices: code, none, per_modality"):
        drop_masks({"audio": 0.5, "visual": 0.0}, 2, torch.device("cpu"), "other")


def test_drop_masks_drop_rate_is_q():
    torch.manual_seed(0)
    keep = drop_masks({"audio": 0.3, "visual": 0.0}, 20000, torch.device("cpu"))
    assert float((keep["audio"] == 0).float().mean()) == pytest.approx(0.3, abs=0.015)
    assert torch.equal(keep["visual"], torch.ones(20000))


def test_bias_split_full_bias_equals_zeroed_prediction(batch):
    """γ^m = 1 for every m gives W_m·φ_m + b, which for the concat head is the prediction with the
    other modality zeroed (Tab. 14's γ = (1, 1) row)."""
    inputs, labels = batch
    model = tiny_model()
    with torch.no_grad():
        feats = model.encode(inputs)
        out = model.fuse(feats)
        s = unimodal_scores(model, out, labels, [1.0, 1.0])
        for m in MODS:
            only = model.fuse({k: f if k == m else torch.zeros_like(f) for k, f in feats.items()}).logits
            expected = torch.softmax(only, 1).gather(1, labels[:, None]).squeeze(1)
            torch.testing.assert_close(s[m], expected)
        # no split given: the b/M split of out.unimodal_logits (the paper's Eq. 6)
        torch.testing.assert_close(unimodal_scores(model, out, labels)["audio"], true_class_scores(out, labels)["audio"])
        with pytest.raises(ValueError, match="bias_split has 3 values"):
            unimodal_scores(model, out, labels, [0.3, 0.3, 0.4])


def test_epoch_range():
    assert in_epoch_range({}, 99)
    assert not in_epoch_range({"start_epoch": 6}, 5) and in_epoch_range({"start_epoch": 6, "end_epoch": 60}, 60)
    assert not in_epoch_range({"end_epoch": 60}, 61) and in_epoch_range({"end_epoch": None}, 10**6)


def _rho(model, inputs, labels):
    with torch.no_grad():  # ρ^m as Python floats (discrepancy gives 0-d device tensors)
        return {m: float(r) for m, r in discrepancy(true_class_scores(model(inputs), labels)).items()}


def test_q_from_previous_step_paper(batch):
    inputs, labels = batch
    model, method = tiny_model(), opm({"q_base": 0.5, "lam": 0.5})
    rho0 = _rho(model, inputs, labels)
    method.forward(model, inputs, labels)
    logs = method.ctx.logs
    assert logs["q_audio"][0] == 0.0 and logs["q_visual"][0] == 0.0  # no previous step yet
    assert logs["rho_audio"][0] == pytest.approx(rho0["audio"], rel=1e-5)
    method.forward(model, inputs, labels)  # same batch, same weights: q_1 = Eq. 8 of ρ_0
    for m in MODS:
        assert logs[f"q_{m}"][1] == pytest.approx(drop_probability(rho0[m], 0.5, 0.5), rel=1e-5)
    assert method.state_dict()["q"]["audio"] == pytest.approx(drop_probability(rho0["audio"]), rel=1e-5)


def test_q_from_current_batch_code(batch):
    inputs, labels = batch
    model, method = tiny_model(), opm({"q_from": "current"})
    rho0 = _rho(model, inputs, labels)
    method.forward(model, inputs, labels)
    for m in MODS:
        assert method.ctx.logs[f"q_{m}"][0] == pytest.approx(drop_probability(rho0[m]), rel=1e-5)


def test_dominant_features_dropped_and_fused_from_masked_features(batch):
    inputs, labels = batch
    model = tiny_model()
    rho = _rho(model, inputs, labels)
    dominant, weak = sorted(MODS, key=lambda m: -rho[m])
    method = opm({"q_from": "current", "q_base": 1.0, "lam": 1.0})  # q = 1 for the dominant modality
    out = method.forward(model, inputs, labels)
    assert torch.equal(out.features[dominant], torch.zeros_like(out.features[dominant]))
    with torch.no_grad():
        feats = model.encode(inputs)
    torch.testing.assert_close(out.features[weak], feats[weak])
    masked = {dominant: torch.zeros_like(feats[dominant]), weak: feats[weak]}
    torch.testing.assert_close(out.logits, model.fuse(masked).logits)
    assert method.ctx.logs[f"dropped_{dominant}"][0] == 1.0 and method.ctx.logs[f"dropped_{weak}"][0] == 0.0


def test_p_exe_zero_and_epoch_range_disable_dropping(batch):
    inputs, labels = batch
    model = tiny_model()
    with torch.no_grad():
        full = model(inputs).logits
    for cfg in ({"q_from": "current", "q_base": 1.0, "p_exe": 0.0}, {"q_from": "current", "q_base": 1.0, "start_epoch": 6}):
        out = opm(cfg).forward(model, inputs, labels)
        torch.testing.assert_close(out.logits, full)


def test_invalid_config_raises():
    with pytest.raises(ValueError, match="q_from must be one of previous, current"):
        opm({"q_from": "next"})
    with pytest.raises(ValueError, match="rescale must be one of"):
        opm({"rescale": "inverted"})
    with pytest.raises(ValueError, match="'opm_ogm': form must be one of paper, code"):
        opm({"form": "other"}, name="opm_ogm")
    with pytest.raises(ValueError, match="'opm' needs at least 2 modalities"):
        build_method("opm", {}, MethodContext(["audio"], 6, 1))
