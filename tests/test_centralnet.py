"""CentralNet: the central network against hand-computed values, its levels, what zeroing a
modality removes, the multi-objective loss, and the errors for combinations it cannot serve."""

import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.models import FUSIONS, build_model

from conftest import IN_CHANNELS, INFO, MODEL_CFG

LEVELS = {"audio": [2, 3], "visual": [1, 3]}  # two levels each: a block's pooled maps, then the features
CENTRAL = {**MODEL_CFG, "backbone": "centralnet"}


def inputs(batch=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(batch, 1, 33, 40, generator=gen), "visual": torch.randn(batch, 2, 3, 16, 16, generator=gen)}


def test_central_network_by_hand():
    torch.manual_seed(0)
    head = FUSIONS.get("central")({"audio": 5, "visual": 4}, 6, levels=LEVELS, dim=2)
    with torch.no_grad():
        head.alpha.copy_(torch.tensor([[0.5, 2.0], [1.5, -1.0]]))  # α_m^i: rows = levels, columns = audio, visual
        head.alpha_central.fill_(0.7)  # α_C^2
    a, v = torch.randn(3, 5), torch.randn(3, 4)
    p = head.project
    s1 = 0.5 * p[0]["audio"](a[:, :2]) + 2.0 * p[0]["visual"](v[:, :1])
    c = head.central[0][0]
    s2 = 0.7 * torch.relu(s1 @ c.weight.t() + c.bias) + 1.5 * p[1]["audio"](a[:, 2:]) - 1.0 * p[1]["visual"](v[:, 1:])
    fused, uni = head({"audio": a, "visual": v})
    torch.testing.assert_close(fused, head.head(s2))
    # each modality's own classifier on its final features
    torch.testing.assert_close(uni["audio"], head.unimodal["audio"](a[:, 2:]))
    torch.testing.assert_close(uni["visual"], head.unimodal["visual"](v[:, 1:]))


def test_backbone_levels_are_the_pooled_blocks_then_the_features():
    model = build_model(CENTRAL, ["audio", "visual"], IN_CHANNELS, 6, "central")
    channels = model.encoders["audio"].stages.channels  # every block but the last by default
    assert model.fusion.levels["audio"] == [*channels[:-1], model.encoders["audio"].out_dim]
    assert model.feature_dims == {m: sum(v) for m, v in model.fusion.levels.items()}
    out = model(inputs())
    assert {m: f.shape[1] for m, f in out.features.items()} == model.feature_dims
    # the last slice is the encoder's own features, exactly
    with torch.no_grad():
        own = model.encoders["audio"](inputs()["audio"])
        torch.testing.assert_close(model.encode(inputs())["audio"][:, -own.shape[1]:], own)
    last = build_model({**CENTRAL, "backbone_options": {"centralnet": {"after": [-1]}}}, ["audio", "visual"], IN_CHANNELS, 6, "central")
    assert last.fusion.levels["audio"] == [channels[-1], model.encoders["audio"].out_dim]


def test_a_zeroed_modality_reaches_the_central_network_at_no_level():
    """OPM's feature dropping, ModDrop and missing-modality tests zero a modality's features:
    then the fused prediction no longer depends on that modality's input at any depth."""
    model = build_model(CENTRAL, ["audio", "visual"], IN_CHANNELS, 6, "central").eval()
    x = inputs()
    other = {**x, "visual": x["visual"] + 3.0}
    keep = {"visual": torch.zeros(4)}
    with torch.no_grad():
        torch.testing.assert_close(model(x, keep=keep).logits, model(other, keep=keep).logits)
        assert not torch.allclose(model(x).logits, model(other).logits)


def test_loss_adds_the_unimodal_cross_entropies():
    model = build_model(CENTRAL, ["audio", "visual"], IN_CHANNELS, 6, "central")
    method = build_method("concat", {}, MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=2))
    labels = torch.tensor([0, 1, 2, 3])
    out = model(inputs())
    expected = F.cross_entropy(out.logits, labels) + sum(F.cross_entropy(out.unimodal_logits[m], labels) for m in ("audio", "visual"))
    torch.testing.assert_close(method.loss(out, labels), expected)
    plain = build_model(MODEL_CFG, ["audio", "visual"], IN_CHANNELS, 6, "concat")(inputs())
    assert plain.aux_logits is None
    torch.testing.assert_close(method.loss(plain, labels), F.cross_entropy(plain.logits, labels))


def test_combinations_it_cannot_serve_are_errors():
    with pytest.raises(ValueError, match="needs model.backbone 'centralnet'"):
        build_model(MODEL_CFG, ["audio", "visual"], IN_CHANNELS, 6, "central")
    with pytest.raises(ValueError, match="feeds the 'central' fusion head"):
        build_model(CENTRAL, ["audio", "visual"], IN_CHANNELS, 6, "concat")
    from test_methods import assert_head_objective_kept

    info = {**INFO, "classes": [str(i) for i in range(6)]}
    for name, trains in (("gmm_al", False), ("opm", True)):  # GMM-AL's own loss; OPM keeps the plain one
        assert_head_objective_kept(info, name, {**CENTRAL, "fusion": "central"}, trains)


def test_one_modality_keeps_a_central_network_of_one():
    model = build_model(CENTRAL, ["audio"], IN_CHANNELS, 6, "central")
    out = model({"audio": inputs()["audio"]})
    assert out.logits.shape == (4, 6) and set(out.aux_logits) == {"audio"}
