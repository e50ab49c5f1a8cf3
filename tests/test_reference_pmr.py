"""PMR against the authors' released code.

Transcribed from fanyunfeng-bit/Modal-Imbalance-PMR @ 3615e48983555089b0e693380087617c3797a641,
``main_Prototype_grad.py``: ``EU_dist`` and ``calculate_prototype`` (verbatim but for the dataset
switch and the device), the ``args.modulation == 'Proto'`` branch of ``train_epoch`` (scores,
ρ_p, β/λ and the loss) and the prototype schedule of ``main`` (before epoch 0, then after every
epoch with that epoch's number). CREMA-D settings from the repository's README / ``bash.sh``:
α 2.0, ``momentum_coef`` 0 (the schedule is also checked with a non-zero momentum).
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from pathlib import Path

from mmbalance.methods import MethodContext, build_method

from reference_models import FEATURE_DIM, NUM_CLASSES, linear_inputs, linear_model, pattern

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["methods"]
MODS = ["audio", "visual"]


def EU_dist(x1, x2):
    """Modal-Imbalance-PMR@3615e48 main_Prototype_grad.py (verbatim)."""
    d_matrix = torch.zeros(x1.shape[0], x2.shape[0]).to(x1.device)
    for i in range(x1.shape[0]):
        for j in range(x2.shape[0]):
            d = torch.sqrt(torch.dot((x1[i] - x2[j]), (x1[i] - x2[j])))
            d_matrix[i, j] = d
    return d_matrix


def calculate_prototype(model, dataloader, epoch, momentum_coef, a_proto=None, v_proto=None):
    """Modal-Imbalance-PMR@3615e48 main_Prototype_grad.py calculate_prototype (n_classes and
    embed_dim from the linear model; ``model(spec, image)`` → our encoders)."""
    n_classes, embed_dim = NUM_CLASSES, FEATURE_DIM
    audio_prototypes = torch.zeros(n_classes, embed_dim)
    visual_prototypes = torch.zeros(n_classes, embed_dim)
    count_class = [0 for _ in range(n_classes)]

    model.eval()
    with torch.no_grad():
        sample_count = 0
        all_num = len(dataloader)
        for step, (inputs, label) in enumerate(dataloader):
            feats = model.encode(inputs)
            a, v = feats["audio"], feats["visual"]

            for c, l in enumerate(label):
                l = l.long()
                count_class[l] += 1
                audio_prototypes[l, :] += a[c, :]
                visual_prototypes[l, :] += v[c, :]

            sample_count += 1
            if sample_count >= all_num // 10:
                break
    for c in range(audio_prototypes.shape[0]):
        audio_prototypes[c, :] /= count_class[c]
        visual_prototypes[c, :] /= count_class[c]

    if epoch <= 0:
        audio_prototypes = audio_prototypes
        visual_prototypes = visual_prototypes
    else:
        audio_prototypes = (1 - momentum_coef) * audio_prototypes + momentum_coef * a_proto
        visual_prototypes = (1 - momentum_coef) * visual_prototypes + momentum_coef * v_proto
    return audio_prototypes, visual_prototypes


def proto_loss(a, v, out, label, audio_proto, visual_proto, alpha):
    """Modal-Imbalance-PMR@3615e48 main_Prototype_grad.py train_epoch, the 'Proto' branch."""
    criterion = nn.CrossEntropyLoss()
    softmax = nn.Softmax(dim=1)
    audio_sim = -EU_dist(a, audio_proto)  # B x n_class
    visual_sim = -EU_dist(v, visual_proto)  # B x n_class
    score_a_p = sum([softmax(audio_sim)[i][label[i]] for i in range(audio_sim.size(0))])
    score_v_p = sum([softmax(visual_sim)[i][label[i]] for i in range(visual_sim.size(0))])
    ratio_a_p = score_a_p / score_v_p

    loss_proto_a = criterion(audio_sim, label)
    loss_proto_v = criterion(visual_sim, label)

    if ratio_a_p > 1:
        beta = 0  # audio coef
        lam = 1 * alpha  # visual coef
    elif ratio_a_p < 1:
        beta = 1 * alpha
        lam = 0
    else:
        beta = 0
        lam = 0
    loss = criterion(out, label) + beta * loss_proto_a + lam * loss_proto_v
    return loss, float(ratio_a_p.detach())


def batches(n_batches=25, size=2):
    """A fixed training 'loader': batch k holds two patterned clips, labels cycling over 3 classes."""
    out = []
    for k in range(n_batches):
        inputs = {m: pattern(size, x.shape[1], phase=0.37 * k + i) for i, (m, x) in enumerate(linear_inputs().items())}
        out.append((inputs, torch.tensor([(2 * k) % 3, (2 * k + 1) % 3])))
    return out


class FakeTrainer:
    """What PMR's on_epoch_start reads: the model, the train split size, the batch size, batches."""

    def __init__(self, model, data):
        self.model, self.data = model, data
        self.splits = {"train": [None] * sum(len(y) for _, y in data)}
        self.cfg = {"batch_size": len(data[0][1])}

    def batches(self, split, train=True):
        return iter(self.data)


# Prototypes recorded from calculate_prototype: 25 batches → the first 25 // 10 = 2 (4 clips)
REF_AUDIO_PROTO = [[0.08542454242706299, 0.07286381721496582, 0.11220353841781616],
                   [-1.5277775526046753, 1.7218202352523804, -1.4918687343597412],
                   [1.6860264539718628, -1.3208955526351929, 1.2309614419937134]]
REF_LOSS = 6.462161064147949  # fused CE + 2·PCE_v (ρ_p > 1: visual is the slow modality)
REF_RHO_P = 2.558858871459961


def test_transcription_reproduces_recorded_outputs():
    model, data = linear_model(), batches()
    a_p, v_p = calculate_prototype(model, data, 0, 0.0)
    np.testing.assert_allclose(a_p.numpy(), REF_AUDIO_PROTO, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        out = model(linear_inputs())
        loss, rho = proto_loss(out.features["audio"], out.features["visual"], out.logits, torch.tensor([0, 1, 2, 0]), a_p, v_p, 2.0)
    assert float(loss) == pytest.approx(REF_LOSS, rel=1e-6) and rho == pytest.approx(REF_RHO_P, rel=1e-6)


def test_prototypes_and_loss_match_released_code():
    labels = torch.tensor([0, 1, 2, 0])
    ref_model, model, data = linear_model(), linear_model(), batches()
    a_p, v_p = calculate_prototype(ref_model, data, 0, 0.0)
    ref_model.train()
    out = ref_model(linear_inputs())
    ref_loss, _ = proto_loss(out.features["audio"], out.features["visual"], out.logits, labels, a_p, v_p, PARAMS["pmr"]["alpha"])
    ref_loss.backward()

    method = build_method("pmr", PARAMS["pmr"], MethodContext(list(MODS), NUM_CLASSES, 10))
    method.on_epoch_start(0, FakeTrainer(model, data))
    torch.testing.assert_close(method.protos["audio"], a_p)
    torch.testing.assert_close(method.protos["visual"], v_p)
    out = method.forward(model, linear_inputs(), labels)
    loss = method.loss(out, labels)
    assert float(loss.detach()) == pytest.approx(REF_LOSS, rel=1e-5)
    loss.backward()
    for (n, p), (_, q) in zip(model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_prototype_momentum_schedule_matches_released_code():
    """main: calculate_prototype(…, epoch=0) before training, then after epoch e with epoch=e;
    the momentum is skipped while that argument is 0 (our on_epoch_start 0 and 1)."""
    mu = 0.3
    ref_model, model = linear_model(), linear_model()
    method = build_method("pmr", {**PARAMS["pmr"], "momentum_coef": mu}, MethodContext(list(MODS), NUM_CLASSES, 10))
    a_p = v_p = None
    for epoch in range(4):
        data = batches()[epoch:] + batches()[:epoch]  # a different first 10 % each time
        # the estimate before our epoch `epoch` is the code's call after epoch − 1 (0 before training)
        a_p, v_p = calculate_prototype(ref_model, data, max(epoch - 1, 0), mu, a_p, v_p)
        method.on_epoch_start(epoch, FakeTrainer(model, data))
        torch.testing.assert_close(method.protos["audio"], a_p, msg=str(epoch))
        torch.testing.assert_close(method.protos["visual"], v_p, msg=str(epoch))
