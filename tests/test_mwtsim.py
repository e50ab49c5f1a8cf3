"""MWTSIM (OPM/OGM Tab. 8, CREMA-D): temporal windows, metric-space embeddings, the cross-modal
triplet loss against hand-computed values, the loss reaching every parameter through the base
training loss, and OPM / OGM stepping on the model."""

import math

import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods.base import Method, MethodContext
from mmbalance.models import BACKBONES, FUSIONS, build_model
from mmbalance.models.localisation import segment_chunks
from mmbalance.models.mwtsim import cross_modal_triplet_loss, window_frame_indices, window_frames

from conftest import IN_CHANNELS, MODEL_CFG
from test_methods import assert_finite_gradients, assert_head_objective_kept, make, splits_for, train_step

W = 3  # windows per clip
D = 6  # embedding size in these tests
C = 6  # classes


def config_for(**options) -> dict:
    """MODEL_CFG (tiny CNNs; the audio encoder pools a clip to 16x20) on the mwtsim backbone and head."""
    return {**MODEL_CFG, "backbone": "mwtsim", "fusion": "mwtsim",
            "backbone_options": {"mwtsim": {"windows": W, "embed_dim": D, **options}}}


def model_for(mods=("audio", "visual"), seed: int = 0, **options):
    torch.manual_seed(seed)
    return build_model(config_for(**options), list(mods), IN_CHANNELS, C, "mwtsim")


def clips(batch: int = 4, frames: int = W, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(batch, 1, 33, 40, generator=gen),
            "visual": torch.randn(batch, frames, 3, 16, 16, generator=gen)}


def base_loss():
    return Method({}, MethodContext(modalities=["audio", "visual"], num_classes=C, epochs=1))


def test_mwtsim_is_registered_as_a_late_backbone_with_its_head():
    factory = BACKBONES.get("mwtsim")
    assert factory.fusion == "mwtsim" and "mwtsim" in FUSIONS.names()
    assert not factory.intermediate and not factory.segmented  # rows are clips; modalities meet in the head


@pytest.mark.parametrize("temporal", ["mean", "gru"])
def test_shapes_unit_embeddings_and_the_concat_split(temporal):
    model = model_for(temporal=temporal)
    x = clips()
    windows = model.backbone.window_features(model.encoders, x)
    assert {m: f.shape for m, f in windows.items()} == {"audio": (4, W, 8), "visual": (4, W, 8)}
    out = model(x)
    assert out.logits.shape == (4, C) and model.feature_dims == {"audio": D, "visual": D}
    for m, e in out.features.items():
        assert e.shape == (4, D)
        torch.testing.assert_close(e.norm(dim=1), torch.ones(4))  # clip embeddings on the unit sphere
    torch.testing.assert_close(sum(out.unimodal_logits.values()), out.logits)  # W_a e_a + W_v e_v + b
    head = model.fusion.head
    want = out.features["visual"] @ head.weight[:, D:].t() + head.bias / 2
    torch.testing.assert_close(out.unimodal_logits["visual"], want)


def test_mean_embedding_is_the_normalised_mean_of_the_unit_windows():
    model = model_for().eval()
    x = clips()
    with torch.no_grad():
        u = model.backbone.window_embeddings(model.encoders, x)
        feats = model.encode(x)
    for m in u:
        torch.testing.assert_close(u[m].norm(dim=-1), torch.ones(4, W))
        torch.testing.assert_close(feats[m], F.normalize(u[m].mean(dim=1), dim=-1))


@pytest.mark.parametrize("temporal", ["mean", "gru"])
def test_the_base_loss_adds_the_metric_loss_and_reaches_every_parameter(temporal):
    model = model_for(temporal=temporal)
    out = model(clips())
    labels = torch.tensor([0, 1, 2, 0])
    loss = base_loss().loss(out, labels)
    metric = cross_modal_triplet_loss(out.features["audio"], out.features["visual"], labels, 0.2)
    want = F.cross_entropy(out.logits, labels) + metric
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert_finite_gradients(model, f"mwtsim ({temporal})")
    assert all(p.grad.abs().sum() > 0 for p in model.backbone.project.parameters())


def test_metric_weight_scales_the_loss_and_zero_turns_it_off():
    x, labels = clips(), torch.tensor([0, 1, 2, 0])
    one, two = model_for()(x), model_for(metric_weight=2.0)(x)
    torch.testing.assert_close(two.aux_loss(labels), 2 * one.aux_loss(labels))
    assert model_for(metric_weight=0.0)(x).aux_loss is None


def test_other_models_carry_no_aux_loss_and_keep_the_plain_loss(batch):
    inputs, labels = batch
    torch.manual_seed(0)
    model = build_model(MODEL_CFG, ["audio", "visual"], IN_CHANNELS, C, "concat")
    out = model(inputs)
    assert out.aux_loss is None
    assert torch.equal(base_loss().loss(out, labels), F.cross_entropy(out.logits, labels))


def test_triplet_loss_by_hand():
    """Unit rows x̂ = (1,0), (0,1), (0,1); ŷ = (1,0), (1,0), (0,1); labels 0, 1, 1; margin 0.5.
    D_ij = ‖x̂_i − ŷ_j‖²: row 0 (0, 0, 2), rows 1 and 2 (2, 2, 0). Negatives (other class):
    (0,1), (0,2), (1,0), (2,0). x anchors: [D00−D01+.5]+ = .5, [D00−D02+.5]+ = 0,
    [D11−D10+.5]+ = .5, [D22−D20+.5]+ = 0 → mean .25. y anchors (distance ŷ_i to x̂_j = D_ji):
    [D00−D10+.5]+ = 0, [D00−D20+.5]+ = 0, [D11−D01+.5]+ = 2.5, [D22−D02+.5]+ = 0 → .625.
    Loss (.25 + .625) / 2 = .4375."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])  # not unit: normalised inside
    y = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 0.5]])
    labels = torch.tensor([0, 1, 1])
    torch.testing.assert_close(cross_modal_triplet_loss(x, y, labels, 0.5), torch.tensor(0.4375))
    # OPM drops clip 2's audio: its triplets go, (0,1) and (1,0) remain: x (.5 + .5)/2, y (0 + 2.5)/2
    dropped = x * torch.tensor([1.0, 1.0, 0.0])[:, None]
    torch.testing.assert_close(cross_modal_triplet_loss(dropped, y, labels, 0.5), torch.tensor((0.5 + 1.25) / 2))
    # one class only: no negative, no loss (and still a graph to backpropagate through)
    xg = x.clone().requires_grad_()
    none = cross_modal_triplet_loss(xg, y, torch.zeros(3, dtype=torch.long), 0.5)
    assert none.item() == 0.0
    none.backward()
    assert torch.equal(xg.grad, torch.zeros_like(x))


def test_triplet_loss_matches_a_loop_over_triplets():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 4, generator=gen), torch.randn(7, 4, generator=gen)
    labels = torch.tensor([0, 1, 2, 0, 1, 1, 2])
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)

    def hinge(a, p, n):
        return max(0.0, float((a - p).pow(2).sum() - (a - n).pow(2).sum()) + 0.3)

    pairs = [(i, j) for i in range(7) for j in range(7) if labels[i] != labels[j]]
    x_side = sum(hinge(xn[i], yn[i], yn[j]) for i, j in pairs) / len(pairs)
    y_side = sum(hinge(yn[i], xn[i], xn[j]) for i, j in pairs) / len(pairs)
    assert math.isclose(float(cross_modal_triplet_loss(x, y, labels, 0.3)), (x_side + y_side) / 2, rel_tol=1e-5)


def test_audio_windows_are_the_clips_column_blocks():
    """The clip pooled to the audio encoder's input_size (16x20), cut into 3 windows of 7 columns
    (pooled to 21 first), each read by the encoder at its own size (its pooling set to 16x7)."""
    model = model_for().eval()
    enc = model.encoders["audio"]
    assert enc.body.input_size == (16, 7) and model.backbone.clip_size == (16, 20)
    x = clips()["audio"]
    with torch.no_grad():
        got = model.backbone.window_features(model.encoders, {"audio": x, "visual": clips()["visual"]})["audio"]
        clip = F.adaptive_avg_pool2d(F.adaptive_avg_pool2d(x, (16, 20)), (16, 21))
        for w in range(W):
            torch.testing.assert_close(got[:, w], enc.body.features(clip[..., 7 * w : 7 * w + 7]).mean(dim=(2, 3)))
        # already pooled by the loader: the same windows
        again = model.backbone.window_features(model.encoders, {"audio": F.adaptive_avg_pool2d(x, (16, 20)),
                                                                "visual": clips()["visual"]})["audio"]
    torch.testing.assert_close(again, got)
    assert segment_chunks(clip, W).shape == (4 * W, 1, 16, 7)


@pytest.mark.parametrize("t, picked", [(3, [0, 1, 2]), (1, [0, 0, 0]), (2, [0, 1, 1]), (5, [0, 2, 4]), (6, [1, 3, 5])])
def test_window_frames_are_one_per_window(t, picked):
    assert window_frame_indices(t, W) == picked
    model = model_for().eval()
    enc = model.encoders["visual"]
    x = clips(frames=t)["visual"]
    with torch.no_grad():
        got = window_frames(enc, x, W)
        want = torch.stack([enc(x[:, [i]]) for i in picked], dim=1)
    torch.testing.assert_close(got, want)


def test_model_frames_selects_before_the_windows():
    torch.manual_seed(0)
    model = build_model({**config_for(), "frames": 1}, ["audio", "visual"], IN_CHANNELS, C, "mwtsim").eval()
    x = clips(frames=3)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x)["visual"], model.encode({**x, "visual": x["visual"][:, [1]]})["visual"])


def test_a_clip_depends_on_itself_only():
    model = model_for().eval()
    x = clips()
    with torch.no_grad():
        together, alone = model(x), model({m: v[1:2] for m, v in x.items()})
    torch.testing.assert_close(together.logits[1:2], alone.logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mod", ["audio", "visual"])
def test_one_modality_is_a_linear_head_without_metric_loss(mod):
    model = model_for(mods=(mod,))
    out = model({mod: clips()[mod]})
    assert out.logits.shape == (4, C) and out.aux_loss is None
    torch.testing.assert_close(out.unimodal_logits[mod], out.logits)
    base_loss().loss(out, torch.tensor([0, 1, 2, 3])).backward()
    assert_finite_gradients(model, f"mwtsim on {mod}")


def test_wrong_modalities_options_and_heads_are_refused():
    with pytest.raises(ValueError, match="backbone 'mwtsim' reads modalities 'audio'"):
        flow = {**config_for(), "encoders": {"flow": MODEL_CFG["encoders"]["visual"]}}
        build_model(flow, ["flow"], {"flow": 2}, C, "mwtsim")
    with pytest.raises(ValueError, match="temporal must be one of mean, gru"):
        model_for(temporal="lstm")
    with pytest.raises(ValueError, match="backbone 'mwtsim' feeds the 'mwtsim' fusion head"):
        build_model(config_for(), ["audio", "visual"], IN_CHANNELS, C, "concat")
    with pytest.raises(ValueError, match="fusion 'mwtsim' compares the audio and visual embeddings"):
        FUSIONS.get("mwtsim")({"audio": 4, "visual": 5}, C)
    with pytest.raises(ValueError, match="visual must be frames"):
        model_for()({"audio": clips()["audio"], "visual": torch.randn(4, 3, 16, 16)})


@pytest.mark.parametrize("name, cfg", [
    ("concat", {}),
    ("opm", {"q_from": "current", "q_base": 0.9}),  # drops from the first step
    ("ogm", {}),
    ("opm_ogm", {"q_from": "current", "q_base": 0.9}),
])
def test_opm_and_ogm_step_on_mwtsim(name, cfg, monkeypatch):
    """One step through the loop's hooks: the metric loss is in the loss, every parameter gets a
    finite gradient, OPM's dropped rows are zero features and OGM's coefficients are logged."""
    import test_methods

    monkeypatch.setattr(test_methods, "MODEL_CFG", config_for())
    method, model, mods = make(name, cfg)
    _, out, _ = train_step(name, method, model, splits_for(mods))
    assert out.aux_loss is not None
    assert_finite_gradients(model, f"{name} on mwtsim")
    if name.startswith("opm"):
        assert any(k.startswith("dropped_") for k in method.ctx.logs)
    if name.startswith("ogm") or name == "opm_ogm":
        assert {"k_audio", "k_visual"} <= set(method.ctx.logs)


@pytest.mark.parametrize("name, trains", [("gmm_al", False), ("concat", True)])
def test_a_method_that_replaces_the_base_loss_is_stopped(name, trains):
    """GMM-AL's own loss would train MWTSIM without its metric loss: the trainer stops it on the
    first step, naming the method; Concat (the base loss) trains."""
    info = {"frames_per_clip": W, "classes": [str(i) for i in range(C)],
            "modalities": {"audio": {"kind": "spectrogram", "shape": [33, 40]},
                           "visual": {"kind": "frames", "shape": [None, 16, 16, 3]}}}
    assert_head_objective_kept(info, name, config_for(), trains)
