"""ReconBoost against the authors' released code.

Transcribed from huacong/ReconBoost @ 14ab57ac26e0ad7badb29c4e08ec4ca9d4bb0932: ``train.py``
``main`` (the stage loop: ``epochs_per_stage`` boosting epochs of the picked modality with
``boosting_loss``, then ``correct_epoch`` epochs of CE on ``net_ensemble.forward_grad``),
``models/dynamic_net.py`` ``DynamicNet.forward`` (the detached ensemble of the other learners,
times ``boost_rate``) and ``schedule.py`` ``schedule_model`` (fixed mode, CREMA-D/AVE). README
settings: ``--weight1 5`` (CREMA-D), ``--weight2 1``, ``--boost_rate 1.0``, 4 + 4 epochs per stage.
"""

import pytest
import torch
import yaml
from pathlib import Path

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.reconboost import boosting_loss

from reference_models import LABELS, NUM_CLASSES, linear_inputs, linear_model

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]


def code_boosting_loss(out_obj, out_join, lbl, weight1, weight2, n_class=NUM_CLASSES):
    """train.py main, phase 1 (verbatim but for ``.cuda()``): per-sample loss, [B]."""
    batch_size = out_obj.shape[0]
    target = torch.zeros(batch_size, n_class).scatter_(1, lbl.view(-1, 1), 1)
    boosting_loss = - weight1 * (target * out_obj.log_softmax(1)).mean(-1) \
        + weight2 * (target * out_join.detach().softmax(1) * out_obj.log_softmax(1)).mean(-1)
    return boosting_loss


def ensemble_forward(preds: dict, mask_model, boost_rate=1.0):
    """DynamicNet.forward: Σ of the other learners' outputs (no gradient) × boost_rate."""
    prediction = None
    with torch.no_grad():
        for m_name, pred in preds.items():
            if m_name == mask_model:
                continue
            prediction = pred if prediction is None else prediction + pred
    return boost_rate * prediction


def schedule_model(stage, dataset="CREMAD"):
    """schedule.py, fixed mode, CREMA-D / AVE branch."""
    if stage % 2 == 0:
        return "audio"
    else:
        return "visual"


# recorded from code_boosting_loss(...).mean() on the reference model, weight1 5 / weight2 1
REF_LOSS = {"audio": 2.676419258117676, "visual": 1.8326952457427979}


def _learners():
    model = linear_model(audio_scale=2.0)
    with torch.no_grad():
        out = model(linear_inputs())
    return model, out.unimodal_logits


@pytest.mark.parametrize("active", ["audio", "visual"])
def test_boosting_loss_matches_released_code(active):
    _, preds = _learners()
    w1, w2 = PARAMS["reconboost"]["weight1"], PARAMS["reconboost"]["weight2"]
    join = ensemble_forward(preds, mask_model=active)
    ref = code_boosting_loss(preds[active], join, LABELS, w1, w2).mean()
    assert float(ref) == pytest.approx(REF_LOSS[active], rel=1e-6)
    others = sum(z for m, z in preds.items() if m != active)
    assert float(boosting_loss(preds[active], others, LABELS, w1, w2)) == pytest.approx(float(ref), rel=1e-6)


def test_boosting_gradient_matches_released_code():
    """The gradient reaching the active learner's logits, and none reaching the others'."""
    _, preds = _learners()
    za, zv = preds["audio"].clone().requires_grad_(), preds["visual"].clone().requires_grad_()
    code_boosting_loss(za, ensemble_forward({"visual": zv}, "audio"), LABELS, 5.0, 1.0).mean().backward()
    ga = za.grad.clone()
    za.grad = None
    boosting_loss(za, zv, LABELS, 5.0, 1.0).backward()
    torch.testing.assert_close(za.grad, ga)
    assert zv.grad is None


def test_method_loss_in_a_boosting_epoch_is_the_code_loss():
    """The plug-in's loss in a boosting phase of ``visual`` equals the code's with the audio learner
    as the fixed ensemble."""
    model, preds = _learners()
    method = build_method("reconboost", {**PARAMS["reconboost"], "warmup_epochs": 0}, MethodContext(["audio", "visual"], NUM_CLASSES, 40))
    method.phase = method.phase_of(8)  # stage 1 (the second), boosting: visual
    assert method.phase[:2] == ("boost", "visual")
    out = model(linear_inputs())
    assert float(method.loss(out, LABELS).detach()) == pytest.approx(REF_LOSS["visual"], rel=1e-6)


def test_stage_schedule_matches_released_code():
    """Stage s: ``epochs_per_stage`` boosting epochs of schedule_model(s), then ``correct_epoch``
    correction epochs (our warm-up replaces the code's pre-trained unimodal checkpoints)."""
    cfg = {**PARAMS["reconboost"], "warmup_epochs": 0}
    method = build_method("reconboost", cfg, MethodContext(["audio", "visual"], NUM_CLASSES, 40))
    code = [(kind, schedule_model(stage)) for stage in range(4)
            for kind, n in (("boost", cfg["stage_epochs"]), ("correct", cfg["correct_epochs"])) for _ in range(n)]
    assert [method.phase_of(e)[:2] for e in range(len(code))] == code
