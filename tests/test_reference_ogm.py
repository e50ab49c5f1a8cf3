"""OGM-GE, OGM, OGM*, OPM and OPM+OGM against the authors' released code.

Transcribed (minimal, faithful copies of the formula code; kept verbatim where it runs as is):

- OGM-GE (CVPR 2022): GeWu-Lab/OGM-GE_CVPR2022 @ 343dc1d95c9bda88f105c0da8d24f185e0e98b54,
  ``main.py``, ``train_epoch`` ("Modulation starts here !" block and the named_parameters loop).
- OGM / OGM* / OPM (TPAMI 2024): GeWu-Lab/BML_TPAMI2024 @ 4b3aa4fd841856c4acbebf48549e6c59fbf7635e,
  ``code/main.py`` (``train``: radio_1/radio_2, coeff_1/coeff_2, ``use_OGM_plus``, warm-up
  ``epoch<=5``) and ``code/models/Classifier.py`` (``calcu_q``, ``Modality_drop.execute_drop``,
  ``custom_autograd``; the stray ``]`` that makes the shipped file a SyntaxError is removed).

The constants were recorded by running these transcriptions on the fixed logits below; each test
checks the transcription still gives them and that our plug-in gives the same numbers.
The TPAMI paper's own forms (Eq. 8, Eq. 11, OGM*'s 1 + α·z(ρ̃)) have no released code; they are
tested against hand-computed values in test_ogm_ge.py, test_ogm_variants.py and test_opm.py.
"""

import numpy as np
import pytest
import torch
import yaml
from pathlib import Path
from torch import nn

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.ogm import boost_coefficient, gradient_coefficient
from mmbalance.methods.ogm_ge import discrepancy_ratios, modulation_coefficient
from mmbalance.methods.opm import drop_masks, drop_probability, in_epoch_range
from mmbalance.models import Output, build_model

from conftest import IN_CHANNELS, MODEL_CFG
from reference_models import LABELS, clone_with_grads, linear_inputs, linear_model

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]
MODS = ["audio", "visual"]

# Unimodal logits W_m·φ_m + b/2 of 4 samples, 3 classes (audio the more confident on the truth)
OUT_A = torch.tensor([[2.0, 0.5, -1.0], [0.3, 1.2, 0.1], [-0.5, 0.2, 1.5], [1.0, 1.0, 0.0]])
OUT_V = torch.tensor([[0.1, 0.0, -0.2], [0.4, 0.1, 0.3], [0.0, 0.5, 0.2], [0.2, -0.1, 0.3]])


# ---- transcriptions of the authors' code ---------------------------------------------------------

def cvpr_coefficients(out_a, out_v, label, alpha):
    """OGM-GE_CVPR2022@343dc1d main.py train_epoch, from ``score_v = …`` to ``coeff_v = 1``."""
    softmax = nn.Softmax(dim=1)
    relu = nn.ReLU(inplace=True)
    tanh = nn.Tanh()
    score_v = sum([softmax(out_v)[i][label[i]] for i in range(out_v.size(0))])
    score_a = sum([softmax(out_a)[i][label[i]] for i in range(out_a.size(0))])

    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    if ratio_v > 1:
        coeff_v = 1 - tanh(alpha * relu(ratio_v))
        coeff_a = 1
    else:
        coeff_a = 1 - tanh(alpha * relu(ratio_a))
        coeff_v = 1
    return float(ratio_a), float(coeff_a), float(coeff_v)


def cvpr_modulate(model, coeff_a, coeff_v, modulation="OGM_GE"):
    """OGM-GE_CVPR2022@343dc1d main.py train_epoch, the ``for name, parms in model.named_parameters()``
    loop (our parameter names ``encoders.<modality>.…`` put the modality at ``split('.')[1]``, as
    ``module.audio_net.…`` does in the code; the ``parms.grad is not None`` guard of the BML
    version of this loop is added for parameters outside the graph)."""
    for name, parms in model.named_parameters():
        layer = str(name).split('.')[1]
        if parms.grad is None:
            continue

        if 'audio' in layer and len(parms.grad.size()) == 4:
            if modulation == 'OGM_GE':  # bug fixed
                parms.grad = parms.grad * coeff_a + \
                             torch.zeros_like(parms.grad).normal_(0, parms.grad.std().item() + 1e-8)
            elif modulation == 'OGM':
                parms.grad *= coeff_a

        if 'visual' in layer and len(parms.grad.size()) == 4:
            if modulation == 'OGM_GE':  # bug fixed
                parms.grad = parms.grad * coeff_v + \
                             torch.zeros_like(parms.grad).normal_(0, parms.grad.std().item() + 1e-8)
            elif modulation == 'OGM':
                parms.grad *= coeff_v


def bml_performances(t1, t2, label):
    """BML_TPAMI2024@4b3aa4f code/models/Classifier.py Classifier.forward: performance_1/2."""
    softmax = nn.Softmax(dim=1)
    performance_1 = sum([softmax(t1)[i][int(label[i].item())] for i in range(t1.shape[0])])
    performance_2 = sum([softmax(t2)[i][int(label[i].item())] for i in range(t2.shape[0])])
    return performance_1, performance_2


def bml_coefficients(performance_1, performance_2, alpha, use_OGM_plus=False):
    """BML_TPAMI2024@4b3aa4f code/main.py train: from ``radio_1=…`` to the end of the coeff block."""
    relu = nn.ReLU(inplace=True)
    tanh = nn.Tanh()
    radio_1 = performance_1 / performance_2
    radio_2 = performance_2 / performance_1
    if use_OGM_plus:
        if radio_1 > 1:
            coeff_2 = 4
            coeff_1 = 1
        else:
            coeff_2 = 1
            coeff_1 = 4
    else:
        if radio_1 > 1:
            coeff_1 = 1 - tanh(alpha * relu(radio_1))
            coeff_2 = 1
        else:
            coeff_1 = 1
            coeff_2 = 1 - tanh(alpha * relu(radio_2))
    return float(coeff_1), float(coeff_2)


def bml_modulates(epoch, modulation_starts=0, modulation_ends=60):
    """BML code/main.py train: ``warm_up=1 if epoch<=5 else 0`` and the epoch-range test
    (scripts/train_ogm.sh: --modulation_starts 0 --modulation_ends 60)."""
    warm_up = 1 if epoch <= 5 else 0
    return warm_up == 0 and modulation_starts <= epoch <= modulation_ends


def calcu_q(performance_1, performance_2, q_base, fix_lambda):
    """BML_TPAMI2024@4b3aa4f code/models/Classifier.py calcu_q (verbatim)."""
    q = torch.tensor([0.0, 0.0])
    relu = nn.ReLU(inplace=True)
    ratio_1 = torch.tanh(relu(performance_1 / performance_2 - 1))
    ratio_2 = torch.tanh(relu(performance_2 / performance_1 - 1))

    lamda = fix_lambda

    q[0] = q_base * (1 + lamda * ratio_1) if ratio_1 > 0 else 0
    q[1] = q_base * (1 + lamda * ratio_2) if ratio_2 > 0 else 0

    q = torch.clip(q, 0.0, 1.0)

    return q


class custom_autograd(torch.autograd.Function):
    """BML_TPAMI2024@4b3aa4f code/models/Classifier.py (verbatim)."""

    @staticmethod
    def forward(ctx, input, theta):
        ctx.save_for_backward(input, theta)
        return input / (1 - theta.item())

    @staticmethod
    def backward(ctx, grad_output):
        input, theta = ctx.saved_tensors
        input_grad = 1 / (1 - theta.item()) * grad_output.clone()

        return input_grad, theta


def execute_drop(fead_list, q, dim_list, p_exe=0.7):
    """BML_TPAMI2024@4b3aa4f code/models/Classifier.py Modality_drop.execute_drop (device → CPU,
    the stray ``]`` after ``torch.chunk(…)`` removed)."""
    B = fead_list[0].shape[0]
    D = fead_list[0].shape[1]
    exe_drop = torch.tensor(np.random.rand(1)) >= 1 - p_exe
    if not exe_drop:
        return fead_list, torch.ones([B], dtype=torch.int32)

    num_mod = len(fead_list)
    d_sum = sum(dim_list)
    q_sum = sum(dim_list * q)
    theta = q_sum / d_sum

    mask = torch.distributions.Bernoulli(1 - q).sample([B, 1]).permute(2, 1, 0).contiguous().reshape(num_mod, B, -1)  # [2,B,1]
    concat_list = torch.stack(fead_list, dim=0)   # [2,B,D]
    concat_list = torch.mul(concat_list, mask)
    concat_list = custom_autograd.apply(concat_list, theta)
    mask = torch.transpose(mask, 0, 1).squeeze(-1)  # [B,2]
    update_flag = torch.sum(mask, dim=1) > 0
    cleaned_fea = torch.masked_select(concat_list, update_flag.unsqueeze(-1)).reshape(num_mod, -1, D)
    cleaned_fea = torch.chunk(cleaned_fea, num_mod, dim=0)
    cleaned_fea = [_.squeeze(0) for _ in cleaned_fea]   # [B,D]
    return cleaned_fea, update_flag


# ---- recorded outputs of the transcriptions on OUT_A / OUT_V / LABELS -----------------------------

# audio dominant: ρ_a = Σ s_a / Σ s_v, α = 0.8 → OGM-GE k_a = 1 − tanh(0.8·ρ_a), k_v = 1
REF_RHO_A = 1.8816461563110352
REF_CVPR = {"audio": 0.0938955545425415, "visual": 1.0}
# swapped roles (visual dominant): the visual coefficient of the code
REF_CVPR_SWAPPED = {"audio": 1.0, "visual": 0.0938955545425415}
# BML OGM (α 0.8) and OGM* (use_OGM_plus) on the same performances
REF_BML = {"audio": 0.0938955545425415, "visual": 1.0}
REF_BML_PLUS = {"audio": 1.0, "visual": 4.0}
# BML OPM calcu_q, q_base 0.5, λ 0.5: q_a = 0.5·(1 + 0.5·tanh(ρ_a − 1)), q_v = 0
REF_Q = {"audio": 0.6768107414245605, "visual": 0.0}


def scores(out_a, out_v):
    s = {"audio": torch.softmax(out_a, 1).gather(1, LABELS[:, None]).squeeze(1),
         "visual": torch.softmax(out_v, 1).gather(1, LABELS[:, None]).squeeze(1)}
    return s


def test_transcriptions_reproduce_recorded_outputs():
    rho_a, k_a, k_v = cvpr_coefficients(OUT_A, OUT_V, LABELS, 0.8)
    assert rho_a == pytest.approx(REF_RHO_A, rel=1e-5)
    assert {"audio": k_a, "visual": k_v} == pytest.approx(REF_CVPR, rel=1e-5)
    _, k_a, k_v = cvpr_coefficients(OUT_V, OUT_A, LABELS, 0.8)  # modalities swapped
    assert {"audio": k_a, "visual": k_v} == pytest.approx(REF_CVPR_SWAPPED, rel=1e-5)
    p1, p2 = bml_performances(OUT_A, OUT_V, LABELS)
    assert dict(zip(MODS, bml_coefficients(p1, p2, 0.8))) == pytest.approx(REF_BML, rel=1e-5)
    assert dict(zip(MODS, bml_coefficients(p1, p2, 0.8, use_OGM_plus=True))) == pytest.approx(REF_BML_PLUS)
    assert dict(zip(MODS, calcu_q(p1, p2, 0.5, 0.5).tolist())) == pytest.approx(REF_Q, rel=1e-5)


# ---- OGM-GE (CVPR form, the benchmark's ogm_ge block) ---------------------------------------------

def test_ogm_ge_coefficients_match_cvpr_code():
    alpha = PARAMS["ogm_ge"]["alpha"]
    rho = discrepancy_ratios(scores(OUT_A, OUT_V))
    assert rho["audio"] == pytest.approx(REF_RHO_A, rel=1e-5)
    ours = {m: modulation_coefficient(r, alpha, PARAMS["ogm_ge"]["form"]) for m, r in rho.items()}
    assert ours == pytest.approx(REF_CVPR, rel=1e-5)
    swapped = discrepancy_ratios(scores(OUT_V, OUT_A))
    assert {m: modulation_coefficient(r, alpha, "code") for m, r in swapped.items()} == pytest.approx(REF_CVPR_SWAPPED, rel=1e-5)


def _cnn_step(batch):
    """The conftest tiny CNN (4-D conv weights, like ResNet-18) after one plain backward."""
    inputs, labels = batch
    torch.manual_seed(0)
    model = build_model(MODEL_CFG, MODS, IN_CHANNELS, 6, "concat")
    out = model(inputs)
    torch.nn.functional.cross_entropy(out.logits, labels).backward()
    return model, out, labels


@pytest.mark.parametrize("noise", [False, True])
def test_ogm_ge_gradients_match_cvpr_code(batch, noise):
    """Scaling and GE noise on both encoders' conv weights, same random stream: identical grads."""
    model, out, labels = _cnn_step(batch)
    ref = clone_with_grads(model)
    _, k_a, k_v = cvpr_coefficients(out.unimodal_logits["audio"].detach(), out.unimodal_logits["visual"].detach(), labels, 0.8)
    torch.manual_seed(7)
    cvpr_modulate(ref, k_a, k_v, "OGM_GE" if noise else "OGM")
    method = build_method("ogm_ge", {**PARAMS["ogm_ge"], "noise": noise}, MethodContext(list(MODS), 6, 1))
    torch.manual_seed(7)
    method.after_backward(model, out, labels)
    assert method.ctx.logs["k_audio"][0] == pytest.approx(k_a, rel=1e-5)
    assert method.ctx.logs["k_visual"][0] == pytest.approx(k_v, rel=1e-5)
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_ogm_ge_epoch_range_matches_cvpr_code():
    # main.py: `if args.modulation_starts <= epoch <= args.modulation_ends` with 0 and 50
    cfg = PARAMS["ogm_ge"]
    for epoch in (0, 50, 51):
        assert in_epoch_range(cfg, epoch) == (0 <= epoch <= 50)


# ---- OGM as the BML code runs it (ogm_code) and OGM* (use_OGM_plus) -------------------------------

def test_ogm_code_coefficients_and_epochs_match_bml_code():
    cfg = PARAMS["ogm_code"]
    p1, p2 = bml_performances(OUT_A, OUT_V, LABELS)
    rho = discrepancy_ratios(scores(OUT_A, OUT_V))
    assert rho["audio"] == pytest.approx(float(p1 / p2), rel=1e-5)
    assert {m: gradient_coefficient(r, cfg["alpha"], cfg["form"], cfg["z"]) for m, r in rho.items()} == pytest.approx(REF_BML, rel=1e-5)
    for epoch in (0, 5, 6, 60, 61):
        assert in_epoch_range(cfg, epoch) == bml_modulates(epoch), epoch


def test_ogm_code_gradients_match_bml_code(batch):
    """ogm_code: BML main.py scales and noises 4-D weights of encoder_1/encoder_2 only."""
    model, out, labels = _cnn_step(batch)
    ref = clone_with_grads(model)
    p1, p2 = bml_performances(out.unimodal_logits["audio"].detach(), out.unimodal_logits["visual"].detach(), labels)
    c1, c2 = bml_coefficients(p1, p2, 0.8)
    torch.manual_seed(3)
    cvpr_modulate(ref, c1, c2, "OGM_GE")  # the BML loop is the same loop with encoder_1/encoder_2 names
    method = build_method("ogm_code", PARAMS["ogm_code"], MethodContext(list(MODS), 6, 1))
    method.ctx.epoch = 6
    torch.manual_seed(3)
    method.after_backward(model, out, labels)
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_ogm_star_code_form_matches_use_ogm_plus(batch):
    rho_inv = discrepancy_ratios(scores(OUT_V, OUT_A))  # how much the others exceed each modality
    assert {m: boost_coefficient(r, 0.8, "code") for m, r in rho_inv.items()} == pytest.approx(REF_BML_PLUS)
    # through the plug-in, with the released code's noise on conv weights
    model, out, labels = _cnn_step(batch)
    ref = clone_with_grads(model)
    p1, p2 = bml_performances(out.unimodal_logits["audio"].detach(), out.unimodal_logits["visual"].detach(), labels)
    c1, c2 = bml_coefficients(p1, p2, 0.8, use_OGM_plus=True)
    torch.manual_seed(5)
    cvpr_modulate(ref, c1, c2, "OGM_GE")
    cfg = {**PARAMS["ogm_star"], "form": "code", "noise": True, "noise_on": "conv"}
    method = build_method("ogm_star", cfg, MethodContext(list(MODS), 6, 1))
    torch.manual_seed(5)
    method.after_backward(model, out, labels)
    assert sorted([method.ctx.logs["k_audio"][0], method.ctx.logs["k_visual"][0]]) == sorted([c1, c2])
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


# ---- OPM (opm_code) --------------------------------------------------------------------------------

def test_opm_drop_probability_matches_calcu_q():
    rho = discrepancy_ratios(scores(OUT_A, OUT_V))
    for cfg in (PARAMS["opm"], PARAMS["opm_code"]):
        q = {m: drop_probability(r, cfg["q_base"], cfg["lam"], cfg["z"]) for m, r in rho.items()}
        assert q == pytest.approx(REF_Q, rel=1e-5)
    # the cap at 1 and the zero below ρ = 1, on a wider grid of performances
    for p1, p2 in ((9.0, 1.0), (3.0, 2.9), (1.0, 1.0), (0.5, 2.0)):
        ref = calcu_q(torch.tensor(p1), torch.tensor(p2), 0.9, 1.0).tolist()
        ours = [drop_probability(p1 / p2, 0.9, 1.0), drop_probability(p2 / p1, 0.9, 1.0)]
        assert ours == pytest.approx(ref, rel=1e-5, abs=1e-7)


def test_opm_code_masks_rescale_and_gradient_match_execute_drop():
    """q = (1, 0): deterministic masks. Features and their gradients equal the code's."""
    feats = linear_model().encode(linear_inputs())  # {m: [4, 3]}
    dims = {"audio": 3, "visual": 3}
    np.random.seed(0)
    ref_in = [feats[m].detach().clone().requires_grad_() for m in MODS]
    cleaned, flag = execute_drop(ref_in, torch.tensor([1.0, 0.0]), torch.tensor([3, 3]), p_exe=1.0)
    keep = drop_masks({"audio": 1.0, "visual": 0.0}, 4, torch.device("cpu"), PARAMS["opm_code"]["rescale"], dims)
    ours_in = [feats[m].detach().clone().requires_grad_() for m in MODS]
    ours = [f * keep[m][:, None] for f, m in zip(ours_in, MODS)]
    assert bool(flag.all())
    weights = torch.arange(12.0).reshape(4, 3)
    for c, o in zip(cleaned, ours):
        torch.testing.assert_close(o, c)
    sum((c * weights).sum() for c in cleaned).backward()
    sum((o * weights).sum() for o in ours).backward()
    for r, o in zip(ref_in, ours_in):
        torch.testing.assert_close(o.grad, r.grad)


def test_opm_code_forward_matches_classifier_with_certain_drop():
    """Classifier.forward with use_adam_drop: fused logits of the dropped, rescaled features."""
    model, inputs = linear_model(audio_scale=3.0), linear_inputs()
    with torch.no_grad():
        out = model(inputs)
        p1, p2 = bml_performances(out.unimodal_logits["audio"], out.unimodal_logits["visual"], LABELS)
        q = calcu_q(p1, p2, 1.0, 1.0)  # q_base 1, λ 1: the dominant modality always dropped
        np.random.seed(0)
        cleaned, _ = execute_drop([out.features[m] for m in MODS], q, torch.tensor([3, 3]), p_exe=1.0)
        ref = model.fuse(dict(zip(MODS, cleaned))).logits
    cfg = {**PARAMS["opm_code"], "q_base": 1.0, "lam": 1.0, "p_exe": 1.0}
    method = build_method("opm_code", cfg, MethodContext(list(MODS), 3, 10))
    method.ctx.epoch = 6
    with torch.no_grad():
        torch.testing.assert_close(method.forward(model, inputs, LABELS).logits, ref)
    assert max(q.tolist()) == 1.0
    assert [method.ctx.logs[f"q_{m}"][0] for m in MODS] == pytest.approx(q.tolist())


# ---- OPM+OGM: both from the pre-drop ρ of the same batch (BML main.py with both flags) -----------

def test_opm_ogm_code_form_uses_pre_drop_performances(batch):
    inputs, labels = batch
    torch.manual_seed(0)
    model = build_model(MODEL_CFG, MODS, IN_CHANNELS, 6, "concat")
    with torch.no_grad():
        pre = model(inputs)
    p1, p2 = bml_performances(pre.unimodal_logits["audio"], pre.unimodal_logits["visual"], labels)
    c1, c2 = bml_coefficients(p1, p2, 0.8)
    cfg = {**PARAMS["opm_ogm"], "form": "code", "q_from": "current", "noise": False, "noise_on": "conv"}
    method = build_method("opm_ogm", cfg, MethodContext(list(MODS), 6, 1))
    out = method.forward(model, inputs, labels)
    method.loss(out, labels).backward()
    method.after_backward(model, out, labels)
    assert method.ctx.logs["k_audio"][0] == pytest.approx(c1, rel=1e-5)
    assert method.ctx.logs["k_visual"][0] == pytest.approx(c2, rel=1e-5)
    q = calcu_q(p1, p2, cfg["q_base"], cfg["lam"]).tolist()
    assert [method.ctx.logs["q_audio"][0], method.ctx.logs["q_visual"][0]] == pytest.approx(q, rel=1e-5)
