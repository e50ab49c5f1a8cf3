"""LFM against the authors' released code.

Transcribed from njustkmg/NeurIPS24-LFM @ ad44fa09fee471c9267a7cba526b222c54d45493:
``Crema_epoch.py`` ``Alignment``, ``getAlpha_Learnable_Fitted`` and the loss of
``train_audio_video``; ``Crema_epoch_learnable.py`` ``getAlpha_Learnable`` (the hypergradient
step on α_gap over half of a fixed validation batch). The code's ``AVClassifier`` returns
(o_a + o_v, o_a, o_v, …); on the linear reference model o_m is the modality's share of the concat
head, so the code's CE(0.5·o_v + 0.5·o_a) is our CE(fused / 2).

Code and paper: the paper calls the alignment term a Jensen-Shannon divergence; the code's
``F.kl_div(p.log(), m)`` is KL(m‖p), so its term is ½[KL(m‖p) + KL(m‖q)]. Both are params
variants (``divergence: code`` / ``js``) and both are checked here: the first against the code,
the second against scipy's Jensen-Shannon distance.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.lfm import fitted_weights, lfm_loss, pair_divergence

from reference_models import LABELS, NUM_CLASSES, linear_inputs, linear_model


def Alignment(p, q):
    """NeurIPS24-LFM@ad44fa0 Crema_epoch.py (verbatim)."""
    p = F.softmax(p, dim=-1)
    q = F.softmax(q, dim=-1)
    m = 0.5 * p + 0.5 * q
    kl_p_m = F.kl_div(p.log(), m, reduction='batchmean')
    kl_q_m = F.kl_div(q.log(), m, reduction='batchmean')
    js_score = 0.5 * (kl_p_m + kl_q_m)
    return js_score


def getAlpha_Learnable_Fitted(epoch):
    """Crema_epoch.py (verbatim)."""
    coef_alpha1 = [2.04623704e-01, 3.35472727e-03, 1.22989557e-04, -2.92947416e-06, 2.23835486e-08, -5.39717505e-11]
    coef_alpha2 = [7.95376296e-01, -3.35472727e-03, -1.22989557e-04, 2.92947416e-06, -2.23835486e-08, 5.39717505e-11]
    alpha1 = sum(c * (epoch ** i) for i, c in enumerate(coef_alpha1))
    alpha2 = sum(c * (epoch ** i) for i, c in enumerate(coef_alpha2))
    return [alpha1, alpha2]


def code_loss(o_a, o_v, y, cls_k):
    """Crema_epoch.py train_audio_video, the loss of one batch."""
    criterion = nn.CrossEntropyLoss(reduction='none')
    loss_alignment = Alignment(o_a, o_v)
    loss_cls = criterion(0.5 * o_v + 0.5 * o_a, y).mean()
    return 2 * (cls_k[0] * loss_cls + cls_k[1] * loss_alignment)


class CodeAV(nn.Module):
    """The code's model interface around the reference model: (o_b, o_a, o_v, a_f, v_f)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, spectrogram, image):
        out = self.model({"audio": spectrogram, "visual": image})
        u = out.unimodal_logits
        return out.logits, u["audio"], u["visual"], out.features["audio"], out.features["visual"]


def getAlpha_Learnable(epoch, valbatch, model, alpha, lr_alpha=1e-4):
    """Crema_epoch_learnable.py (verbatim but for ``.cuda()``, the print and the spectrogram's
    ``unsqueeze(1)``, which our inputs already have)."""
    criterion = nn.CrossEntropyLoss(reduction='none')
    spectrogram, image, y = valbatch
    half_size = spectrogram.size(0) // 2
    spectrogram = spectrogram[:half_size]
    image = image[:half_size]
    y = y[:half_size]
    image = image.float()
    spectrogram = spectrogram.float()
    o_b, o_a, o_v, a_f, v_f = model(spectrogram, image)
    loss_alignment = Alignment(o_a, o_v)
    loss_cls = criterion(0.5 * o_v + 0.5 * o_a, y).mean()
    L_total = alpha[0] * loss_cls + alpha[1] * loss_alignment
    theta_grads = torch.autograd.grad(L_total, model.parameters(), create_graph=True)
    cls_grads = torch.autograd.grad(loss_cls, model.parameters(), retain_graph=True, create_graph=True)
    hessian_vector_prod = torch.autograd.grad(outputs=theta_grads, inputs=model.parameters(), grad_outputs=cls_grads,
                                              retain_graph=True)
    with torch.no_grad():
        alpha_grad = hessian_vector_prod[0].mean().item()
        if epoch % 20 == 0 and epoch != 0:
            lr_alpha = lr_alpha / 2
        alpha[1] -= lr_alpha * alpha_grad
        alpha[1] = max(0.05, min(0.95, alpha[1]))
        alpha[0] = 1.0 - alpha[1]
    return alpha, lr_alpha, alpha_grad


# recorded from the transcription on the reference model (audio × 2)
REF_ALIGNMENT = 0.08765694499015808
REF_LOSS_EPOCH_50 = 1.2808929681777954
REF_ALPHA_GRAD = 0.07312995940446854


def _logits():
    with torch.no_grad():
        out = linear_model(audio_scale=2.0)(linear_inputs())
    return out.logits, out.unimodal_logits["audio"], out.unimodal_logits["visual"]


def test_transcription_reproduces_recorded_outputs():
    _, o_a, o_v = _logits()
    assert float(Alignment(o_a, o_v)) == pytest.approx(REF_ALIGNMENT, rel=1e-6)
    assert float(code_loss(o_a, o_v, LABELS, getAlpha_Learnable_Fitted(50))) == pytest.approx(REF_LOSS_EPOCH_50, rel=1e-6)
    model = CodeAV(linear_model(audio_scale=2.0))
    batch = (linear_inputs()["audio"], linear_inputs()["visual"], LABELS)
    _, _, grad = getAlpha_Learnable(0, batch, model, [0.05, 0.95])
    assert grad == pytest.approx(REF_ALPHA_GRAD, rel=1e-5)


def test_alignment_code_form_matches_released_code():
    _, o_a, o_v = _logits()
    assert float(pair_divergence(o_a, o_v, "code")) == pytest.approx(float(Alignment(o_a, o_v)), rel=1e-6)


def test_alignment_js_form_is_the_textbook_divergence():
    """``divergence: js`` (the paper's name for the term): scipy's JS distance squared (natural log)."""
    _, o_a, o_v = _logits()
    p, q = o_a.softmax(1).double().numpy(), o_v.softmax(1).double().numpy()
    want = np.mean([jensenshannon(a, b) ** 2 for a, b in zip(p, q)])
    assert float(pair_divergence(o_a, o_v, "js")) == pytest.approx(want, rel=1e-5)
    assert not math.isclose(want, REF_ALIGNMENT, rel_tol=1e-3)  # the two forms do differ


@pytest.mark.parametrize("epoch", [0, 1, 10, 50, 100, 150, 176, 190, 199])
def test_fitted_schedule_matches_released_code(epoch):
    """Over the code's 200 epochs (``stretch: false``), clamped to [0, 1] where the fit leaves it."""
    a1, a2 = getAlpha_Learnable_Fitted(epoch)
    ours = fitted_weights(epoch, 200, stretch=False)
    assert ours == pytest.approx((min(max(a1, 0.0), 1.0), 1.0 - min(max(a1, 0.0), 1.0)), abs=1e-12)
    if 0.0 <= a1 <= 1.0:
        assert ours == pytest.approx((a1, a2), abs=1e-9)


def test_loss_matches_released_code():
    fused, o_a, o_v = _logits()
    cls_k = getAlpha_Learnable_Fitted(50)
    loss, _, _ = lfm_loss(fused, {"audio": o_a, "visual": o_v}, LABELS, *cls_k)
    assert float(loss) == pytest.approx(float(code_loss(o_a, o_v, LABELS, cls_k)), rel=1e-6)


class _Trainer:
    """What ``_learned_update`` reads: the model, a 'val' split and its first batch."""

    def __init__(self, model):
        self.model, self.splits = model, {"val": None}

    def batches(self, split):
        yield linear_inputs(), LABELS


@pytest.mark.parametrize("epoch", [0, 20])
def test_learned_alpha_step_matches_released_code(epoch):
    """One ``getAlpha_Learnable`` step from α_gap 0.95 (the code's start) on half of a 4-sample
    validation batch (our ``hyper_batch`` 2), with the learning-rate halving at epoch 20."""
    code_model, ours = CodeAV(linear_model(audio_scale=2.0)), linear_model(audio_scale=2.0)
    batch = (linear_inputs()["audio"], linear_inputs()["visual"], LABELS)
    alpha, lr_alpha, _ = getAlpha_Learnable(epoch, batch, code_model, [0.05, 0.95], lr_alpha=1e-4)
    method = build_method("lfm", {"schedule": "learned", "hyper_batch": 2, "lr_alpha": 1e-4},
                          MethodContext(["audio", "visual"], NUM_CLASSES, 200))
    method.on_epoch_start(epoch, _Trainer(ours))
    assert method.lr_alpha == pytest.approx(lr_alpha)
    assert method.weights == pytest.approx(tuple(alpha), abs=1e-9)  # α moves by ~1e-5; float32 HVP noise ~1e-12
    assert method.a_gap != 0.95
