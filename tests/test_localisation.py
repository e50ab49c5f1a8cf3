"""Event-localisation models (AVGA, AVSDN, PSP; OPM/OGM Table 7): registry-driven over the
segmented backbones (rows are a clip's segments, [B·S]): shapes, gradients, clip independence,
one modality, input checks, every method stepping on them; AVGA's attention and PSP's pruning and
propagation against hand-computed values."""

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods import METHODS
from mmbalance.models import BACKBONES, FUSIONS, build_model
from mmbalance.models.localisation import (AudioGuidedAttention, positive_sample_propagation, prune_and_normalise,
                                           segment_chunks)
from mmbalance.params import load_params
from mmbalance.train.data import SplitData

from conftest import IN_CHANNELS, INFO, MODEL_CFG
from test_methods import assert_finite_gradients, make, train_step

PARAMS = load_params(Path(__file__).parents[1] / "params.yaml")
SEGMENTED = [n for n in BACKBONES.names() if BACKBONES.get(n).segmented]
S = 3  # segments per clip in these tests (AVE: 10)
C = 6  # classes, background included
OPTIONS = {"avga": {"hidden": 8, "attention": 5, "attention_hidden": 6}, "avsdn": {"hidden": 8},
           "psp": {"hidden": 8, "embed": 6, "attention": 5, "attention_hidden": 6}}


def config_for(name: str, segments: int = S) -> dict:
    """MODEL_CFG (tiny CNNs) on the localisation backbone ``name`` with its own head."""
    return {**MODEL_CFG, "backbone": name, "fusion": name,
            "backbone_options": {n: {**o, "segments": segments} for n, o in OPTIONS.items()}}


def model_for(name: str, mods=("audio", "visual"), segments: int = S, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(config_for(name, segments), list(mods), IN_CHANNELS, C, name)


def clips(batch: int = 2, frames: int = S, time: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    """A clip's spectrogram [B, 1, 33, time] (40: not a multiple of 3) and one frame per segment."""
    gen = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(batch, 1, 33, time, generator=gen),
            "visual": torch.randn(batch, frames, 3, 16, 16, generator=gen)}


def test_the_localisation_models_are_registered():
    assert set(SEGMENTED) == {"avga", "avsdn", "psp"}
    for name in SEGMENTED:
        assert BACKBONES.get(name).fusion == name and name in FUSIONS.names()
    assert BACKBONES.get("avga").intermediate and BACKBONES.get("psp").intermediate
    assert not BACKBONES.get("avsdn").intermediate  # the modalities meet in the decoder only


@pytest.mark.parametrize("name", SEGMENTED)
def test_rows_are_segments_and_every_parameter_learns(name):
    model = model_for(name)
    out = model(clips())
    dims = model.feature_dims
    assert out.logits.shape == (2 * S, C)
    assert {m: f.shape for m, f in out.features.items()} == {m: (2 * S, d) for m, d in dims.items()}
    assert {m: z.shape for m, z in out.unimodal_logits.items()} == {"audio": (2 * S, C), "visual": (2 * S, C)}
    labels = torch.arange(2 * S) % C
    F.cross_entropy(out.logits, labels).backward()
    assert_finite_gradients(model, name)


@pytest.mark.parametrize("name", SEGMENTED)
def test_a_clips_rows_depend_on_that_clip_only(name):
    model = model_for(name).eval()
    x = clips(batch=3)
    with torch.no_grad():
        together, alone = model(x), model({m: v[1:2] for m, v in x.items()})
    torch.testing.assert_close(together.logits[S : 2 * S], alone.logits, rtol=1e-4, atol=1e-5)
    for m in together.features:
        torch.testing.assert_close(together.features[m][S : 2 * S], alone.features[m], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", SEGMENTED)
@pytest.mark.parametrize("mod", ["audio", "visual"])
def test_one_modality_keeps_segment_rows(name, mod):
    """A unimodal baseline on a localisation backbone: still one row per segment (visual alone:
    no audio to guide the attention, the maps' spatial mean)."""
    model = model_for(name, mods=(mod,))
    assert model.backbone.segmented
    out = model({mod: clips()[mod]})
    assert out.logits.shape == (2 * S, C) and set(out.unimodal_logits) == {mod}
    torch.testing.assert_close(out.unimodal_logits[mod], out.logits)
    F.cross_entropy(out.logits, torch.arange(2 * S) % C).backward()
    assert_finite_gradients(model, f"{name} on {mod}")


@pytest.mark.parametrize("name", SEGMENTED)
def test_frames_must_be_one_per_segment(name):
    model = model_for(name)
    with pytest.raises(ValueError, match=rf"backbone '{name}' reads one frame per segment: visual must be \[B, 3, C, H, W\]"):
        model(clips(frames=2))


@pytest.mark.parametrize("name", SEGMENTED)
@pytest.mark.parametrize("time", [30, 40, 2])
def test_any_spectrogram_length_is_cut_into_segments(name, time):
    model = model_for(name)
    assert model(clips(time=time)).logits.shape == (2 * S, C)


def test_segment_chunks_are_the_clips_column_blocks():
    x = torch.arange(2 * 2 * 6, dtype=torch.float32).view(2, 1, 2, 6)
    rows = segment_chunks(x, 3)  # w = 2 columns each
    assert rows.shape == (6, 1, 2, 2)
    for b in range(2):
        for s in range(3):
            torch.testing.assert_close(rows[b * 3 + s], x[b, :, :, 2 * s : 2 * s + 2])
    # 7 columns into 3 segments: pooled to 3·⌈7/3⌉ = 9 columns first
    y = torch.randn(2, 1, 4, 7)
    torch.testing.assert_close(segment_chunks(y, 3)[4], F.adaptive_avg_pool2d(y, (4, 9))[1, :, :, 3:6])


@pytest.mark.parametrize("name", ["avga", "psp"])
def test_attention_backbones_need_staged_visual_encoders(name):
    cfg = {**config_for(name), "encoders": {**MODEL_CFG["encoders"], "visual": {
        "name": "vatt", "patch_size": [1, 4, 4], "dim": 8, "depth": 1, "heads": 2, "mlp_ratio": 2.0, "dropout": 0.0}}}
    with pytest.raises(ValueError, match=rf"backbone '{name}' needs convolutional encoders.*modality 'visual' has VATTEncoder"):
        build_model(cfg, ["audio", "visual"], IN_CHANNELS, C, name)


@pytest.mark.parametrize("name", SEGMENTED)
def test_other_modalities_heads_and_options_are_refused(name):
    with pytest.raises(ValueError, match=rf"backbone '{name}' localises audio-visual events"):
        build_model({**config_for(name), "encoders": {"flow": MODEL_CFG["encoders"]["visual"]}}, ["flow"], {"flow": 2}, C, name)
    with pytest.raises(ValueError, match=rf"backbone '{name}' feeds the '{name}' fusion head"):
        build_model(config_for(name), ["audio", "visual"], IN_CHANNELS, C, "concat")
    with pytest.raises(ValueError, match="segments must be at least 1"):
        build_model(config_for(name, segments=0), ["audio", "visual"], IN_CHANNELS, C, name)


@pytest.mark.parametrize("head", ["avsdn", "psp"])
def test_segment_heads_refuse_features_of_other_backbones(head):
    with pytest.raises(ValueError, match=rf"fusion '{head}' reads a clip's segments and needs model.backbone '{head}'"):
        build_model(MODEL_CFG, ["audio", "visual"], IN_CHANNELS, C, head)
    fusion = FUSIONS.get(head)({"audio": 4, "visual": 4}, C, segments=3)
    with pytest.raises(ValueError, match="5 rows are not whole clips of 3 segments"):
        fusion({"audio": torch.randn(5, 4), "visual": torch.randn(5, 4)})
    with pytest.raises(ValueError, match="fusion 'psp' .* needs equal feature sizes; got audio 4, visual 5"):
        FUSIONS.get("psp")({"audio": 4, "visual": 5}, C, segments=3)


def test_options_in_params_build():
    """Whatever params gives the localisation backbones and heads (the paper profile's sizes),
    they build on the mini encoders."""
    model_cfg = PARAMS["model"]
    for name in SEGMENTED:
        options = (model_cfg.get("backbone_options") or {}).get(name) or {}
        head = (model_cfg.get("fusion_options") or {}).get(name) or {}
        cfg = {**MODEL_CFG, "backbone": name, "backbone_options": {name: {**options, "segments": S}},
               "fusion_options": {name: head}}
        torch.manual_seed(0)
        assert build_model(cfg, ["audio", "visual"], IN_CHANNELS, C, name)(clips()).logits.shape == (2 * S, C)


def segment_split(n: int, seed: int, mods) -> SplitData:
    """``n`` clips of S segments: spectrograms [n, 1, 33, 40], one frame per segment
    [n, S, 16, 16, 3], segment labels [n, S] (the loader flattens a batch's to [B·S])."""
    gen = torch.Generator().manual_seed(seed)
    arrays = {"audio": torch.randn(n, 1, 33, 40, generator=gen),
              "visual": torch.randint(0, 255, (n, S, 16, 16, 3), generator=gen, dtype=torch.uint8)}
    labels = torch.randint(0, C, (n, S), generator=gen)
    labels[:, 0] = torch.arange(n) % C  # every class present
    info = {**INFO, "frames_per_clip": S, "segments": S}
    lengths = {"visual": torch.full((n,), S)} if "visual" in mods else {}
    return SplitData([f"c{i:03d}" for i in range(n)], labels, {m: arrays[m] for m in mods}, lengths, info)


def segment_splits(mods) -> dict[str, SplitData]:
    return {name: segment_split(12, seed, mods) for name, seed in (("train", 0), ("val", 1), ("test", 2))}


@pytest.mark.parametrize("backbone", SEGMENTED)
@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_steps_on_every_segmented_backbone(name, backbone, monkeypatch):
    """One training step of each method on AVGA, AVSDN and PSP with [B·S] segment labels: finite
    loss, every parameter a finite gradient (or, for a method that needs separate encoders, a
    clear error)."""
    import test_methods

    monkeypatch.setattr(test_methods, "MODEL_CFG", config_for(backbone))
    method, model, mods = make(name)
    splits = segment_splits(mods)
    if name in ("mla", "umt") and len(mods) > 1:  # they call the encoders on their own
        with pytest.raises(ValueError, match="needs model.backbone 'late'"):
            train_step(name, method, model, splits)
        return
    _, out, _ = train_step(name, method, model, splits)
    assert out.logits.shape == (6 * S, C)
    assert_finite_gradients(model, f"{name} on {backbone}")


def test_avga_attention_by_hand():
    """Two positions, attention size 1, width 1, every weight set: x_i = w·tanh(w_v·ReLU(u_v v_i + b_v)
    + w_a·ReLU(u_a a + b_a)), α = softmax(x), attended = Σ α_i v_i over the raw map vectors."""
    att = AudioGuidedAttention(audio_dim=1, visual_dim=2, hidden=1, size=1)
    with torch.no_grad():
        att.audio.weight.fill_(1.0), att.audio.bias.fill_(0.0)
        att.visual.weight.copy_(torch.tensor([[1.0, 0.0]])), att.visual.bias.fill_(0.0)
        att.w_v.weight.fill_(1.0), att.w_a.weight.fill_(0.5), att.w.weight.fill_(2.0)
    audio = torch.tensor([[2.0]])
    maps = torch.tensor([[[[0.0, 1.0]], [[3.0, 4.0]]]])  # [1, C=2, h=1, w=2]: v_1 = (0, 3), v_2 = (1, 4)
    x1, x2 = 2 * math.tanh(0.0 + 0.5 * 2.0), 2 * math.tanh(1.0 + 0.5 * 2.0)
    a1 = math.exp(x1) / (math.exp(x1) + math.exp(x2))
    alpha = att.weights(audio, maps)
    torch.testing.assert_close(alpha, torch.tensor([[a1, 1 - a1]]))
    torch.testing.assert_close(att(audio, maps), torch.tensor([[1 - a1, 3 * a1 + 4 * (1 - a1)]]))


def test_psp_pruning_by_hand():
    sim = torch.tensor([[[0.05, 0.45, 0.5], [0.0, 0.0, 0.0], [1.0, 1.0, 2.0]]])
    got = prune_and_normalise(sim, 0.099)
    # row 1: 0.05 ≤ 0.099 pruned, then (0.45, 0.5) / 0.95; row 2: nothing to keep; row 3: (¼, ¼, ½) kept
    want = torch.tensor([[[0.0, 0.45 / 0.95, 0.5 / 0.95], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]]])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert prune_and_normalise(sim, 0.3)[0, 2].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-6)


def test_psp_propagation_by_hand():
    """S = 2, width 1: β = ReLU(v2 a1^T / 1); visual rows gather a2, audio rows gather v1."""
    a = torch.tensor([[[1.0], [2.0]]])
    v = torch.tensor([[[10.0], [20.0]]])
    a1 = torch.tensor([[[1.0], [3.0]]])  # audio segments' keys
    a2 = torch.tensor([[[100.0], [200.0]]])  # what audio sends to the visual segments
    v1 = torch.tensor([[[1000.0], [2000.0]]])  # what visual sends to the audio segments
    v2 = torch.tensor([[[1.0], [0.0]]])  # visual segment 2 matches nothing
    a_hat, v_hat = positive_sample_propagation(a, v, a1, a2, v1, v2, threshold=0.099)
    # β = [[1, 3], [0, 0]] (rows: visual segments). Visual row 1: (¼, ¾), both kept → 10 + 25 + 150;
    # visual row 2: nothing to gather. Audio rows (β^T = [[1, 0], [3, 0]]): (1, 0) → v1 of visual 1
    torch.testing.assert_close(v_hat, torch.tensor([[[10.0 + 0.25 * 100 + 0.75 * 200], [20.0]]]))
    torch.testing.assert_close(a_hat, torch.tensor([[[1.0 + 1000.0], [2.0 + 1000.0]]]))
    # threshold 0.3: ¼ is pruned, visual segment 1 gathers audio segment 2 alone
    _, v_hat = positive_sample_propagation(a, v, a1, a2, v1, v2, threshold=0.3)
    torch.testing.assert_close(v_hat[0, 0], torch.tensor([10.0 + 200.0]))


def test_psp_head_fuses_the_propagated_features_by_hand():
    """The head with dropout off: LN(ReLU(fc_m(x̂_m))) per modality, averaged, L2(ReLU(L1 ·))."""
    torch.manual_seed(0)
    head = FUSIONS.get("psp")({"audio": 4, "visual": 4}, C, segments=2, threshold=0.099).eval()
    feats = {m: torch.randn(4, 4) for m in ("audio", "visual")}
    a, v = feats["audio"].view(2, 2, 4), feats["visual"].view(2, 2, 4)
    br = {k: torch.relu(x @ head.branches[k].weight.t()) for k, x in
          (("audio1", a), ("audio2", a), ("visual1", v), ("visual2", v))}
    a_hat, v_hat = positive_sample_propagation(a, v, br["audio1"], br["audio2"], br["visual1"], br["visual2"], 0.099)
    psp = [head.norm(torch.relu(x @ head.fc[m].weight.t())) for m, x in (("audio", a_hat), ("visual", v_hat))]
    want = torch.relu(((psp[0] + psp[1]) / 2) @ head.l1.weight.t()) @ head.l2.weight.t()
    fused, uni = head(feats)
    torch.testing.assert_close(fused, want.flatten(0, 1))
    torch.testing.assert_close(uni["audio"], head.fuse({"audio": feats["audio"], "visual": torch.zeros(4, 4)}))


def test_avga_head_is_att_nets_prediction():
    torch.manual_seed(0)
    head = FUSIONS.get("avga")({"audio": 3, "visual": 2}, C, width=5)
    a, v = torch.randn(4, 3), torch.randn(4, 2)
    want = torch.relu(torch.relu(torch.cat([a, v], 1)) @ head.l1.weight.t() + head.l1.bias) @ head.l2.weight.t() + head.l2.bias
    torch.testing.assert_close(head({"audio": a, "visual": v})[0], want)
