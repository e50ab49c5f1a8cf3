"""The Swin encoder (ARL Tab. 4) and encoder sets: registration, CPU training steps on spectrogram,
RGB and flow inputs, local torchvision-format weights, the runs that pick the set, and the
intermediate-fusion backbones refusing it."""

from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.models import ENCODERS, build_model
from mmbalance.models.encoders import build_encoder
from mmbalance.models.swin import swin
from mmbalance.params import load_params, resolve_run
from mmbalance.profiles import deep_merge
from mmbalance.train.run import for_dataset

from conftest import IN_CHANNELS
from test_methods import assert_finite_gradients, splits_for, train_step

ROOT = Path(__file__).parents[1]
PARAMS = load_params(ROOT / "params.yaml")
MINI_SET = PARAMS["encoder_sets"]["swin"]
# a smaller Swin than the mini set's, for the weight files the tests write
SMALL = {"patch_size": 4, "embed_dim": 8, "depths": [2, 2], "num_heads": [2, 2], "window_size": 4, "stochastic_depth_prob": 0.1}


def torchvision_swin(**cfg) -> torchvision.models.SwinTransformer:
    """torchvision's own SwinTransformer with ``SMALL``'s settings (a 1000-class head, as a file
    from torchvision carries)."""
    torch.manual_seed(1)
    return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=cfg.get("embed_dim", 8), depths=[2, 2],
                                              num_heads=[2, 2], window_size=[4, 4], stochastic_depth_prob=0.1)


def test_swin_is_registered_on_import():
    assert "swin" in ENCODERS.names()


@pytest.mark.parametrize("kind, x", [
    ("spectrogram", torch.randn(3, 1, 257, 299)),   # pooled to the set's input_size [64, 75] first
    ("frames", torch.randn(3, 2, 3, 32, 32)),        # [B, T, 3, H, W]: frames encoded one by one, averaged
    ("frames", torch.randn(3, 2, 2, 32, 32)),        # optical flow: a 2-channel patch embedding
])
def test_mini_swin_steps_and_every_parameter_gets_a_gradient(kind, x):
    torch.manual_seed(0)
    enc = build_encoder(MINI_SET[kind], x.shape[-3]).train()
    feats = enc(x)
    assert feats.shape == (3, enc.out_dim) and enc.out_dim == 32  # embed_dim 16 · 2 after two stages
    loss = F.cross_entropy(torch.nn.Linear(enc.out_dim, 4)(feats), torch.tensor([0, 1, 2]))
    assert torch.isfinite(loss)
    loss.backward()
    assert_finite_gradients(enc, f"swin on {kind} {tuple(x.shape)}")


@pytest.mark.parametrize("run", ["concat__swin", "arl__swin"])
def test_swin_runs_take_a_training_step(run):
    """ARL Tab. 4's runs as params.yaml resolves them (Swin encoders, gated fusion), one step
    through the loop's hooks on the tiny splits: finite loss, every parameter a finite gradient."""
    method_name, cfg, model_cfg = resolve_run(PARAMS, run)
    assert model_cfg["fusion"] == "gated"
    method = build_method(method_name, cfg, MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=2))
    torch.manual_seed(0)
    model = build_model(model_cfg, ["audio", "visual"], IN_CHANNELS, 6, "gated", {"audio": "spectrogram", "visual": "frames"})
    model.method_modules.update(method.modules(model.feature_dims, 6))
    method.bind(model)
    assert all(type(enc.body[-1] if m == "audio" else enc.body).__name__ == "SwinTransformer" for m, enc in model.encoders.items())
    train_step(run, method, model, splits_for(["audio", "visual"]))
    assert_finite_gradients(model, run)


@pytest.mark.parametrize("backbone", ["mmtm", "mmformer"])
def test_intermediate_backbones_refuse_swin(backbone):
    cfg = {"fusion": "concat", "backbone": backbone, "encoders": {"audio": {"name": "swin", **SMALL}, "visual": {"name": "swin", **SMALL}}}
    with pytest.raises(ValueError, match=f"backbone '{backbone}' needs convolutional encoders.*modality 'audio' has SwinTransformer"):
        build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, "concat")


def test_a_run_picks_its_encoder_set():
    """``encoders: swin`` swaps model.encoders for encoder_sets.swin (same key position); the
    resolved model of a run without ``encoders`` is the ``model`` block itself."""
    method, cfg, model = resolve_run(PARAMS, "arl__swin")
    _, arl_cfg, arl_model = resolve_run(PARAMS, "arl")
    assert method == "arl" and cfg == arl_cfg and "encoders" not in cfg
    assert model["encoders"] == MINI_SET and list(model) == list(arl_model)
    assert "encoder_sets" not in model and arl_model == PARAMS["model"]


def test_an_unknown_encoder_set_names_the_run_and_the_choices():
    params = {"methods": {"concat__x": {"method": "concat", "encoders": "nope"}},
              "model": {"encoders": {"frames": {"name": "tiny_cnn"}}}, "encoder_sets": {"swin": {}, "big": {}}}
    with pytest.raises(ValueError, match=r"methods\.concat__x\.encoders: no encoder set 'nope'.*choices: big, swin"):
        resolve_run(params, "concat__x")


def test_per_dataset_encoder_overrides_stay_with_the_default_set():
    """The paper profile's UCF-101 ResNet-18 frames override does not replace a Swin run's encoders;
    the Swin runs get Swin-B at full input size there."""
    paper = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load((ROOT / "profiles/paper.yaml").read_text()))
    _, _, model = resolve_run(paper, "concat__swin")
    for ds in ("cremad", "ucf101"):
        enc = for_dataset(model, ds)["encoders"]
        assert enc["frames"]["name"] == "swin" and enc["frames"]["embed_dim"] == 128, ds
        assert enc["spectrogram"]["depths"] == [2, 2, 18, 2] and enc["spectrogram"]["input_size"] is None, ds
    assert for_dataset(resolve_run(paper, "concat")[2], "ucf101")["encoders"]["frames"]["name"] == "resnet18"


def test_missing_or_foreign_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        swin(1, **SMALL, pretrained=str(tmp_path / "nothere.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        swin(1, **SMALL, pretrained=str(tmp_path / "junk.pth"))
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="resnet.pth: not a torchvision SwinTransformer state dict"):
        swin(1, **SMALL, pretrained=str(tmp_path / "resnet.pth"))
    torch.save(torchvision_swin(embed_dim=16).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(ValueError, match="wide.pth: does not fit this swin encoder"):
        swin(1, **SMALL, pretrained=str(tmp_path / "wide.pth"))


def test_torchvision_weights_load_and_adapt_the_stem(tmp_path):
    """A torchvision-format state dict (head included) loads into a 3-channel encoder unchanged and
    into a 1-channel one with the mean of the RGB patch kernels."""
    ref = torchvision_swin().eval()
    path = tmp_path / "swin.pth"
    torch.save(ref.state_dict(), path)
    rgb, mono = swin(3, **SMALL, pretrained=str(path)).eval(), swin(1, **SMALL, pretrained=str(path)).eval()
    ref.head = torch.nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rgb(x), ref(x))
    stem, ref_stem = mono.body.features[0][0], ref.features[0][0]
    assert stem.in_channels == 1
    torch.testing.assert_close(stem.weight, ref_stem.weight.mean(dim=1, keepdim=True))
    torch.testing.assert_close(stem.bias, ref_stem.bias)
    torch.testing.assert_close(mono.body.features[3][1].mlp[0].weight, ref.features[3][1].mlp[0].weight)
    with torch.no_grad():  # the mean kernel on one channel = the RGB kernels on a third of it in each
        grey = torch.randn(2, 1, 32, 32)
        torch.testing.assert_close(mono(grey), ref((grey / 3).expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_a_run_train_block_replaces_train_settings():
    """``methods.<run>.train`` values replace the shared ``train`` settings after any
    ``train_scale`` factors; the Swin runs train with AdamW; an unknown key names the run."""
    from mmbalance.params import scale_train

    shared = {"optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-4, "batch_size": 64}
    out = scale_train(PARAMS, "arl__swin", shared)
    assert out == {"optimizer": "adamw", "lr": 0.001, "weight_decay": 0.05, "batch_size": 64}
    assert "train" not in resolve_run(PARAMS, "arl__swin")[1]
    both = {"methods": {"x": {"train_scale": {"lr": 0.1, "batch_size": 2}, "train": {"optimizer": "adam"}}}}
    assert scale_train(both, "x", shared) == {**shared, "optimizer": "adam", "lr": 0.001, "batch_size": 128}
    with pytest.raises(ValueError, match=r"methods\.x\.train\.lr_max: no such train setting"):
        scale_train({"methods": {"x": {"train": {"lr_max": 1}}}}, "x", shared)
