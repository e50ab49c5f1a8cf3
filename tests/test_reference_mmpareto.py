"""MMPareto against the authors' released code.

Transcribed from GeWu-Lab/MMPareto_ICML2024 @ a339db39cc25b157df376b50bb894917dc6c01d6:
``code/MMPareto.py`` ``train_epoch`` (one step: the three backward passes, the cosines, the
weights, γ = 1.5 and the per-tensor magnitude rule) and ``code/min_norm_solvers.py``
``MinNormSolver._min_norm_element_from2`` (the two-task MGDA solution it reaches for two
gradients), on the linear reference model: the code's ``AVClassifier`` has ``audio_net``,
``visual_net``, a concat ``head`` and the unimodal heads ``head_audio`` / ``head_video``.
"""

import copy
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from pathlib import Path

from mmbalance.methods import MethodContext, build_method

from reference_models import FEATURE_DIM, LABELS, NUM_CLASSES, linear_inputs, linear_model, pattern

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]


def _min_norm_element_from2(v1v1, v1v2, v2v2):
    """MMPareto_ICML2024@a339db3 code/min_norm_solvers.py (verbatim)."""
    if v1v2 >= v1v1:
        gamma = 0.999
        cost = v1v1
        return gamma, cost
    if v1v2 >= v2v2:
        gamma = 0.001
        cost = v2v2
        return gamma, cost
    gamma = -1.0 * ((v1v2 - v2v2) / (v1v1 + v2v2 - 2 * v1v2))
    cost = v2v2 + gamma * (v1v2 - v2v2)
    return gamma, cost


def find_min_norm_element(vecs):
    """``find_min_norm_element`` for two vectors: ``_min_norm_2d`` over the pair (0, 1) and its
    ``n < 3`` early return, [c, 1 − c]. ``vecs[i]`` is the code's list of per-tensor gradients
    plus their concatenation (the dict's ``"concat"`` entry, so every product counts twice)."""
    dot = lambda a, b: sum(float(torch.mul(x, y).sum()) for x, y in zip(a, b))
    c, d = _min_norm_element_from2(dot(vecs[0], vecs[0]), dot(vecs[0], vecs[1]), dot(vecs[1], vecs[1]))
    return [c, 1 - c], d


class CodeModel(nn.Module):
    """The code's parameter names around our linear encoders: ``audio_net``, ``visual_net``,
    ``head`` (concat), ``head_audio``, ``head_video``."""

    def __init__(self, ours):
        super().__init__()
        self.audio_net = copy.deepcopy(ours.encoders["audio"])
        self.visual_net = copy.deepcopy(ours.encoders["visual"])
        self.head = copy.deepcopy(ours.fusion.head)
        self.head_audio = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.head_video = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, spec, image):
        a, v = self.audio_net(spec), self.visual_net(image)
        return self.head(torch.cat([a, v], 1)), self.head_audio(a), self.head_video(v)


def code_step(model, spec, images, label):
    """``train_epoch``'s body for one batch, up to (not including) ``optimizer.step()``."""
    criterion = nn.CrossEntropyLoss()
    record_names_audio, record_names_visual = [], []
    for name, param in model.named_parameters():
        if 'head' in name:
            continue
        if ('audio' in name):
            record_names_audio.append((name, param))
            continue
        if ('visual' in name):
            record_names_visual.append((name, param))
            continue
    model.zero_grad()
    out, out_a, out_v = model(spec.float(), images.float())
    loss_mm = criterion(out, label)
    loss_a = criterion(out_a, label)
    loss_v = criterion(out_v, label)
    losses = [loss_mm, loss_a, loss_v]
    all_loss = ['both', 'audio', 'visual']
    grads_audio, grads_visual = {}, {}
    for idx, loss_type in enumerate(all_loss):
        loss = losses[idx]
        loss.backward(retain_graph=True)
        if (loss_type == 'visual'):
            for tensor_name, param in record_names_visual:
                grads_visual.setdefault(loss_type, {})[tensor_name] = param.grad.data.clone()
            grads_visual[loss_type]["concat"] = torch.cat([grads_visual[loss_type][t].flatten() for t, _ in record_names_visual])
        elif (loss_type == 'audio'):
            for tensor_name, param in record_names_audio:
                grads_audio.setdefault(loss_type, {})[tensor_name] = param.grad.data.clone()
            grads_audio[loss_type]["concat"] = torch.cat([grads_audio[loss_type][t].flatten() for t, _ in record_names_audio])
        else:
            for tensor_name, param in record_names_audio:
                grads_audio.setdefault(loss_type, {})[tensor_name] = param.grad.data.clone()
            grads_audio[loss_type]["concat"] = torch.cat([grads_audio[loss_type][t].flatten() for t, _ in record_names_audio])
            for tensor_name, param in record_names_visual:
                grads_visual.setdefault(loss_type, {})[tensor_name] = param.grad.data.clone()
            grads_visual[loss_type]["concat"] = torch.cat([grads_visual[loss_type][t].flatten() for t, _ in record_names_visual])
        model.zero_grad()
    this_cos_audio = F.cosine_similarity(grads_audio['both']["concat"], grads_audio['audio']["concat"], dim=0)
    this_cos_visual = F.cosine_similarity(grads_visual['both']["concat"], grads_visual['visual']["concat"], dim=0)
    audio_task, visual_task = ['both', 'audio'], ['both', 'visual']
    audio_k, visual_k = [0, 0], [0, 0]
    if (this_cos_audio > 0):
        audio_k[0] = 0.5
        audio_k[1] = 0.5
    else:
        audio_k, min_norm = find_min_norm_element([list(grads_audio[t].values()) for t in audio_task])
    if (this_cos_visual > 0):
        visual_k[0] = 0.5
        visual_k[1] = 0.5
    else:
        visual_k, min_norm = find_min_norm_element([list(grads_visual[t].values()) for t in visual_task])
    gamma = 1.5
    loss = loss_mm + loss_a + loss_v
    loss.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            layer = re.split('[_.]', str(name))
            if ('head' in layer):
                continue
            if ('audio' in layer):
                three_norm = torch.norm(param.grad.data.clone())
                new_grad = 2 * audio_k[0] * grads_audio['both'][name] + 2 * audio_k[1] * grads_audio['audio'][name]
                new_norm = torch.norm(new_grad)
                diff = three_norm / new_norm
                if (diff > 1):
                    param.grad = diff * new_grad * gamma
                else:
                    param.grad = new_grad * gamma
            if ('visual' in layer):
                three_norm = torch.norm(param.grad.data.clone())
                new_grad = 2 * visual_k[0] * grads_visual['both'][name] + 2 * visual_k[1] * grads_visual['visual'][name]
                new_norm = torch.norm(new_grad)
                diff = three_norm / new_norm
                if (diff > 1):
                    param.grad = diff * new_grad * gamma
                else:
                    param.grad = new_grad * gamma
    return {"cos": (float(this_cos_audio), float(this_cos_visual)), "k": (list(audio_k), list(visual_k))}


def models():
    """Our model + method (own unimodal heads with patterned weights) and the code's twin."""
    ours = linear_model(audio_scale=2.0)
    method = build_method("mmpareto", PARAMS["mmpareto"], MethodContext(["audio", "visual"], NUM_CLASSES, 10))
    ours.method_modules.update(method.modules(ours.feature_dims, NUM_CLASSES))
    code = CodeModel(ours)
    for i, m in enumerate(("audio", "visual")):
        head = ours.method_modules[f"uni_head_{m}"]
        with torch.no_grad():
            head.weight.copy_(pattern(NUM_CLASSES, FEATURE_DIM, phase=4.0 + 2.1 * i, scale=1.3))
            head.bias.copy_(pattern(NUM_CLASSES, phase=5.0 + i, scale=0.2))
        twin = code.head_audio if m == "audio" else code.head_video
        twin.load_state_dict(head.state_dict())
    return method, ours, code


# recorded from code_step on models(): the visual gradients conflict (MGDA weights), audio do not
REF_COS = (0.6802281737327576, -0.8379146456718445)
REF_VISUAL_K = [0.2847823061565902, 0.7152176938434098]
REF_AUDIO_WEIGHT_GRAD_ROW0 = [1.095200538635254, 1.7243403196334839, 1.4746677875518799, 0.4734291434288025]
REF_VISUAL_BIAS_GRAD = [0.3695458173751831, 0.16543766856193542, -0.12298592925071716]


def test_transcription_reproduces_recorded_outputs():
    _, _, code = models()
    inputs = linear_inputs()
    rec = code_step(code, inputs["audio"], inputs["visual"], LABELS)
    assert rec["cos"] == pytest.approx(REF_COS, rel=1e-5)
    assert rec["k"][0] == [0.5, 0.5] and rec["k"][1] == pytest.approx(REF_VISUAL_K, rel=1e-5)
    assert code.audio_net.lin.weight.grad[0].tolist() == pytest.approx(REF_AUDIO_WEIGHT_GRAD_ROW0, rel=1e-5)
    assert code.visual_net.lin.bias.grad.tolist() == pytest.approx(REF_VISUAL_BIAS_GRAD, rel=1e-5)


def test_encoder_gradients_match_released_code():
    """Every parameter's gradient after ``after_backward`` equals the code's after its update
    loop: the Pareto-integrated encoders and the plain gradients of the heads."""
    method, ours, code = models()
    inputs = linear_inputs()
    code_step(code, inputs["audio"], inputs["visual"], LABELS)
    out = method.forward(ours, inputs, LABELS)
    method.loss(out, LABELS).backward()
    method.after_backward(ours, out, LABELS)
    pairs = {"encoders.audio.lin": "audio_net.lin", "encoders.visual.lin": "visual_net.lin", "fusion.head": "head",
             "method_modules.uni_head_audio": "head_audio", "method_modules.uni_head_visual": "head_video"}
    theirs = dict(code.named_parameters())
    for name, p in ours.named_parameters():
        prefix, leaf = name.rsplit(".", 1)
        torch.testing.assert_close(p.grad, theirs[f"{pairs[prefix]}.{leaf}"].grad, rtol=1e-5, atol=1e-7, msg=name)
    assert method.ctx.logs["w_mm_visual"] == [pytest.approx(REF_VISUAL_K[0], rel=1e-5)]
    assert method.ctx.logs["conflict_audio"] == [0.0] and method.ctx.logs["conflict_visual"] == [1.0]


def uniform_baseline_loss(out, out_a, out_v, label):
    """MMPareto_ICML2024@a339db3 code/uniform_baseline.py train_epoch, the loss of one batch."""
    criterion = nn.CrossEntropyLoss()
    loss_mm = criterion(out, label)
    loss_a = criterion(out_a, label)
    loss_v = criterion(out_v, label)
    loss = loss_mm + loss_a + loss_v
    return loss


def test_unimodal_loss_own_heads_is_the_uniform_baseline():
    """``unimodal_loss`` with ``unimodal_head: own`` is MMPareto's uniform baseline (concat head
    plus a linear head per modality), gradients included."""
    _, ours, code = models()
    method = build_method("unimodal_loss", {"weight": 1.0, "unimodal_head": "own"}, MethodContext(["audio", "visual"], NUM_CLASSES, 10))
    ours.method_modules.update(method.modules(ours.feature_dims, NUM_CLASSES))
    method.heads["audio"].load_state_dict(code.head_audio.state_dict())
    method.heads["visual"].load_state_dict(code.head_video.state_dict())
    inputs = linear_inputs()
    ref = uniform_baseline_loss(*code(inputs["audio"], inputs["visual"]), LABELS)
    ref.backward()
    loss = method.loss(method.forward(ours, inputs, LABELS), LABELS)
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    loss.backward()
    torch.testing.assert_close(ours.encoders["audio"].lin.weight.grad, code.audio_net.lin.weight.grad)
    torch.testing.assert_close(method.heads["visual"].weight.grad, code.head_video.weight.grad)
