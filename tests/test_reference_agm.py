"""AGM against the authors' released code.

Transcribed from lihong2303/AGM_ICCV2023 @ 5a65542c70b1c7c15c5df291e77fa9cf2bbb9549:

- ``model/CREMAD_net.py``: ``GradMod`` (``Modality_Audio`` / ``Modality_Visual`` / ``Modality_out``,
  the full backward hooks scaling each contribution's gradient, ``update_scale``);
- ``run/CREMAD_main.py`` ``train``: the mono-modal scores with the 1e−8 floor, ratio / optimal
  ratio, ``coeff = exp(α·min(optimal − ratio, 10))``, the running means over
  ``iteration = (epoch−1)·total_batch + step + 1``, ``update_scale`` before ``backward`` in the
  modulation epochs, and the clipping test on ``fc_out.weight.grad``.
- ``utils/config.py`` defaults: α 1.0, ``--modulation_starts 0 --modulation_ends 20`` (epochs
  counted from 1).

One documented difference is kept: the code zeroes a modality's *input* and reruns the encoders
(in eval mode) for each coalition, we zero its *features* and rerun only the fusion head. The
transcription below therefore runs ``GradMod`` on the features of our encoders (``self.net``
= the concat head on zero-padded features), which tests everything from the coalition outputs on.
"""

import math

import pytest
import torch
import torch.nn as nn
import yaml
from pathlib import Path

from mmbalance.methods import MethodContext, build_method

from reference_models import LABELS, NUM_CLASSES, clone_with_grads, linear_inputs, linear_model

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]
MODS = ["audio", "visual"]


class Modality_Visual(nn.Module):
    def forward(self, total_out, pad_visual_out, pad_audio_out):
        return 0.5 * (total_out - pad_visual_out + pad_audio_out)


class Modality_Audio(nn.Module):
    def forward(self, total_out, pad_visual_out, pad_audio_out):
        return 0.5 * (total_out - pad_audio_out + pad_visual_out)


class Modality_out(nn.Module):
    def forward(self, x):
        return x


class GradMod(nn.Module):
    """AGM_ICCV2023@5a65542 model/CREMAD_net.py GradMod; ``self.net(audio, visual, pad_audio,
    pad_visual)`` → the concat head ``fc_out`` on the (zero-padded) encoder features."""

    def __init__(self, fc_out):
        super().__init__()
        self.fc_out = fc_out
        self.m_v = Modality_Visual()
        self.m_a = Modality_Audio()
        self.m_v_o = Modality_out()
        self.m_a_o = Modality_out()

        self.scale_a = 1.0
        self.scale_v = 1.0

        self.m_a_o.register_full_backward_hook(self.hooka)
        self.m_v_o.register_full_backward_hook(self.hookv)

    def hooka(self, m, ginp, gout):
        gnew = ginp[0].clone()
        return gnew * self.scale_a,

    def hookv(self, m, ginp, gout):
        gnew = ginp[0].clone()
        return gnew * self.scale_v,

    def update_scale(self, coeff_a, coeff_v):
        self.scale_a = coeff_a
        self.scale_v = coeff_v

    def net(self, a, v, pad_audio=False, pad_visual=False):
        if pad_audio:
            a = torch.zeros_like(a)
        if pad_visual:
            v = torch.zeros_like(v)
        return self.fc_out(torch.cat((a, v), dim=1))

    def forward(self, a, v):
        total_out = self.net(a, v, pad_audio=False, pad_visual=False)
        pad_visual_out = self.net(a, v, pad_audio=False, pad_visual=True)
        pad_audio_out = self.net(a, v, pad_audio=True, pad_visual=False)
        zero_padding_out = self.net(a, v, pad_audio=True, pad_visual=True)
        m_a = self.m_a_o(self.m_a(total_out, pad_visual_out, pad_audio_out))
        m_v = self.m_v_o(self.m_v(total_out, pad_visual_out, pad_audio_out))
        return total_out, pad_visual_out, pad_audio_out, zero_padding_out, m_a + m_v


def code_train_step(model, gradmod, inputs, label, state, alpha, epoch, step, total_batch,
                    modulation_starts=0, modulation_ends=20):
    """AGM_ICCV2023@5a65542 run/CREMAD_main.py train, one multimodal late-fusion AGM step
    (``state`` carries train_score_a / train_score_v between steps)."""
    criterion = nn.CrossEntropyLoss()
    softmax = nn.Softmax(dim=1)
    iteration = (epoch - 1) * total_batch + step + 1
    a, v = model.encoders["audio"](inputs["audio"]), model.encoders["visual"](inputs["visual"])
    total_out, pad_visual_out, pad_audio_out, zero_padding_out, out = gradmod(a, v)
    out_a = 0.5 * (total_out - pad_audio_out + pad_visual_out)
    out_v = 0.5 * (total_out - pad_visual_out + pad_audio_out)
    loss = criterion(out, label)

    score_audio = 0.
    score_visual = 0.
    for k in range(out_a.size(0)):
        if torch.isinf(torch.log(softmax(out_a)[k][label[k]])) or softmax(out_a)[k][label[k]] < 1e-8:
            score_audio += - torch.log(torch.tensor(1e-8, dtype=out_a.dtype, device=out_a.device))
        else:
            score_audio += - torch.log(softmax(out_a)[k][label[k]])

        if torch.isinf(torch.log(softmax(out_v)[k][label[k]])) or softmax(out_v)[k][label[k]] < 1e-8:
            score_visual += - torch.log(torch.tensor(1e-8, dtype=out_v.dtype, device=out_v.device))
        else:
            score_visual += - torch.log(softmax(out_v)[k][label[k]])
    score_audio = score_audio / out_a.size(0)
    score_visual = score_visual / out_v.size(0)

    ratio_a = math.exp(score_visual.item() - score_audio.item())
    ratio_v = math.exp(score_audio.item() - score_visual.item())

    optimal_ratio_a = math.exp(state["v"] - state["a"])
    optimal_ratio_v = math.exp(state["a"] - state["v"])

    coeff_a = math.exp(alpha * (min(optimal_ratio_a - ratio_a, 10)))
    coeff_v = math.exp(alpha * (min(optimal_ratio_v - ratio_v, 10)))

    state["a"] = state["a"] * (iteration - 1) / iteration + score_audio.item() / iteration
    state["v"] = state["v"] * (iteration - 1) / iteration + score_visual.item() / iteration

    if modulation_starts <= epoch <= modulation_ends:
        gradmod.update_scale(coeff_a, coeff_v)
        loss.backward()
    else:
        loss.backward()
    grad_max = torch.max(gradmod.fc_out.weight.grad)
    grad_min = torch.min(gradmod.fc_out.weight.grad)
    if grad_max > 1 or grad_min < -1:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    return coeff_a, coeff_v


def step_inputs(step, scale=1.0):
    """A different batch each step (the running means need more than one batch)."""
    return {m: x.roll(step, dims=0) * (1.0 + 0.5 * step) * scale for m, x in linear_inputs().items()}


# (coeff_a, coeff_v) recorded from code_train_step over 3 steps of its epoch 1, α = 1
REF_COEFFS = [(1.5323157952011452, 0.4749567880028365), (0.34514422384101634, 3.1070156008495484),
              (2.1152932209157154, 0.029496649074532574)]


def run_code(steps=3, scale=1.0):
    model = linear_model(audio_scale=2.0)
    gradmod, state, coeffs, grads = GradMod(model.fusion.head), {"a": 0.0, "v": 0.0}, [], []
    for step in range(steps):
        model.zero_grad()
        coeffs.append(code_train_step(model, gradmod, step_inputs(step, scale), LABELS, state, 1.0, 1, step, steps))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    return coeffs, grads


def run_ours(steps=3, scale=1.0):
    model = linear_model(audio_scale=2.0)
    method = build_method("agm", PARAMS["agm"], MethodContext(list(MODS), NUM_CLASSES, 20))
    coeffs, grads = [], []
    for step in range(steps):
        model.zero_grad()
        out = method.forward(model, step_inputs(step, scale), LABELS)
        method.loss(out, LABELS).backward()
        method.after_backward(model, out, LABELS)
        coeffs.append((method.ctx.logs["k_audio"][-1], method.ctx.logs["k_visual"][-1]))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    return coeffs, grads


def test_transcription_reproduces_recorded_coefficients():
    coeffs, _ = run_code()
    assert [c for pair in coeffs for c in pair] == pytest.approx([c for pair in REF_COEFFS for c in pair], rel=1e-5)


def test_coefficients_and_gradients_match_released_code():
    ref_coeffs, ref_grads = run_code()
    coeffs, grads = run_ours()
    assert [c for pair in coeffs for c in pair] == pytest.approx([c for pair in ref_coeffs for c in pair], rel=1e-5)
    for step, (g, r) in enumerate(zip(grads, ref_grads)):
        for n in r:
            torch.testing.assert_close(g[n], r[n], rtol=1e-5, atol=1e-6, msg=f"step {step}: {n}")


def code_clip(model, fc_out):
    """AGM_ICCV2023@5a65542 run/CREMAD_main.py train, the late-fusion clipping lines."""
    grad_max = torch.max(fc_out.weight.grad)
    grad_min = torch.min(fc_out.weight.grad)
    if grad_max > 1 or grad_min < -1:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)


@pytest.mark.parametrize("weight_entry, bias_entry", [(3.0, 0.1), (-2.0, 0.1), (0.5, 5.0), (0.5, 0.1)])
def test_clipping_rule_matches_released_code(weight_entry, bias_entry):
    """Only the head's weight gradient decides (a large bias gradient alone does not clip)."""
    model = linear_model()
    for i, p in enumerate(model.parameters()):
        p.grad = torch.full_like(p, 0.3 + 0.01 * i)
    model.fusion.head.weight.grad[0, 0] = weight_entry
    model.fusion.head.bias.grad[0] = bias_entry
    ref = clone_with_grads(model)
    code_clip(ref, ref.fusion.head)
    build_method("agm", PARAMS["agm"], MethodContext(list(MODS), NUM_CLASSES, 20)).after_backward(model, None, LABELS)
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_modulation_epochs_match_the_code_count():
    """The code's epochs 1–20 (``0 <= epoch <= 20`` with epochs from 1) are our epochs 0–19."""
    method = build_method("agm", PARAMS["agm"], MethodContext(list(MODS), NUM_CLASSES, 30))
    modulated = [e for e in range(30) if method.start <= e <= method.end]
    assert modulated == [e - 1 for e in range(1, 31) if 0 <= e <= 20]
