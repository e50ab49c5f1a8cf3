"""The x-vector encoder (OPM/OGM Tab. 8): registration, shapes, a CPU training step, statistics
pooling by hand, the frame layers' ±7-frame receptive field, the build errors, and the
intermediate-fusion backbones refusing it."""

import math

import pytest
import torch
from torch.nn import functional as F

import mmbalance.models.xvector  # noqa: F401  (registers "xvector")
from mmbalance.models import build_model
from mmbalance.models.encoders import ENCODERS, build_encoder
from mmbalance.models.xvector import XVector, context, statistics_pooling

from conftest import IN_CHANNELS

MINI = {"name": "xvector", "widths": [8, 8, 8, 8, 24], "embed_dim": 16}


def test_xvector_is_registered_on_import():
    assert "xvector" in ENCODERS.names()


@pytest.mark.parametrize("cfg, x", [
    ({**MINI, "input_size": [16, 30]}, torch.randn(3, 1, 33, 40)),   # pooled to [16, 30] first
    ({**MINI, "freq_bins": 33}, torch.randn(3, 1, 33, 40)),           # the full 33 bins as channels
    ({**MINI, "freq_bins": 33}, torch.randn(3, 1, 33, 15)),           # the shortest input: 15 frames, one frame-level output
])
def test_output_shape(cfg, x):
    enc = build_encoder(cfg, 1).train()
    assert enc(x).shape == (3, 16) and enc.out_dim == 16


def test_default_widths_are_the_papers():
    body = build_encoder({"name": "xvector", "freq_bins": 24}, 1).body
    convs = [m for m in body.frames if isinstance(m, torch.nn.Conv1d)]
    assert [c.out_channels for c in convs] == [512, 512, 512, 512, 1500]
    assert [c.kernel_size[0] for c in convs] == [5, 3, 3, 1, 1] and [c.dilation[0] for c in convs] == [1, 2, 3, 1, 1]
    assert convs[0].in_channels == 24 and (body.segment6.in_features, body.segment6.out_features) == (3000, 512)


@pytest.mark.parametrize("cfg", [{**MINI, "input_size": [16, 30]}, {**MINI, "freq_bins": 33}])
def test_training_step_every_parameter_gets_a_nonzero_gradient(cfg):
    torch.manual_seed(0)
    enc = build_encoder(cfg, 1).train()
    head = torch.nn.Linear(enc.out_dim, 4)
    loss = F.cross_entropy(head(enc(torch.randn(6, 1, 33, 40))), torch.tensor([0, 1, 2, 3, 0, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_statistics_pooling_by_hand():
    # channel 0: frames 1, 2, 3, 6: mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5
    # channel 1: constant 5: mean 5, variance 0, floored at 1e-5 before the square root
    h = torch.tensor([[[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]]], requires_grad=True)  # [1, 2, 4]
    out = statistics_pooling(h)
    expected = torch.tensor([[3.0, 5.0, math.sqrt(3.5), math.sqrt(1e-5)]])  # [mean_0, mean_1, std_0, std_1]
    torch.testing.assert_close(out, expected)
    out.sum().backward()  # a constant channel: a finite gradient (1/4 per frame from its mean), not NaN
    assert torch.isfinite(h.grad).all()
    torch.testing.assert_close(h.grad[0, 1], torch.full((4,), 0.25))


def test_frame_layers_see_seven_frames_either_side():
    assert context() == 7  # 2·1 + 1·2 + 1·3 from kernels 5, 3, 3 with dilations 1, 2, 3
    torch.manual_seed(0)
    body = XVector(6, [8, 8, 8, 8, 12], 4).eval()  # eval: BatchNorm's running statistics, no mixing across frames
    x = torch.randn(1, 1, 6, 40)
    j = 20  # the input frame changed
    y = x.clone()
    y[..., j] += 10.0
    with torch.no_grad():
        before, after = body.frame_features(x), body.frame_features(y)  # [1, 12, 26]: output t is centred on input t + 7
    assert before.shape == (1, 12, 40 - 14)
    changed = (before - after).abs().amax(dim=1)[0] > 0  # [26]
    centres = torch.arange(before.shape[-1]) + 7
    assert torch.equal(changed, (centres - j).abs() <= 7)  # exactly the outputs within ±7 of frame j
    with torch.no_grad():
        assert not torch.equal(body(x), body(y))  # the pooled statistics (and the embedding) do change


def test_rejects_other_channel_counts():
    with pytest.raises(ValueError, match="1-channel spectrogram.*in_channels=2"):
        build_encoder({**MINI, "freq_bins": 33}, 2)


def test_needs_freq_bins_or_input_size():
    with pytest.raises(ValueError, match="set freq_bins.*or input_size"):
        build_encoder(MINI, 1)
    with pytest.raises(ValueError, match="freq_bins 33 disagrees with input_size"):
        build_encoder({**MINI, "freq_bins": 33, "input_size": [16, 30]}, 1)
    with pytest.raises(ValueError, match="5 positive frame-layer widths"):
        build_encoder({**MINI, "freq_bins": 33, "widths": [8, 8, 8]}, 1)


def test_clear_errors_on_inputs_it_cannot_read():
    enc = build_encoder({**MINI, "freq_bins": 33}, 1)
    with pytest.raises(ValueError, match="built for 33 frequency bins.*got a spectrogram with 16"):
        enc(torch.randn(2, 1, 16, 40))
    with pytest.raises(ValueError, match="span 15 frames.*of 14"):
        enc(torch.randn(2, 1, 33, 14))


@pytest.mark.parametrize("backbone", ["mmtm", "mmformer"])
def test_intermediate_backbones_refuse_xvector(backbone):
    cfg = {"fusion": "concat", "backbone": backbone,
           "encoders": {"audio": {**MINI, "input_size": [16, 20]}, "visual": {"name": "tiny_cnn", "channels": [4, 8]}}}
    with pytest.raises(ValueError, match=f"backbone '{backbone}' needs convolutional encoders.*modality 'audio' has XVector"):
        build_model(cfg, ["audio", "visual"], IN_CHANNELS, 6, "concat")
