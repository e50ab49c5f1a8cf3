"""CLIP's towers (IPRM Tab. 6): registration, CPU steps of the mini set, the text tower reading the
last real step, OpenAI's parameter names and shapes, local weights (state dict and TorchScript
archive), and the four Tab. 6 runs taking a training step on an image + text split."""

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods import MethodContext, build_method
from mmbalance.models import ENCODERS, SequenceBatch, build_model
from mmbalance.models.clip import ClipText, ClipVision, clip_text, clip_vision, load_clip_weights
from mmbalance.models.encoders import build_encoder
from mmbalance.params import load_params, resolve_run
from mmbalance.train.data import SplitData

from test_methods import assert_finite_gradients, train_step

ROOT = Path(__file__).parents[1]
PARAMS = load_params(ROOT / "params.yaml")
MINI_SET = PARAMS["encoder_sets"]["clip"]
TAB6_RUNS = ["concat__clip", "mla__clip", "lfm__clip", "iprm__clip"]
TINY = {"width": 8, "layers": 1, "heads": 2, "output_dim": 4}


def _text(b=4, length=6, dim=32, seed=0) -> SequenceBatch:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, 3, 1, 5][:b])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return SequenceBatch(torch.randn(b, length, dim, generator=gen) * mask[..., None], mask)


def test_both_towers_are_registered_on_import():
    assert {"clip_vision", "clip_text"} <= set(ENCODERS.names())


def test_mini_towers_step_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    image = build_encoder(MINI_SET["frames"], 3).train()
    text = build_encoder(MINI_SET["sequence"], 32).train()
    feats = torch.cat([image(torch.randn(4, 1, 3, 32, 32)), text(_text())], dim=1)  # [B, 32 + 32]
    assert feats.shape == (4, image.out_dim + text.out_dim) == (4, 64)
    loss = F.cross_entropy(nn.Linear(64, 2)(feats), torch.tensor([0, 1, 0, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    assert_finite_gradients(image, "clip_vision")
    assert_finite_gradients(text, "clip_text")


def test_text_tower_reads_the_last_real_step_and_ignores_padding():
    """CLIP pools the end-of-text token, the last of each caption: padding after it (garbage or
    more of it) changes nothing; the last real step does."""
    torch.manual_seed(0)
    enc = ClipText(5, context_length=10, **TINY).eval()
    batch = _text(dim=5)
    with torch.no_grad():
        ref = enc(batch)
        noisy = enc(SequenceBatch(torch.where(batch.mask[..., None], batch.x, torch.full_like(batch.x, 7.0)), batch.mask))
        longer = enc(SequenceBatch(torch.cat([batch.x, torch.randn(4, 2, 5)], 1),
                                   torch.cat([batch.mask, torch.zeros(4, 2, dtype=torch.bool)], 1)))
        alone = enc(SequenceBatch(batch.x[1:2, :3], batch.mask[1:2, :3]))
        moved = batch.x.clone()
        moved[1, 2] += 1.0  # row 1's last real step (3 steps)
        changed = enc(SequenceBatch(moved, batch.mask))
    torch.testing.assert_close(noisy, ref)
    torch.testing.assert_close(longer, ref)
    torch.testing.assert_close(alone[0], ref[1])
    assert not torch.allclose(changed[1], ref[1]) and torch.equal(changed[0], ref[0])
    with pytest.raises(ValueError, match="context_length 10"):
        enc(torch.randn(1, 11, 5))


def test_vision_tower_refuses_another_image_size():
    with pytest.raises(ValueError, match="expects 32x32 images"):
        ClipVision(3, 32, 8, **TINY)(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        ClipVision(3, 30, 8, **TINY)


def test_vit_b16_has_openai_clip_parameter_names_and_shapes():
    """The default towers are CLIP ViT-B/16's, parameter for parameter as OpenAI's checkpoint names
    them (built on the meta device: no memory)."""
    with torch.device("meta"):
        vision = clip_vision(3).body
        text = clip_text(512)
    v = {f"visual.{k}": tuple(p.shape) for k, p in vision.state_dict().items()}
    t = {k: tuple(p.shape) for k, p in text.state_dict().items()}
    assert v["visual.conv1.weight"] == (768, 3, 16, 16) and v["visual.class_embedding"] == (768,)
    assert v["visual.positional_embedding"] == (197, 768) and v["visual.proj"] == (768, 512)
    assert v["visual.transformer.resblocks.11.attn.in_proj_weight"] == (2304, 768)
    assert v["visual.transformer.resblocks.11.mlp.c_fc.weight"] == (3072, 768)
    assert {"visual.ln_pre.weight", "visual.ln_post.bias", "visual.transformer.resblocks.11.ln_2.weight"} <= set(v)
    assert "visual.transformer.resblocks.12.ln_1.weight" not in v
    assert t["positional_embedding"] == (77, 512) and t["text_projection"] == (512, 512)
    assert t["transformer.resblocks.11.attn.in_proj_weight"] == (1536, 512) and t["ln_final.weight"] == (512,)
    assert t["transformer.resblocks.11.mlp.c_proj.weight"] == (512, 2048)
    # 12 per block (attention in/out projections, two LayerNorms, two MLP layers: weight and bias
    # each); vision: conv1, class token, positions, proj, ln_pre, ln_post; text: positions,
    # ln_final, projection (OpenAI's token_embedding and logit_scale are not part of a tower)
    assert len(v) == 4 + 2 * 2 + 12 * 12 and len(t) == 2 + 2 + 12 * 12


class _ClipFile(nn.Module):
    """A small CLIP laid out as OpenAI's model: ``visual`` plus the text tower's parameters at the
    top level (and a token embedding the towers here do not use)."""

    def __init__(self) -> None:
        super().__init__()
        text = ClipText(8, context_length=10, **TINY)
        self.visual = ClipVision(3, 16, 8, **TINY)
        self.token_embedding = nn.Embedding(20, 8)
        self.positional_embedding, self.transformer = text.positional_embedding, text.transformer
        self.ln_final, self.text_projection = text.ln_final, text.text_projection
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)


@pytest.mark.parametrize("scripted", [False, True], ids=["state_dict", "torchscript"])
def test_local_clip_weights_load_into_both_towers(tmp_path, scripted):
    torch.manual_seed(3)
    src = _ClipFile().eval()
    path = tmp_path / "ViT-tiny.pt"
    if scripted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on the size check
            torch.jit.save(torch.jit.trace(src, torch.randn(1, 3, 16, 16), check_trace=False), str(path))  # OpenAI's format
    else:
        torch.save(src.state_dict(), path)
    torch.manual_seed(4)
    image = clip_vision(3, image_size=16, patch_size=8, pretrained=str(path), **TINY).eval()
    text = clip_text(8, context_length=10, pretrained=str(path), **TINY).eval()
    x, seq = torch.randn(2, 3, 16, 16), _text(b=2, dim=8)
    with torch.no_grad():
        torch.testing.assert_close(image(x), src.visual(x))
        expected = ClipText(8, context_length=10, **TINY)
        expected.load_state_dict({k: v for k, v in src.state_dict().items() if k in expected.state_dict()})
        torch.testing.assert_close(text(seq), expected.eval()(seq))
    # other text features (e.g. BERT's): a learned map into CLIP's width, CLIP's blocks loaded
    mapped = clip_text(5, context_length=10, pretrained=str(path), **TINY)
    assert isinstance(mapped.proj_in, nn.Linear)
    torch.testing.assert_close(mapped.transformer.state_dict(), expected.transformer.state_dict())


def test_missing_or_foreign_clip_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CLIP weights file at .*ViT-B-16.pt"):
        clip_vision(3, pretrained=str(tmp_path / "ViT-B-16.pt"))
    torch.save(_ClipFile().state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="tiny.pt: does not fit this CLIP tower"):
        clip_vision(3, image_size=32, patch_size=8, pretrained=str(tmp_path / "tiny.pt"), **TINY)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not CLIP weights for this tower"):
        load_clip_weights(ClipVision(3, 16, 8, **TINY), tmp_path / "other.pt", "visual.")


def _split(n: int, seed: int) -> SplitData:
    """Sarcasm-shaped clips: one 32x32 RGB image and 1..6 hashed 32-d text steps, binary labels."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 7, (n,), generator=gen)
    mask = torch.arange(6)[None, :] < lengths[:, None]
    arrays = {"image": torch.randint(0, 255, (n, 1, 32, 32, 3), generator=gen, dtype=torch.uint8),
              "text": torch.randn(n, 6, 32, generator=gen) * mask[..., None]}
    info = {"frames_per_clip": 1, "modalities": {"image": {"kind": "frames", "shape": [None, 32, 32, 3]},
                                                 "text": {"kind": "sequence", "shape": [None, 32]}}}
    return SplitData([f"t{i:03d}" for i in range(n)], torch.arange(n) % 2, arrays,
                     {"image": torch.ones(n, dtype=torch.long), "text": lengths}, info)


@pytest.mark.parametrize("run", TAB6_RUNS)
def test_tab6_runs_take_a_training_step(run, full_params):
    """IPRM Tab. 6's runs as params.yaml resolves them (CLIP towers on image + text; the full
    profile trains them on Sarcasm), one step through the loop's hooks: finite loss, every
    parameter a finite gradient."""
    assert run in full_params["benchmark"]["sarcasm"]
    method_name, cfg, model_cfg = resolve_run(PARAMS, run)
    assert model_cfg["encoders"] == MINI_SET
    mods = ["image", "text"]
    method = build_method(method_name, cfg, MethodContext(modalities=mods, num_classes=2, epochs=2))
    torch.manual_seed(0)
    model = build_model(model_cfg, mods, {"image": 3, "text": 32}, 2, model_cfg["fusion"],
                        {"image": "frames", "text": "sequence"})
    model.method_modules.update(method.modules(model.feature_dims, 2))
    method.bind(model)
    assert type(model.encoders["image"].body).__name__ == "ClipVision" and type(model.encoders["text"]).__name__ == "ClipText"
    train_step(run, method, model, {s: _split(12, i) for i, s in enumerate(("train", "val", "test"))})
    assert_finite_gradients(model, run)
