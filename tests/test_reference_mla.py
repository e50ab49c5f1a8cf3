"""MLA against the authors' released code.

Transcribed from Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation
@ ab6c184579f9ff390e9c9b8216c9900c2a43545b:

- ``utils/utils.py``: ``GSPlugin.before_update`` (the projector update and gradient projection;
  ``torch.cuda.FloatTensor`` → CPU, the 512-wide identity → the head's width);
- ``main.py``: ``calculate_entropy`` / ``calculate_gating_weights`` (test-time fusion with
  ``--gs_flag --dynamic``, the README's MLA command) and, in ``train_epoch``, the calls
  ``gs_plugin.before_update(model.module.fusion_module.fc_out, a, batch_step, len_dataloader,
  gs_plugin.exp_count)``.

Findings the tests pin down: ``before_update`` projects only a parameter named ``module.weight``,
and the ``nn.Linear`` it is handed names its parameters ``weight``/``bias``, so the released code
never modifies a gradient (our ``gradient_modification: false``, the ``mla__code`` block). When
the branch does run, its update is our ``projection: code``. The code's dynamic fusion weights
are one number per modality and test batch (``fusion_weights: code``); the paper's per-sample
weights (the ``mla`` block) are tested against hand-computed values in test_baselines_a.py.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from pathlib import Path

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.mla import entropy_weights, owm_update
from mmbalance.models import Output

from reference_models import FEATURE_DIM, NUM_CLASSES, pattern

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]


class GSPlugin():
    """MLA@ab6c184 utils/utils.py GSPlugin (device and width changed: CPU, ``dim``)."""

    def __init__(self, dim=FEATURE_DIM):
        with torch.no_grad():
            self.Pl = torch.autograd.Variable(torch.eye(dim))
        self.exp_count = 0

    def before_update(self, model, before_batch_input, batch_index, len_dataloader, train_exp_counter):
        lamda = batch_index / len_dataloader + 1
        alpha = 1.0 * 0.1 ** lamda
        # x_mean = torch.mean(strategy.mb_x, 0, True)
        if train_exp_counter != 0:
            for n, w in model.named_parameters():

                if n == "module.weight":

                    r = torch.mean(before_batch_input, 0, True)
                    k = torch.mm(self.Pl, torch.t(r))
                    self.Pl = torch.sub(self.Pl, torch.mm(k, torch.t(k)) / (alpha + torch.mm(k, r)))

                    pnorm2 = torch.norm(self.Pl.data, p='fro')

                    self.Pl.data = self.Pl.data / pnorm2
                    w.grad.data = torch.mm(w.grad.data, torch.t(self.Pl.data))


def calculate_entropy(output):
    """MLA@ab6c184 main.py (verbatim)."""
    probabilities = F.softmax(output, dim=0)
    # probabilities = F.softmax(output, dim=1)
    log_probabilities = torch.log(probabilities)
    entropy = -torch.sum(probabilities * log_probabilities)
    return entropy


def calculate_gating_weights(encoder_output_1, encoder_output_2):
    """MLA@ab6c184 main.py (verbatim)."""
    entropy_1 = calculate_entropy(encoder_output_1)
    entropy_2 = calculate_entropy(encoder_output_2)

    max_entropy = max(entropy_1, entropy_2)

    gating_weight_1 = torch.exp(max_entropy - entropy_1)
    gating_weight_2 = torch.exp(max_entropy - entropy_2)

    sum_weights = gating_weight_1 + gating_weight_2

    gating_weight_1 /= sum_weights
    gating_weight_2 /= sum_weights

    return gating_weight_1, gating_weight_2


FEATS = {"audio": pattern(4, FEATURE_DIM, phase=0.2, scale=1.3), "visual": pattern(4, FEATURE_DIM, phase=1.9, scale=0.7)}
GRAD = pattern(NUM_CLASSES, FEATURE_DIM, phase=3.0, scale=0.4)  # a head-weight gradient [C, D]

# Recorded from the transcriptions: the projected gradient after three updates (batch 1 of 5; the
# first update is left as is) and the gating weights of OUT_A / OUT_V
REF_PROJECTED = [[0.1268118917942047, 0.044271595776081085, -0.03219447284936905],
                 [-0.1410227119922638, 0.0020259618759155273, 0.11254134774208069],
                 [0.036883555352687836, -0.046623289585113525, -0.09844053536653519]]
REF_GATES = (0.7946689128875732, 0.2053310126066208)


class Named(nn.Module):
    """A head wrapped so that its weight is called ``module.weight`` (what the branch expects)."""

    def __init__(self, head):
        super().__init__()
        self.module = head


def code_updates(wrapped):
    """Three before_update calls (audio, visual, audio) on the head's gradient, as train_epoch does."""
    gs, head = GSPlugin(), nn.Linear(FEATURE_DIM, NUM_CLASSES)
    grads = []
    for m in ("audio", "visual", "audio"):
        head.weight.grad = GRAD.clone()
        gs.before_update(Named(head) if wrapped else head, FEATS[m], 1, 5, gs.exp_count)
        gs.exp_count += 1
        grads.append(head.weight.grad.clone())
    return grads


def head_logits():
    head = nn.Linear(FEATURE_DIM, NUM_CLASSES)
    with torch.no_grad():
        head.weight.copy_(pattern(NUM_CLASSES, FEATURE_DIM, phase=0.5, scale=1.2))
        head.bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
    return head, {m: head(f).detach() for m, f in FEATS.items()}


def test_transcriptions_reproduce_recorded_outputs():
    torch.testing.assert_close(code_updates(wrapped=True)[-1], torch.tensor(REF_PROJECTED), rtol=1e-5, atol=1e-7)
    _, logits = head_logits()
    gates = calculate_gating_weights(logits["audio"], logits["visual"])
    assert [float(g) for g in gates] == pytest.approx(list(REF_GATES), rel=1e-6)


def test_released_code_never_projects():
    """Handed the nn.Linear itself (as train_epoch does), before_update changes no gradient."""
    for g in code_updates(wrapped=False):
        torch.testing.assert_close(g, GRAD)
    cfg = PARAMS["mla__code"]
    assert cfg["gradient_modification"] is False and cfg["fusion_weights"] == "code"


def test_projection_code_form_matches_the_branch():
    ref = code_updates(wrapped=True)
    P, updates, ours = torch.eye(FEATURE_DIM), 0, []
    alpha = 0.1 ** (1 / 5 + 1)  # batch 1 of 5
    for m in ("audio", "visual", "audio"):
        g = GRAD.clone()
        if updates > 0:  # the first call (exp_count 0) is left as is, as in MLA.after_backward
            P = owm_update(P, FEATS[m].mean(0), alpha, "code")
            g = g @ P.t()
        updates += 1
        ours.append(g)
    for o, r in zip(ours, ref):
        torch.testing.assert_close(o, r)


def test_code_fusion_weights_match_calculate_gating_weights():
    head, logits = head_logits()
    g_a, g_v = calculate_gating_weights(logits["audio"], logits["visual"])
    w = entropy_weights(torch.stack([logits["audio"], logits["visual"]]), "code")  # [2, B]
    torch.testing.assert_close(w, torch.stack([g_a.expand(4), g_v.expand(4)]))
    # through the plug-in: prediction = out_a·λ_a + out_v·λ_v (main.py valid, --dynamic)
    method = build_method("mla", {k: v for k, v in PARAMS["mla__code"].items() if k != "method"},
                          MethodContext(["audio", "visual"], NUM_CLASSES, 1))
    method.modules({"audio": FEATURE_DIM, "visual": FEATURE_DIM}, NUM_CLASSES)
    method.head = head
    out = Output(logits=torch.zeros(4, NUM_CLASSES), features=dict(FEATS), unimodal_logits={})
    torch.testing.assert_close(method.predict(out), logits["audio"] * g_a + logits["visual"] * g_v)
    with pytest.raises(ValueError, match="fusion_weights"):
        entropy_weights(torch.zeros(2, 1, 3), "other")
