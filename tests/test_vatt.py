"""VATT (OPM/OGM Tab. 3): the tower's tokens and positions, the cross-modal attention against
hand-computed values, where the exchanges sit, the errors, and the runs in params."""

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.models import build_encoder, build_model
from mmbalance.models.vatt import CrossModalAttention
from mmbalance.params import load_params, resolve_run
from mmbalance.profiles import deep_merge

from conftest import IN_CHANNELS
from test_backbones import VATT_ENCODERS, config_for, inputs
from test_methods import assert_finite_gradients, splits_for, train_step

ROOT = Path(__file__).parents[1]
PARAMS = load_params(ROOT / "params.yaml")


def tower(kind: str, **overrides):
    torch.manual_seed(0)
    cfg = {**VATT_ENCODERS["audio" if kind == "spectrogram" else "visual"], **overrides}
    return build_encoder(cfg, 1 if kind == "spectrogram" else 3).eval()


def test_tokens_are_agg_then_patches():
    spec, clip = inputs(batch=2, frames=3)["audio"], inputs(batch=2, frames=3)["visual"]
    # 33×40 pooled to 16×20, 4×4 patches: 4·5 = 20; 3 frames of 16², 1×4×4 tubelets: 3·4·4 = 48
    assert tower("spectrogram").tokens(spec).shape == (2, 1 + 20, 8)
    assert tower("frames").tokens(clip).shape == (2, 1 + 48, 8)
    assert tower("frames", patch_size=[3, 4, 4]).tokens(clip).shape == (2, 1 + 16, 8)


def test_positions_are_summed_per_axis_in_t_h_w_order():
    enc = tower("frames")
    with torch.no_grad():
        enc.project.weight.zero_()
        enc.project.bias.zero_()
        enc.agg.fill_(7.0)
    tok = enc.tokens(torch.randn(1, 2, 3, 8, 12))  # grid 2 × 2 × 3
    e_t, e_h, e_w = (p.detach() for p in enc.positions)
    assert torch.equal(tok[0, 0], torch.full((8,), 7.0))
    for t in range(2):
        for h in range(2):
            for w in range(3):
                torch.testing.assert_close(tok[0, 1 + t * 6 + h * 3 + w], e_t[t] + e_h[h] + e_w[w])


def test_staged_path_equals_the_tower():
    x = inputs(batch=2, frames=3)["visual"]
    enc = tower("frames")
    stages = enc.token_stages
    seq = stages.entry(x)
    for layer in stages.blocks:
        seq = layer(seq)
    with torch.no_grad():
        torch.testing.assert_close(stages.exit(seq), enc(x))
    assert stages.width == enc.out_dim == 8 and len(stages.blocks) == 2


def test_cross_modal_attention_matches_hand_computation():
    torch.manual_seed(0)
    cross = CrossModalAttention(["a", "v"], dim=4, heads=1, dropout=0.0).eval()
    a, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    out = cross({"a": a, "v": v})

    def attend(m, x, others):
        mha = cross.attend[m]
        wq, wk, wv = mha.in_proj_weight.chunk(3)
        bq, bk, bv = mha.in_proj_bias.chunk(3)
        q = F.layer_norm(x, (4,), cross.norm_q[m].weight, cross.norm_q[m].bias) @ wq.T + bq  # [B, N, 4]
        kv = F.layer_norm(others, (4,), cross.norm_kv[m].weight, cross.norm_kv[m].bias)
        k, val = kv @ wk.T + bk, kv @ wv.T + bv
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(4), dim=-1)  # [B, N, N_other]
        return x + (weights @ val) @ mha.out_proj.weight.T + mha.out_proj.bias

    with torch.no_grad():
        torch.testing.assert_close(out["a"], attend("a", a, v))  # audio queries, visual keys and values
        torch.testing.assert_close(out["v"], attend("v", v, a))


def test_three_modalities_attend_to_both_others():
    torch.manual_seed(0)
    cross = CrossModalAttention(["a", "b", "c"], dim=4, heads=2, dropout=0.0).eval()
    x = {m: torch.randn(1, 2, 4) for m in "abc"}
    with torch.no_grad():
        base = cross(x)["a"]
        assert not torch.equal(base, cross({**x, "b": x["b"] + 1})["a"])
        assert not torch.equal(base, cross({**x, "c": x["c"] + 1})["a"])
        torch.testing.assert_close(cross({**x, "a": x["a"]})["b"], cross(x)["b"])


def test_exchanges_sit_after_the_listed_layers():
    every = build_model(config_for("vatt"), ["audio", "visual"], IN_CHANNELS, 6, "concat")
    assert every.backbone.after == (1, 2) and set(every.backbone.cross) == {"1", "2"}
    last = build_model({**config_for("vatt"), "backbone_options": {"vatt": {"after": [-1]}}}, ["audio", "visual"],
                       IN_CHANNELS, 6, "concat")
    assert last.backbone.after == (2,)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"patch_size must be \[h, w\]"):
        tower("frames", patch_size=[4])
    with pytest.raises(ValueError, match=r"cuts a clip \[B, T, C, H, W\]; got input of shape \(2, 1, 33, 40\)"):
        tower("frames")(torch.randn(2, 1, 33, 40))
    with pytest.raises(ValueError, match="exceeds max_positions 3"):
        tower("frames", max_positions=3)(torch.randn(1, 1, 3, 16, 16))
    with pytest.raises(ValueError, match="needs vatt encoders .* modality 'audio' has FrameAveraging"):
        build_model({**config_for("late"), "backbone": "vatt"}, ["audio", "visual"], IN_CHANNELS, 6, "concat")
    wide = {**VATT_ENCODERS, "visual": {**VATT_ENCODERS["visual"], "dim": 12, "heads": 2}}
    with pytest.raises(ValueError, match="needs equal depths and widths"):
        build_model({**config_for("vatt"), "encoders": wide}, ["audio", "visual"], IN_CHANNELS, 6, "concat")


def test_runs_resolve_to_vatt_towers_and_backbone(full_params):
    for run, method in [("concat__vatt", "concat"), ("opm__vatt", "opm"), ("ogm__vatt", "ogm")]:
        got, cfg, model_cfg = resolve_run(PARAMS, run)
        assert (got, model_cfg["backbone"]) == (method, "vatt")
        assert {b["name"] for k, b in model_cfg["encoders"].items() if k in ("spectrogram", "frames")} == {"vatt"}
    for ds in ("kinetics_sounds", "ucf101"):
        assert {"concat__vatt", "opm__vatt", "ogm__vatt"} <= set(full_params["benchmark"][ds])


@pytest.mark.parametrize("run", ["concat__vatt", "opm__vatt", "ogm__vatt"])
def test_vatt_runs_take_a_training_step(run):
    """OPM/OGM Tab. 3's VATT runs as params.yaml resolves them, one step through the loop's hooks
    on the tiny splits: finite loss, every parameter a finite gradient."""
    method_name, cfg, model_cfg = resolve_run(PARAMS, run)
    method = build_method(method_name, cfg, MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=2))
    torch.manual_seed(0)
    model = build_model(model_cfg, ["audio", "visual"], IN_CHANNELS, 6, "concat", {"audio": "spectrogram", "visual": "frames"})
    model.method_modules.update(method.modules(model.feature_dims, 6))
    method.bind(model)
    assert type(model.backbone).__name__ == "VATTBackbone"
    train_step(run, method, model, splits_for(["audio", "visual"]))
    assert_finite_gradients(model, run)


def test_paper_profile_vatt_base_on_full_size_inputs():
    """The paper profile's VATT-Base towers (d 768, 12 layers) with 12-head cross-attention read a
    full 257×1004 spectrogram (16×62 patches) and 224² frames (14×14 per frame)."""
    paper = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load((ROOT / "profiles/paper.yaml").read_text()))
    _, _, model_cfg = resolve_run(paper, "concat__vatt")
    model = build_model(model_cfg, ["audio", "visual"], IN_CHANNELS, 6, "concat", {"audio": "spectrogram", "visual": "frames"}).eval()
    assert len(model.encoders["audio"].layers) == 12 and model.backbone.after == tuple(range(1, 13))
    assert model.backbone.cross["1"].attend["audio"].num_heads == 12
    x = {"audio": torch.randn(1, 1, 257, 1004), "visual": torch.randn(1, 1, 3, 224, 224)}
    assert model.encoders["audio"].tokens(x["audio"]).shape == (1, 1 + 16 * 62, 768)
    with torch.no_grad():
        feats = model.encode(x)
    assert all(f.shape == (1, 768) for f in feats.values())
