"""Fixed encoder-gradient scaling (ARL Fig. 1 "a*5"): gradients by hand against Concat's, ARL's
Eq. 4 / Eq. 17 ratios by hand, and the run that scales nothing trains exactly as Concat."""

from __future__ import annotations

import math

import pytest
import torch

from mmbalance.methods import MethodContext, build_method

from test_methods import make, splits_for, train_step


def _grads(name: str, cfg: dict):
    method, model, mods = make(name, cfg)
    train_step(name, method, model, splits_for(mods))
    return method, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_audio_gradient_times_five_and_nothing_else():
    _, plain = _grads("concat", {})
    method, scaled = _grads("grad_scale", {"scales": {"audio": 5.0}})
    assert plain.keys() == scaled.keys()
    for name, g in plain.items():
        factor = 5.0 if name.startswith("encoders.audio.") else 1.0
        assert torch.allclose(scaled[name], factor * g, rtol=1e-5, atol=1e-7), name
    assert method.ctx.logs["grad_scale_audio"] == [5.0] and method.ctx.logs["grad_scale_visual"] == [1.0]


def test_no_scales_is_concat():
    _, plain = _grads("concat", {})
    _, same = _grads("grad_scale", {"scales": {}})
    assert all(torch.equal(plain[n], same[n]) for n in plain)


def test_ratios_by_hand():
    # audio logits [0, 0] → σ = (1/2, 1/2); visual [ln 3, 0] → σ = (3/4, 1/4); label 0:
    # d_a / d_v = 0.5 / 0.75 (Eq. 4); q_a / q_v = H_v / H_a (Eq. 17: q = 1 / entropy)
    method = build_method("grad_scale", {"scales": {"audio": 5.0}},
                          MethodContext(modalities=["audio", "visual"], num_classes=2, epochs=1))
    method._uni = {"audio": torch.tensor([[0.0, 0.0]]), "visual": torch.tensor([[math.log(3.0), 0.0]])}
    model = torch.nn.Module()
    model.modality_parameters = lambda m: []
    method.after_backward(model, None, torch.tensor([0]))
    h_a, h_v = math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert method.ctx.logs["arl_d_ratio_audio"][0] == pytest.approx(2 / 3, rel=1e-6)
    assert method.ctx.logs["arl_q_ratio_audio"][0] == pytest.approx(h_v / h_a, rel=1e-6)
    assert "arl_d_ratio_visual" not in method.ctx.logs  # visual is the reference (last modality)


def test_unknown_modality_is_refused():
    with pytest.raises(ValueError, match="depth"):
        build_method("grad_scale", {"scales": {"depth": 5.0}},
                     MethodContext(modalities=["audio", "visual"], num_classes=2, epochs=1))
