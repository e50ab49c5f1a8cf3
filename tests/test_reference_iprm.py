"""IPRM against the authors' released code.

Transcribed from njustkmg/IJCAI25-IPRM @ 0bb457fe69320948bf37061c836b516bbcb236e9, ``main_av.py``:
``slerp``, ``compute_kl_divergence`` (verbatim), ``train_epoch`` (instantaneous probing phase,
λ EMA over the module-level lists, rebalanced learning phase) and ``valid`` (prediction
out_a + out_v + out_mm with the last probe's λ).

The code's unimodal heads are ``nn.Linear`` layers of their own; ours are the concat head's split
W_o·φ_o + b/2 (a documented choice, iprm.py). The transcription is therefore fed our unimodal
logits as ``head_audio(a)`` / ``head_video(v)``, which tests everything downstream of them:
ω, the λ recursion, the geodesic mixup, the training logits and the test-time prediction.
"""

import pytest
import torch
import torch.nn.functional as F
import yaml
from pathlib import Path

from mmbalance.methods import MethodContext, build_method

from reference_models import FEATURE_DIM, LABELS, NUM_CLASSES, linear_inputs, linear_model, pattern

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]
MODS = ["audio", "visual"]
STEPS = 3


def compute_kl_divergence(logits1, logits2):
    """IJCAI25-IPRM@0bb457f main_av.py (verbatim)."""
    probs1 = F.softmax(logits1, dim=-1)
    # probs2 = F.softmax(logits2, dim=-1)
    kl_divergence = torch.sum(probs1 * (F.log_softmax(logits1, dim=-1) - F.log_softmax(logits2, dim=-1)), dim=-1)

    return kl_divergence.mean()


def slerp(x, y, lambda_x, lambda_y):
    """IJCAI25-IPRM@0bb457f main_av.py (verbatim)."""
    ############ geodesic mixup ###########
    x_norm = x / torch.norm(x, p=2, dim=1, keepdim=True)
    y_norm = y / torch.norm(y, p=2, dim=1, keepdim=True)

    dot = torch.sum(x_norm * y_norm, dim=1).clamp(-1.0, 1.0)
    theta = torch.acos(dot)
    theta = theta.unsqueeze(1).expand_as(x_norm)

    sin_theta = torch.sin(theta)
    sin_theta = sin_theta + 1e-8  # to avoid nan

    a = torch.sin(lambda_x * theta) / sin_theta
    b = torch.sin(lambda_y * theta) / sin_theta
    result = a * x_norm + b * y_norm
    return result


def code_run(a, v, out_a, out_v, head_mixup, alpha, steps):
    """IJCAI25-IPRM@0bb457f main_av.py train_epoch (the per-batch probe / rebalance lines, the
    same batch ``steps`` times, no optimizer step) then valid's prediction on that batch."""
    lam_a_list, lam_v_list, lam_hat_a_list, lam_hat_v_list = [], [], [], []
    for _ in range(steps):
        ############ Instantaneous Probing Phase ############
        with torch.no_grad():
            if len(lam_a_list) == 0:
                lam_a = 0.5
                lam_v = 0.5
            else:
                lam_a = lam_a_list[-1] * alpha + lam_hat_a_list[-1] * (1 - alpha)
                lam_v = lam_v_list[-1] * alpha + lam_hat_v_list[-1] * (1 - alpha)

            mixup_f = slerp(a, v, lam_a, lam_v)
            out_tmp = head_mixup(mixup_f)

            KL_a = compute_kl_divergence(out_a, out_tmp)
            KL_v = compute_kl_divergence(out_v, out_tmp)

            lam_hat_a = KL_v / (KL_a + KL_v)
            lam_hat_v = KL_a / (KL_a + KL_v)

            lam_a_list.append(lam_a)
            lam_v_list.append(lam_v)
            lam_hat_a_list.append(lam_hat_a.cpu())
            lam_hat_v_list.append(lam_hat_v.cpu())
        ############ Rebalanced Learning Phase #############
        mixup_f = slerp(a, v, lam_hat_a, lam_hat_v)
        out_mm = head_mixup(mixup_f)
    # valid
    mixup_f = slerp(a, v, lam_a_list[-1], lam_v_list[-1])
    prediction = out_a + out_v + head_mixup(mixup_f)
    lams = [float(x) for x in lam_a_list]
    omegas = [float(x) for x in lam_hat_a_list]
    return lams, omegas, out_mm, prediction


# λ_t (probe weight of audio) and ω_t recorded from code_run on the linear model, α = 0.8
REF_LAMBDA = [0.5, 0.5144765973091125, 0.5257390737533569]
REF_OMEGA = [0.5723829865455627, 0.570789098739624, 0.5695762634277344]


def setup():
    model = linear_model()
    method = build_method("iprm", {**PARAMS["iprm__code"], "alpha": 0.8}, MethodContext(list(MODS), NUM_CLASSES, 1))
    model.method_modules.update(method.modules(model.feature_dims, NUM_CLASSES))
    head = method.heads["audio__visual"]
    with torch.no_grad():
        head.weight.copy_(pattern(NUM_CLASSES, FEATURE_DIM, phase=4.0, scale=1.5))
        head.bias.copy_(torch.tensor([0.1, 0.0, -0.1]))
    return model, method, head


def code_outputs():
    model, _, head = setup()
    with torch.no_grad():
        base = model(linear_inputs())
    a, v = base.features["audio"], base.features["visual"]
    return code_run(a, v, base.unimodal_logits["audio"], base.unimodal_logits["visual"], head, 0.8, STEPS)


def test_transcription_reproduces_recorded_lambdas():
    lams, omegas, _, _ = code_outputs()
    assert lams == pytest.approx(REF_LAMBDA, rel=1e-6)
    assert omegas == pytest.approx(REF_OMEGA, rel=1e-6)


def test_probe_rebalance_steps_match_released_code():
    lams, omegas, out_mm, _ = code_outputs()
    model, method, _ = setup()
    for _ in range(STEPS):
        out = method.forward(model, linear_inputs(), LABELS)
    logs = method.ctx.logs
    assert logs["lambda_audio_vs_visual"] == pytest.approx(REF_LAMBDA, rel=1e-6)
    assert logs["omega_audio_vs_visual"] == pytest.approx(REF_OMEGA, rel=1e-6)
    torch.testing.assert_close(out.logits, out_mm)


def test_code_evaluation_sums_logits_with_last_probe_lambda():
    _, _, _, prediction = code_outputs()
    model, method, _ = setup()
    for _ in range(STEPS):
        method.forward(model, linear_inputs(), LABELS)
    with torch.no_grad():
        out = model(linear_inputs())
        torch.testing.assert_close(method.predict(out), prediction)
        # the default evaluation (the iprm block) mixes with the EMA state, one step later
        method.eval_lambda, method.test_logits = "ema", "fused"
        zbar = {m: F.normalize(out.features[m], dim=1) for m in MODS}
        lam = 0.8 * REF_LAMBDA[-1] + 0.2 * REF_OMEGA[-1]
        head = method.heads["audio__visual"]
        torch.testing.assert_close(method.predict(out), head(slerp(zbar["audio"], zbar["visual"], lam, 1 - lam)))


def test_iprm_blocks_paper_and_code():
    assert (PARAMS["iprm"]["test_logits"], PARAMS["iprm"].get("eval_lambda", "ema")) == ("fused", "ema")
    assert (PARAMS["iprm__code"]["test_logits"], PARAMS["iprm__code"]["eval_lambda"]) == ("sum", "probe")
