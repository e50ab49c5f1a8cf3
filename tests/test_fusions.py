"""Registry-driven fusion tests: shapes, per-modality logits, gradients; exact additive splits."""

import math

import pytest
import torch
from torch.nn import functional as F

from mmbalance.models import FUSIONS, build_model

from conftest import IN_CHANNELS, MODEL_CFG

TWO = {"audio": 8, "visual": 5}
THREE = {"text": 7, "audio": 4, "vision": 3}
EQUAL = {"weight", "psp", "mwtsim"}  # fusions that sum or compare the features themselves: equal feature sizes


def dims_for(name, dims):
    """Unequal feature sizes (catching mix-ups) except for the fusions that need equal ones."""
    return {m: 6 for m in dims} if name in EQUAL else dims
ADDITIVE = ["concat", "sum", "weight"]  # fusions whose per-modality logits sum to the fused ones
PAIR_ONLY = ["film", "gated"]


def features(dims, batch=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, d, generator=gen, requires_grad=True) for m, d in dims.items()}


# heads that read a clip's segments (event localisation): the batch's 4 rows are 2 clips × 2 segments
SEGMENTED = ["avga", "avsdn", "psp"]
# heads built with their own backbone in the model test (the localisation backbones: one segment
# per clip, so the fixture's one frame per clip fits)
OWN_BACKBONE = {"central": "centralnet", "mwtsim": "mwtsim", **{n: n for n in SEGMENTED}}


def options_for(name, dims):
    """Constructor arguments a head takes from its backbone: CentralNet's level widths (two
    levels per modality here), the localisation heads' segments per clip."""
    if name == "central":
        return {"levels": {m: [2, d - 2] for m, d in dims.items()}}
    return {"segments": 2} if name in SEGMENTED else {}


def check_forward_backward(name, dims):
    torch.manual_seed(0)
    fusion = FUSIONS.get(name)(dims, 6, **options_for(name, dims))
    feats = features(dims)
    fused, uni = fusion(feats)
    assert fused.shape == (4, 6)
    assert set(uni) == set(dims) and all(u.shape == (4, 6) for u in uni.values())
    # the fused loss alone reaches every fusion parameter and every modality's features (plus, for a
    # head with unimodal classifiers of its own, their losses)
    labels = torch.tensor([0, 1, 2, 3])
    aux = uni.values() if getattr(fusion, "trains_unimodal_heads", False) else []
    (F.cross_entropy(fused, labels) + sum(F.cross_entropy(z, labels) for z in aux)).backward()
    for pname, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats.values())


@pytest.mark.parametrize("name", FUSIONS.names())
def test_two_modalities_forward_backward(name):
    check_forward_backward(name, dims_for(name, TWO))


@pytest.mark.parametrize("name", ADDITIVE)
def test_three_modalities_forward_backward(name):
    check_forward_backward(name, dims_for(name, THREE))


@pytest.mark.parametrize("name", PAIR_ONLY)
def test_pair_only_fusions_reject_three_modalities(name):
    with pytest.raises(ValueError, match=rf"fusion '{name}' is defined for 2 modalities; got 3: text, audio, vision"):
        FUSIONS.get(name)(THREE, 6)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_one_modality_builds(name):
    """Unimodal baselines build the model with one encoder and any ``model.fusion``."""
    fused, uni = FUSIONS.get(name)({"audio": 8}, 6)(features({"audio": 8}))
    assert fused.shape == (4, 6)
    torch.testing.assert_close(uni["audio"], fused)


@pytest.mark.parametrize("name", ADDITIVE)
@pytest.mark.parametrize("dims", [TWO, THREE], ids=["two", "three"])
def test_additive_shares_sum_to_fused(name, dims):
    dims = dims_for(name, dims)
    fused, uni = FUSIONS.get(name)(dims, 6)(features(dims))
    torch.testing.assert_close(sum(uni.values()), fused, rtol=0, atol=1e-6)


def test_sum_unimodal_logits_are_each_heads_full_output():
    torch.manual_seed(0)
    fusion = FUSIONS.get("sum")(TWO, 6)
    feats = features(TWO)
    fused, uni = fusion(feats)
    for m in TWO:
        head = fusion.heads[m]
        torch.testing.assert_close(uni[m], feats[m] @ head.weight.t() + head.bias)
    # exactly (bit for bit): the fused logits are computed as the sum of the shares
    assert torch.equal(uni["audio"] + uni["visual"], fused)


def test_weight_fusion_cmml_by_hand():
    torch.manual_seed(0)
    dims = {"text": 4, "audio": 4, "vision": 4}
    fusion = FUSIONS.get("weight")(dims, 3)
    feats = features(dims)
    scores = torch.cat([fusion.attention(feats[m]) for m in dims], dim=1)  # [B, 3]
    alpha = torch.exp(scores) / torch.exp(scores).sum(dim=1, keepdim=True)
    hidden = sum(alpha[:, i : i + 1] * feats[m] for i, m in enumerate(dims))
    fused, uni = fusion(feats)
    torch.testing.assert_close(fused, hidden @ fusion.head.weight.t() + fusion.head.bias)
    share = (alpha[:, 1:2] * feats["audio"]) @ fusion.head.weight.t() + fusion.head.bias / 3
    torch.testing.assert_close(uni["audio"], share)


def test_weight_fusion_iprm_code_form_by_hand():
    fusion = FUSIONS.get("weight")({"audio": 2, "visual": 2}, 2, form="iprm_code")
    feats = {"audio": torch.tensor([[0.0, 0.0]]), "visual": torch.tensor([[math.log(3.0), 0.0]])}
    # softmax_d: audio (½, ½), visual (¾, ¼) → α_audio = (½/(5/4), ½/(3/4)) = (0.4, 2/3)
    alpha = fusion.attention_weights(feats)
    torch.testing.assert_close(alpha["audio"], torch.tensor([[0.4, 2 / 3]]))
    torch.testing.assert_close(alpha["visual"], torch.tensor([[0.6, 1 / 3]]))
    hidden = torch.tensor([[0.6 * math.log(3.0), 0.0]])
    torch.testing.assert_close(fusion(feats)[0], fusion.head(hidden))
    assert not any(True for _ in fusion.parameters() if _ is not fusion.head.weight and _ is not fusion.head.bias)


def test_weight_fusion_needs_equal_sizes_and_a_known_form():
    with pytest.raises(ValueError, match="fusion 'weight' sums the features and needs equal feature sizes; got audio 8, visual 5"):
        FUSIONS.get("weight")(TWO, 6)
    with pytest.raises(ValueError, match="unknown form 'scalar'; choices: cmml, iprm_code"):
        FUSIONS.get("weight")({"audio": 4, "visual": 4}, 6, form="scalar")


@pytest.mark.parametrize("x_film", [True, False])
def test_film_by_hand(x_film):
    torch.manual_seed(0)
    fusion = FUSIONS.get("film")({"audio": 3, "visual": 3}, 2, x_film=x_film)
    feats = features({"audio": 3, "visual": 3})
    cond, target = ("audio", "visual") if x_film else ("visual", "audio")
    gb = feats[cond] @ fusion.film.weight.t() + fusion.film.bias
    gamma, beta = gb[:, :3], gb[:, 3:]
    expected = (gamma * feats[target] + beta) @ fusion.head.weight.t() + fusion.head.bias
    fused, uni = fusion(feats)
    torch.testing.assert_close(fused, expected)
    # non-linear head: a modality's logits are the prediction with the other one zeroed
    zero_other = {m: feats[m] if m == "audio" else torch.zeros_like(feats[m]) for m in feats}
    torch.testing.assert_close(uni["audio"], fusion.fuse(zero_other))


@pytest.mark.parametrize("x_gate", [True, False])
def test_gated_by_hand(x_gate):
    torch.manual_seed(0)
    fusion = FUSIONS.get("gated")({"audio": 3, "visual": 2}, 2, x_gate=x_gate, dim=4)
    feats = features({"audio": 3, "visual": 2})
    hx = fusion.proj["audio"](feats["audio"])
    hy = fusion.proj["visual"](feats["visual"])
    gated = torch.sigmoid(hx) * hy if x_gate else hx * torch.sigmoid(hy)
    torch.testing.assert_close(fusion(feats)[0], fusion.head(gated))
    assert hx.shape == (4, 4)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_model_with_fusion_trains_one_step(name, batch):
    inputs, labels = batch
    torch.manual_seed(0)
    backbone = OWN_BACKBONE.get(name)  # its own backbone
    cfg = {**MODEL_CFG, "backbone": backbone, "backbone_options": {n: {"segments": 1} for n in SEGMENTED}} if backbone else MODEL_CFG
    model = build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, name)
    out = model(inputs)
    assert out.logits.shape == (8, 6) and set(out.unimodal_logits) == {"audio", "visual"}
    (F.cross_entropy(out.logits, labels) + sum(F.cross_entropy(z, labels) for z in (out.aux_logits or {}).values())).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no gradient for {pname}"


def test_mlp_by_hand():
    """Two layers, hidden = concatenated size (8 + 5): W2·ReLU(W1·[φ_a; φ_v] + b1) + b2, and each
    modality's logits = the same head with the other modality's features zeroed."""
    torch.manual_seed(0)
    fusion = FUSIONS.get("mlp")(TWO, 6)
    first, last = fusion.head[0], fusion.head[2]
    assert (first.in_features, first.out_features, last.in_features, last.out_features) == (13, 13, 13, 6)
    feats = features(TWO)
    fused, uni = fusion(feats)

    def by_hand(a, v):
        return torch.relu(torch.cat([a, v], 1) @ first.weight.t() + first.bias) @ last.weight.t() + last.bias

    torch.testing.assert_close(fused, by_hand(feats["audio"], feats["visual"]))
    torch.testing.assert_close(uni["audio"], by_hand(feats["audio"], torch.zeros(4, 5)))
    torch.testing.assert_close(uni["visual"], by_hand(torch.zeros(4, 8), feats["visual"]))
    # not additive: the zeroed estimates do not sum to the fused logits
    assert not torch.allclose(uni["audio"] + uni["visual"], fused)


def test_mlp_depth_width_and_three_modalities():
    fusion = FUSIONS.get("mlp")(THREE, 6, hidden=10, layers=3)
    shapes = [(m.in_features, m.out_features) for m in fusion.head if isinstance(m, torch.nn.Linear)]
    assert shapes == [(14, 10), (10, 10), (10, 6)]
    assert sum(isinstance(m, torch.nn.ReLU) for m in fusion.head) == 2
    check_forward_backward("mlp", THREE)
    with pytest.raises(ValueError, match="fusion 'mlp' needs at least 2 layers"):
        FUSIONS.get("mlp")(TWO, 6, layers=1)


def test_mlp_options_from_params():
    """``model.fusion_options.mlp`` reaches the head (hidden width, depth)."""
    cfg = {**MODEL_CFG, "fusion_options": {"mlp": {"hidden": 7, "layers": 2}}}
    model = build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, "mlp")
    assert model.fusion.head[0].out_features == 7 and model.fusion.head[2].in_features == 7
