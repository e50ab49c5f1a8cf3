"""ARL (`variant: code`, the arl_code block) against the authors' released code.

Transcribed from shicaiwei123/ICCV2025-ARL @ 358af4f6782781ac3821527beae3321e77f9d31e:

- ``models/backbone.py``: ``GradScale`` (applied to each encoder's output when
  ``current_epoch > start``, with ``args.audio_weight`` / ``args.visual_weight``);
- ``models/fusion_modules.py``: ``ConcatFusion_AUXI.forward`` (unimodal logits with the other
  modality's features zeroed, full bias);
- ``main_arl_variance.py``: ``train_epoch`` (loss switch at ``epoch > args.start``, the warm-up
  branch setting both GradScale weights to 0.5, ``clip_grad_norm_(…, max_norm=40)``), defaults
  ``--start 5``; ``cramed_arl.sh``: ``--gamma 4.0 --T 8.0``.

The coefficients the code computes from entropies and mean |logits| are never written back to
``args.audio_weight`` / ``args.visual_weight`` after the warm-up, so every encoder gradient is
scaled by 1 + 0.5 after epoch 5; the paper's Eq. 17–18 coefficients (the arl block, no released
code) are tested against hand-computed values in test_arl.py.
"""

import pytest
import torch
import yaml
from pathlib import Path
from torch import nn

from mmbalance.methods import MethodContext, build_method

from reference_models import LABELS, linear_inputs, linear_model

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]
MODS = ["audio", "visual"]


class GradScale(torch.autograd.Function):
    """ICCV2025-ARL@358af4f models/backbone.py. One change: ``weight, = ctx.saved_tensors``
    (the code multiplies by the 1-tuple itself, which torch ≥ 2 rejects; the intent, and what
    older torch computed, is grad + grad·weight)."""

    @staticmethod
    def forward(ctx, input, weight):
        ctx.save_for_backward(weight)
        return input

    @staticmethod
    def backward(ctx, grad_output):
        weight, = ctx.saved_tensors

        grad_input = grad_output + grad_output * weight

        grad_weight = torch.tensor(1.0)
        return grad_input, grad_weight


def concat_fusion_auxi(fc_out, x, y):
    """ICCV2025-ARL@358af4f models/fusion_modules.py ConcatFusion_AUXI.forward."""
    output = torch.cat((x, y), dim=1)

    output = fc_out(output)
    x_out = fc_out(torch.cat((x, torch.zeros_like(y)), dim=1))
    y_out = fc_out(torch.cat((torch.zeros_like(x), y), dim=1))
    return x_out, y_out, output


def code_step(model, inputs, label, epoch, gamma, start=5, max_norm=40.0):
    """ICCV2025-ARL@358af4f main_arl_variance.py train_epoch, one batch (acc_a + acc_v ≠ 0 assumed;
    the encoders are our two linear encoders, GradScale on their outputs as in ResNet_weight)."""
    criterion = nn.CrossEntropyLoss()
    audio_weight = visual_weight = 0.5  # set in the warm-up branch, never changed afterwards
    a = model.encoders["audio"](inputs["audio"])
    v = model.encoders["visual"](inputs["visual"])
    if epoch > start:  # ResNet_weight.forward: `if self.args.current_epoch > self.args.start`
        a = GradScale.apply(a, torch.tensor(audio_weight, requires_grad=False))
        v = GradScale.apply(v, torch.tensor(visual_weight, requires_grad=False))
    out_a, out_v, out = concat_fusion_auxi(model.fusion.head, a, v)

    loss_v = criterion(out_v, label)
    loss_a = criterion(out_a, label)
    loss_f = criterion(out, label)
    if epoch > start:
        loss_cls = loss_f + (loss_a + loss_v) * gamma
    else:
        loss_cls = loss_f + (loss_a + loss_v) * 1
    loss = loss_cls
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm, norm_type=2)
    return float(loss.detach())


# Losses recorded from code_step on reference_models.linear_model / linear_inputs / LABELS
REF_LOSS = {5: 3.864537000656128, 6: 11.1834716796875}  # epoch 5: CE_f + CE_a + CE_v; 6: γ = 4


def ours_step(epoch, **over):
    model = linear_model()
    method = build_method("arl_code", {**PARAMS["arl_code"], **over}, MethodContext(list(MODS), 3, 100, dataset="cremad"))
    method.ctx.epoch = epoch
    out = method.forward(model, linear_inputs(), LABELS)
    loss = method.loss(out, LABELS)
    loss.backward()
    method.after_backward(model, out, LABELS)
    return model, float(loss.detach())


@pytest.mark.parametrize("epoch", [5, 6])
def test_arl_code_loss_and_gradients_match_released_code(epoch):
    ref = linear_model()
    loss = code_step(ref, linear_inputs(), LABELS, epoch, gamma=PARAMS["arl_code"]["gamma"])
    assert loss == pytest.approx(REF_LOSS[epoch], rel=1e-6)
    model, ours = ours_step(epoch)
    assert ours == pytest.approx(REF_LOSS[epoch], rel=1e-6)
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_arl_code_clipping_after_scaling_matches_released_code():
    """A norm small enough to clip: scaling (in backward) comes before the clip in both."""
    ref = linear_model()
    code_step(ref, linear_inputs(), LABELS, 6, gamma=4.0, max_norm=0.05)
    model, _ = ours_step(6, clip_grad_norm=0.05)
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_arl_code_settings_are_the_scripts():
    cfg = PARAMS["arl_code"]
    # --gamma 4.0 --T 8.0 (cramed_arl.sh), --start 5 → warm-up epochs 0–5, clip 40, GradScale 0.5
    assert (cfg["gamma"], cfg["T_by_dataset"]["cremad"], cfg["warmup_epochs"], cfg["clip_grad_norm"], cfg["code_grad_scale"]) == (4.0, 8.0, 6, 40.0, 0.5)
