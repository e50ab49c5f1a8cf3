"""Backbones (late, MMTM, mmFormer): registry-driven step tests for every backbone and every
method on it, the staged encoder path, MMTM and position codes against hand-computed values,
and the shape bookkeeping of frames (a clip's features depend on that clip alone)."""

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from mmbalance.methods import METHODS
from mmbalance.train.loop import Trainer
from mmbalance.models import BACKBONES, build_model
from mmbalance.models.backbones import MMTM, sincos_2d
from mmbalance.models.encoders import average_frames, build_encoder
from mmbalance.params import load_params, resolve_run

from conftest import IN_CHANNELS, MODEL_CFG
from test_methods import TRAIN, assert_finite_gradients, make, splits_for, train_step

PARAMS = load_params(Path(__file__).parents[1] / "params.yaml")
# the event-localisation backbones' rows are a clip's segments, not clips: tests/test_localisation.py
PLAIN = [n for n in BACKBONES.names() if not BACKBONES.get(n).segmented]
INTERMEDIATE = [n for n in PLAIN if BACKBONES.get(n).intermediate]
OPTIONS = {"mmtm": {"after": [-2, -1], "ratio": 4}, "mmformer": {"after": [-1], "heads": 2}}
# a backbone that only works with its own fusion head (CentralNet: the central network)
FUSION_OF = {"centralnet": "central", "mwtsim": "mwtsim", "avsd": "avsd", "panoavqa": "panoavqa"}
# a backbone that only works with its own encoders (VATT: transformer towers cut at their layers)
VATT_ENCODERS = {"audio": {"name": "vatt", "patch_size": [4, 4], "dim": 8, "depth": 2, "heads": 2, "mlp_ratio": 2.0,
                           "dropout": 0.0, "input_size": [16, 20]},
                 "visual": {"name": "vatt", "patch_size": [1, 4, 4], "dim": 8, "depth": 2, "heads": 2, "mlp_ratio": 2.0,
                            "dropout": 0.0}}
ENCODERS_OF = {"vatt": VATT_ENCODERS}


def config_for(backbone: str, **extra) -> dict:
    """MODEL_CFG on ``backbone``, with the encoders and fusion head that backbone needs."""
    return {**MODEL_CFG, "encoders": ENCODERS_OF.get(backbone, MODEL_CFG["encoders"]), "backbone": backbone,
            "backbone_options": OPTIONS, "fusion": FUSION_OF.get(backbone, "concat"), **extra}


def model_with(backbone: str, mods=("audio", "visual"), seed: int = 0):
    torch.manual_seed(seed)
    return build_model(config_for(backbone), list(mods), IN_CHANNELS, 6, FUSION_OF.get(backbone, "concat"))


def inputs(batch: int = 4, frames: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(batch, 1, 33, 40, generator=gen), "visual": torch.randn(batch, frames, 3, 16, 16, generator=gen)}


@pytest.mark.parametrize("name", PLAIN)
def test_forward_backward_reaches_every_parameter(name):
    model = model_with(name)
    out = model(inputs())
    assert out.logits.shape == (4, 6) and set(out.features) == {"audio", "visual"}
    labels = torch.tensor([0, 1, 2, 3])
    # the fused loss, plus the unimodal classifiers' a head like CentralNet's trains beside it
    (F.cross_entropy(out.logits, labels) + sum(F.cross_entropy(z, labels) for z in (out.aux_logits or {}).values())).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no gradient for {pname}"


@pytest.mark.parametrize("name", PLAIN)
def test_a_clip_depends_on_itself_only(name):
    """Rows of [B·T, …] maps are regrouped per clip: clip 0 alone gives its in-batch features."""
    model = model_with(name).eval()
    x = inputs(batch=4, frames=3)
    with torch.no_grad():
        together = model.encode(x)
        alone = model.encode({m: v[:1] for m, v in x.items()})
    for m in together:
        torch.testing.assert_close(together[m][:1], alone[m], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", PLAIN)
def test_modalities_meet_inside_the_encoders_only_for_intermediate_backbones(name):
    model = model_with(name).eval()
    x = inputs()
    changed = {**x, "visual": x["visual"] + 1.0}
    with torch.no_grad():
        before, after = model.encode(x)["audio"], model.encode(changed)["audio"]
    assert torch.equal(before, after) == (not BACKBONES.get(name).intermediate)


def test_late_backbone_is_the_encoders_alone():
    model = model_with("late")
    x = inputs()
    feats = model.encode(x)
    for m, enc in model.encoders.items():
        assert torch.equal(feats[m], enc(x[m]))
    assert not list(model.backbone.parameters())


@pytest.mark.parametrize("cfg, x", [
    ({"name": "tiny_cnn", "channels": [4, 8, 16], "input_size": [16, 20]}, torch.randn(2, 1, 33, 40)),
    ({"name": "tiny_cnn", "channels": [4, 8]}, torch.randn(2, 3, 3, 16, 16)),
    ({"name": "resnet18", "input_size": [40, 48]}, torch.randn(2, 1, 57, 60)),
    ({"name": "resnet18"}, torch.randn(2, 2, 3, 40, 40)),
])
def test_staged_path_equals_the_encoder(cfg, x):
    enc = build_encoder(cfg, x.shape[-3]).eval()
    stages = enc.stages
    assert len(stages.blocks) == len(stages.channels)
    rows, t = enc.frame_rows(x)
    maps = stages.entry(rows)
    for block, channels in zip(stages.blocks, stages.channels):
        maps = block(maps)
        assert maps.shape[1] == channels
    with torch.no_grad():
        torch.testing.assert_close(average_frames(stages.exit(maps), t), enc(x), rtol=1e-5, atol=1e-6)


def test_mmtm_matches_the_hand_computed_gates():
    torch.manual_seed(0)
    mmtm = MMTM({"a": 2, "v": 3}, ratio=2)  # hidden = int(2·5/2) = 5
    a = torch.randn(2, 2, 3, 4)  # 2 clips, one map each
    v = torch.randn(4, 3, 2, 2)  # 2 clips × 2 frames
    out = mmtm({"a": a, "v": v}, {"a": 1, "v": 2})
    s_a = a.mean(dim=(2, 3))  # [2, 2]
    s_v = v.mean(dim=(2, 3)).view(2, 2, 3).mean(dim=1)  # [2, 3]: over both frames
    z = torch.relu(torch.cat([s_a, s_v], 1) @ mmtm.squeeze.weight.t() + mmtm.squeeze.bias)
    g_a = torch.sigmoid(z @ mmtm.excite["a"].weight.t() + mmtm.excite["a"].bias)
    g_v = torch.sigmoid(z @ mmtm.excite["v"].weight.t() + mmtm.excite["v"].bias)
    torch.testing.assert_close(out["a"], a * g_a[:, :, None, None])
    # frames 0, 1 belong to clip 0 and frames 2, 3 to clip 1
    torch.testing.assert_close(out["v"], v * g_v[[0, 0, 1, 1], :, None, None])
    assert mmtm.squeeze.out_features == 5


def test_sincos_2d_hand_values():
    got = sincos_2d(1, 2, 4)  # dim/4 = 1 frequency (1.0): [sin y, cos y, sin x, cos x]
    want = torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, math.sin(1.0), math.cos(1.0)]])
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(2, 2, 6)


def test_fusion_points_count_from_the_end_and_are_checked():
    assert model_with("mmtm").backbone.after == (1, 2)  # [-2, -1] of two blocks
    cfg = {**MODEL_CFG, "backbone": "mmtm", "backbone_options": {"mmtm": {"after": [3]}}}
    with pytest.raises(ValueError, match=r"'after' entry 3 is outside the encoders' 2 blocks"):
        build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, "concat")


@pytest.mark.parametrize("name", INTERMEDIATE)
def test_one_modality_runs_its_encoder_alone(name):
    model = model_with(name, mods=("audio",))
    x = inputs()
    assert not list(model.backbone.parameters())
    assert torch.equal(model.encode(x)["audio"], model.encoders["audio"](x["audio"]))


@pytest.mark.parametrize("name", INTERMEDIATE)
def test_intermediate_backbones_refuse_encoders_without_stages(name):
    cfg = {"fusion": "concat", "backbone": name,
           "encoders": {"audio": ENCODERS_OF.get(name, MODEL_CFG["encoders"])["audio"],
                        "text": {"name": "transformer", "d_model": 8, "layers": 1, "heads": 2, "ff_dim": 8}}}
    with pytest.raises(ValueError, match="modality 'text' has"):
        build_model(cfg, ["audio", "text"], {"audio": 1, "text": 5}, 6, "concat")


@pytest.mark.parametrize("name", [n for n in INTERMEDIATE if n != "vatt"] + ["centralnet", "tsm"])
def test_convolutional_backbones_refuse_vatt_towers(name):
    """VATT towers have layers, not convolutional stages: the map backbones name them."""
    cfg = {**config_for(name), "encoders": VATT_ENCODERS}
    if name == "tsm":  # TSM runs encoders it cannot cut unchanged
        model = build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, "concat")
        x = inputs()
        torch.testing.assert_close(model.encode(x)["visual"], model.encoders["visual"](x["visual"]))
        return
    with pytest.raises(ValueError, match="modality 'audio' has VATTEncoder"):
        build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, FUSION_OF.get(name, "concat"))


def test_mmformer_needs_equal_channels():
    cfg = {"fusion": "concat", "backbone": "mmformer",
           "encoders": {"audio": {"name": "tiny_cnn", "channels": [4, 8]}, "visual": {"name": "tiny_cnn", "channels": [4, 12]}}}
    with pytest.raises(ValueError, match="needs equal channel counts"):
        build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, "concat")


def test_backbone_variants_resolve_from_params():
    # ARL Tab. 3's runs read one frame per video, as the paper's
    for run, method, backbone, frames in [("concat__mmtm", "concat", "mmtm", 1), ("arl__mmformer", "arl", "mmformer", 1),
                                          ("arl", "arl", "late", None)]:
        got_method, cfg, model_cfg = resolve_run(PARAMS, run)
        assert (got_method, model_cfg["backbone"], model_cfg["frames"]) == (method, backbone, frames)
        assert "backbone" not in cfg and "frames" not in cfg
    # every registered backbone but late has its options in params (their defaults written out),
    # except CentralNet's and VATT's, whose defaults (every block but the last; every layer)
    # follow the encoders' depth, and MWTSIM's, AVSD's and Pano-AVQA's, whose defaults are their
    # mini sizes (their runs pick their encoders by encoder set; tests/test_mwtsim.py,
    # tests/test_avqa_models.py)
    # (the segmented backbones' options, if params has them, are checked in test_localisation.py)
    segmented = set(BACKBONES.names()) - set(PLAIN)
    assert set(PARAMS["model"]["backbone_options"]) - segmented == set(PLAIN) - {"late", "centralnet", "vatt", "mwtsim", "avsd", "panoavqa"}


@pytest.mark.parametrize("k, t, picked", [(1, 3, [1]), (1, 4, [2]), (2, 4, [1, 3]), (3, 3, [0, 1, 2]), (4, 3, [0, 1, 2])])
def test_model_frames_picks_evenly_spaced_frames(k, t, picked):
    x = torch.arange(2 * t, dtype=torch.float32).view(2, t, 1, 1, 1).expand(2, t, 3, 4, 4)
    enc = build_encoder({"name": "tiny_cnn", "channels": [4]}, 3)
    enc.frames = k
    assert torch.equal(enc.select(x), x[:, picked])
    spectrogram = torch.randn(2, 1, 8, 8)
    assert enc.select(spectrogram) is spectrogram


@pytest.mark.parametrize("name", PLAIN)
def test_model_frames_feeds_the_chosen_frames_to_every_backbone(name):
    torch.manual_seed(0)
    cfg = config_for(name, frames=1)
    model = build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, FUSION_OF.get(name, "concat")).eval()
    x = inputs(frames=3)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x)["visual"], model.encode({**x, "visual": x["visual"][:, [1]]})["visual"])
    with pytest.raises(ValueError, match="model.frames must be a positive number"):
        build_model({**cfg, "frames": 0}, ["audio", "visual"], IN_CHANNELS, 6, FUSION_OF.get(name, "concat"))


@pytest.mark.parametrize("backbone", INTERMEDIATE + list(FUSION_OF))
@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_steps_on_every_intermediate_backbone(name, backbone, monkeypatch):
    """One training step of each method on MMTM, mmFormer and CentralNet: finite loss, every
    parameter a finite gradient (or, for a method that needs separate encoders or its own loss,
    a clear error)."""
    import test_methods

    cfg = config_for(backbone)
    monkeypatch.setattr(test_methods, "MODEL_CFG", cfg)
    method, model, mods = make(name)
    if name in ("mla", "umt") and len(mods) > 1:  # they call the encoders on their own
        with pytest.raises(ValueError, match="needs model.backbone 'late'"):
            train_step(name, method, model, splits_for(mods))
        return
    _, out, _ = train_step(name, method, model, splits_for(mods))
    if getattr(model.fusion, "trains_unimodal_heads", False) and not getattr(method, "aux_in_loss", False):
        # CentralNet's unimodal classifiers are trained by the base loss, which this method replaces
        # or whose output it rebuilds: the trainer stops on the first step
        with pytest.raises(ValueError, match="does not train the fusion head's own objective"):
            Trainer(model, method, splits_for(mods), TRAIN, seed=0, name=name).train_epoch()
        return
    assert_finite_gradients(model, f"{name} on {backbone}")
