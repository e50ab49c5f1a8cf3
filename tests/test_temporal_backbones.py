"""TSN and TSM video backbones (TPAMI 2024 Tab. 9): TSM's shift and TSN's segment sampling
against hand-built values, their equality with ``late`` where they must not change anything, and
training steps through ``build_model`` (both stay late fusion: modalities meet in the head only)."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.models import build_model
from mmbalance.models.backbones import (LateBackbone, TSMBackbone, TSNBackbone, build_backbone, sample_segments,
                                        segment_indices, temporal_shift)
from mmbalance.models.encoders import build_encoder
from mmbalance.models.output import SequenceBatch

from conftest import IN_CHANNELS, MODEL_CFG
from test_methods import assert_finite_gradients, make, splits_for, train_step

TEMPORAL = ["tsn", "tsm"]
TINY = {"name": "tiny_cnn", "channels": [4, 8]}


def encoders(cfg: dict = TINY, in_channels: int = 3, seed: int = 0) -> nn.ModuleDict:
    torch.manual_seed(seed)
    return nn.ModuleDict({"visual": build_encoder(cfg, in_channels)})


def clips(batch: int = 2, frames: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def late(encs: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
    return LateBackbone(encs)(encs, {"visual": x})["visual"]


# --- temporal_shift -------------------------------------------------------------------------------

def test_temporal_shift_matches_the_hand_built_maps():
    # 2 clips × 3 frames × 8 channels, 1×1 maps; value 100·clip + 10·frame + channel (all non-zero)
    x = torch.tensor([[[100 * b + 10 * t + c + 1.0 for c in range(8)] for t in range(3)] for b in range(2)])  # [2, 3, 8]
    out = temporal_shift(x.reshape(6, 8, 1, 1), t=3, shift_div=8).reshape(2, 3, 8)  # fold 1
    want = x.clone()
    want[:, :, 0] = torch.stack([x[:, 1, 0], x[:, 2, 0], torch.zeros(2)], dim=1)  # channel 0 from t+1, 0 at the end
    want[:, :, 1] = torch.stack([torch.zeros(2), x[:, 0, 1], x[:, 1, 1]], dim=1)  # channel 1 from t−1, 0 at the start
    torch.testing.assert_close(out, want)
    assert out[0, 0, 0] == 11 and out[1, 2, 1] == 100 + 10 + 1 + 1  # never across clips


def test_temporal_shift_of_one_frame_zeroes_the_shifted_channels():
    x = torch.randn(4, 16, 2, 2)  # 4 clips of 1 frame, fold = 16 // 8 = 2
    out = temporal_shift(x, t=1, shift_div=8)
    assert not out[:, :4].any()  # the authors' zero padding on both sides
    torch.testing.assert_close(out[:, 4:], x[:, 4:])
    torch.testing.assert_close(temporal_shift(x, t=1, shift_div=32), x)  # fold 0: nothing moves
    with pytest.raises(ValueError, match="not clips of 3 frames"):
        temporal_shift(x, t=3, shift_div=8)


# --- TSN sampling ---------------------------------------------------------------------------------

@pytest.mark.parametrize("t, k, want", [
    (10, 3, [1, 4, 7]),  # segments [0, 3), [3, 6), [6, 10): ⌊(s + e − 1) / 2⌋
    (3, 3, [0, 1, 2]),
    (4, 3, [0, 1, 2]),  # [0, 1), [1, 2), [2, 4)
    (8, 2, [1, 5]),  # even segments: the earlier middle frame
    (2, 3, [0, 1]),  # T ≤ K: every frame
])
def test_eval_reads_each_segments_middle_frame(t, k, want):
    assert segment_indices(t, k, batch=2, training=False).tolist() == [want, want]


def test_training_draws_stay_inside_their_segments_and_cover_them():
    gen = torch.Generator().manual_seed(0)
    idx = segment_indices(10, 3, batch=3000, training=True, generator=gen)  # [3000, 3]
    for i, frames in enumerate([{0, 1, 2}, {3, 4, 5}, {6, 7, 8, 9}]):
        assert set(idx[:, i].tolist()) == frames
    assert len({tuple(row) for row in idx[:50].tolist()}) > 1  # one draw per clip, not per batch


def test_a_short_clip_keeps_every_frame():
    x = clips(frames=2)
    assert sample_segments(x, 3, training=True) is x
    assert segment_indices(3, 3, batch=1, training=True).tolist() == [[0, 1, 2]]


def test_sample_segments_gathers_each_clips_own_frames():
    x = torch.arange(2 * 10, dtype=torch.float32).view(2, 10, 1, 1, 1)  # value = 10·clip + frame
    torch.manual_seed(0)
    got = sample_segments(x, 3, training=True).flatten(1)  # [2, 3]
    frame = got - torch.tensor([[0.0], [10.0]])
    assert ((frame >= torch.tensor([0, 3, 6])) & (frame < torch.tensor([3, 6, 10]))).all()
    assert sample_segments(x, 3, training=False).flatten(1).tolist() == [[1, 4, 7], [11, 14, 17]]


# --- TSN backbone ---------------------------------------------------------------------------------

def test_tsn_with_one_frame_per_segment_is_late():
    encs = encoders().eval()
    x = clips(frames=3)
    with torch.no_grad():
        torch.testing.assert_close(TSNBackbone(encs, segments=3).eval()(encs, {"visual": x})["visual"], late(encs, x))


def test_tsn_averages_the_middle_frames_in_eval():
    encs = encoders().eval()
    x = clips(frames=10)
    with torch.no_grad():
        got = TSNBackbone(encs, segments=3).eval()(encs, {"visual": x})["visual"]
        torch.testing.assert_close(got, late(encs, x[:, [1, 4, 7]]))


def test_tsn_reads_the_frames_model_frames_selects():
    encs = encoders().eval()
    encs["visual"].frames = 4  # select: frames ⌊(2i+1)·12/8⌋ = 1, 4, 7, 10 of 12
    x = clips(frames=12)
    with torch.no_grad():
        got = TSNBackbone(encs, segments=2).eval()(encs, {"visual": x})["visual"]  # segments [0, 2), [2, 4): 0, 2
        torch.testing.assert_close(got, late(encs, x[:, [1, 7]]))


# --- TSM backbone ---------------------------------------------------------------------------------

def test_tsm_residual_on_resnet18_runs_and_differs_from_late():
    encs = encoders({"name": "resnet18"}).eval()
    x = clips(frames=2, size=32)
    with torch.no_grad():
        residual = TSMBackbone(encs).eval()(encs, {"visual": x})["visual"]
        inplace = TSMBackbone(encs, place="inplace").eval()(encs, {"visual": x})["visual"]
        unshifted = TSMBackbone(encs, shift_div=10_000).eval()(encs, {"visual": x})["visual"]  # fold 0
        base = late(encs, x)
    assert residual.shape == (2, 512) and torch.isfinite(residual).all()
    assert not torch.allclose(residual, base) and not torch.allclose(residual, inplace)
    torch.testing.assert_close(unshifted, base, rtol=1e-5, atol=1e-6)  # the hand-run BasicBlocks equal the modules


class Shifted(nn.Module):
    """The authors' ``TemporalShift(net)``: shift the input, then run ``net``."""

    def __init__(self, net: nn.Module, t: int, shift_div: int) -> None:
        super().__init__()
        self.net, self.t, self.shift_div = net, t, shift_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.t, self.shift_div))


@pytest.mark.parametrize("place", ["residual", "inplace"])
def test_tsm_equals_the_authors_rewired_resnet18(place):
    """make_temporal_shift: 'blockres' wraps each BasicBlock's conv1, 'block' each BasicBlock."""
    import copy

    encs = encoders({"name": "resnet18"}).eval()
    x = clips(frames=3, size=32)
    ref = copy.deepcopy(encs["visual"])
    for name in ("layer1", "layer2", "layer3", "layer4"):
        layer = getattr(ref.body, name)
        for i, block in enumerate(layer):
            if place == "residual":
                block.conv1 = Shifted(block.conv1, 3, 8)
            else:
                layer[i] = Shifted(block, 3, 8)
    with torch.no_grad():
        got = TSMBackbone(encs, place=place).eval()(encs, {"visual": x})["visual"]
        torch.testing.assert_close(got, ref(x), rtol=1e-5, atol=1e-6)


def test_tsm_on_the_mini_cnn_shifts_in_place():
    encs = encoders().eval()
    x = clips(frames=3)
    with torch.no_grad():
        shifted = TSMBackbone(encs, shift_div=4).eval()(encs, {"visual": x})["visual"]
        still = TSMBackbone(encs, shift_div=64).eval()(encs, {"visual": x})["visual"]  # fold 0 in every block
        inplace = TSMBackbone(encs, shift_div=4, place="inplace").eval()(encs, {"visual": x})["visual"]
    assert shifted.shape == (2, 8)
    torch.testing.assert_close(still, late(encs, x))
    assert not torch.allclose(shifted, late(encs, x))
    torch.testing.assert_close(shifted, inplace)  # no residual branch: both places are the same


def test_tsm_clip_features_depend_on_that_clip_only():
    encs = encoders().eval()
    x = clips(batch=3, frames=4)
    tsm = TSMBackbone(encs, shift_div=4).eval()
    with torch.no_grad():
        torch.testing.assert_close(tsm(encs, {"visual": x})["visual"][1:2], tsm(encs, {"visual": x[1:2]})["visual"])


# --- both, through the model ----------------------------------------------------------------------

def model_with(backbone: str, options: dict | None = None, mods=("audio", "visual")):
    torch.manual_seed(0)
    cfg = {**MODEL_CFG, "backbone": backbone, "backbone_options": {backbone: options or {}}}
    return build_model(cfg, list(mods), IN_CHANNELS, 6, "concat")


def inputs(batch: int = 4, frames: int = 5) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"audio": torch.randn(batch, 1, 33, 40, generator=gen),  # spectrograms [B, 1, F, T]
            "visual": torch.randn(batch, frames, 3, 16, 16, generator=gen)}  # clips [B, T, C, H, W]


@pytest.mark.parametrize("name", TEMPORAL)
def test_build_model_trains_every_parameter(name):
    model = model_with(name).train()
    assert type(model.backbone).__name__ == f"{name.upper()}Backbone" and not model.backbone.intermediate
    out = model(inputs())
    assert out.logits.shape == (4, 6) and set(out.unimodal_logits) == {"audio", "visual"}
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no gradient for {pname}"


@pytest.mark.parametrize("name", TEMPORAL)
def test_spectrograms_run_unchanged_and_modalities_meet_only_in_the_head(name):
    model = model_with(name, {"segments": 2} if name == "tsn" else {"shift_div": 4}).eval()
    x = inputs()
    with torch.no_grad():
        feats = model.encode(x)
        changed = model.encode({**x, "visual": x["visual"] + 1.0})
        torch.testing.assert_close(feats["audio"], model.encoders["audio"](x["audio"]))
    assert torch.equal(feats["audio"], changed["audio"])
    assert not torch.allclose(feats["visual"], model.encoders["visual"](x["visual"]))  # 5 frames: sampled / shifted


@pytest.mark.parametrize("name", TEMPORAL)
def test_sequence_encoders_run_unchanged(name):
    torch.manual_seed(0)
    cfg = {"fusion": "concat", "backbone": name,
           "encoders": {"visual": TINY, "text": {"name": "transformer", "d_model": 8, "layers": 1, "heads": 2, "ff_dim": 8}}}
    model = build_model(cfg, ["visual", "text"], {"visual": 3, "text": 5}, 6, "concat").eval()
    text = SequenceBatch(torch.randn(2, 7, 5), torch.ones(2, 7, dtype=torch.bool))
    with torch.no_grad():
        feats = model.encode({"visual": clips(), "text": text})
        torch.testing.assert_close(feats["text"], model.encoders["text"](text))


@pytest.mark.parametrize("name", TEMPORAL)
def test_one_modality(name):
    encs = encoders()
    # a one-modality video model keeps its temporal backbone (only intermediate fusion falls back to late)
    backbone = build_backbone(name, encs).train()
    assert isinstance(backbone, {"tsn": TSNBackbone, "tsm": TSMBackbone}[name])
    feats = backbone(encs, {"visual": clips(frames=6)})
    assert feats["visual"].shape == (2, 8) and not list(backbone.parameters())


@pytest.mark.parametrize("name, options, match", [
    ("tsn", {"segments": 0}, "segments must be at least 1"),
    ("tsm", {"shift_div": 0}, "shift_div must be at least 1"),
    ("tsm", {"place": "block"}, "place must be one of residual, inplace"),
])
def test_bad_options_are_refused(name, options, match):
    with pytest.raises(ValueError, match=match):
        model_with(name, options)


@pytest.mark.parametrize("backbone", TEMPORAL)
@pytest.mark.parametrize("method", ["opm", "ogm"])
def test_opm_and_ogm_step_on_the_temporal_backbones(method, backbone, monkeypatch):
    """Tab. 9's combinations: one training step, finite loss, every parameter a finite gradient
    (TSN with 1 segment, so that it samples one of the tiny split's 2 stored frames)."""
    import test_methods

    options = {"tsn": {"segments": 1}, "tsm": {}}
    monkeypatch.setattr(test_methods, "MODEL_CFG", {**MODEL_CFG, "backbone": backbone, "backbone_options": options})
    m, model, mods = make(method)
    assert type(model.backbone).__name__ == f"{backbone.upper()}Backbone"
    train_step(method, m, model, splits_for(mods))
    assert_finite_gradients(model, f"{method} on {backbone}")
