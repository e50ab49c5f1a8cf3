"""MSLR against the only public implementation (in the AGM authors' code).

Transcribed from lihong2303/AGM_ICCV2023 @ 5a65542c70b1c7c15c5df291e77fa9cf2bbb9549,
``run/CREMAD_main.py``: the ``cfgs.methods == "MSLR"`` branch of ``train`` (after backward, the
gradients of ``audio_net``/``audio_cls`` × 0.9·ratio_a and of ``visual_net``/``visual_cls`` ×
1.1·ratio_v) and the ratio update of ``main`` (a five-epoch memory of each modality's accuracy).
The model MSLR trains there is ``model/CREMAD_net.py`` ``AVClassifier_Sum`` (one linear
classifier per modality, logits summed), i.e. our ``fusion: sum``; the optimizer is SGD
(``tasks/CREMAD_task.py``).

Code and paper: the paper's "keep" strategy fixes the scales (our default, ``strategy: keep``);
the code always runs the dynamic update (``strategy: dynamic``). Both are checked. The code
scales gradients, which for plain SGD is the same step as scaling the learning rate (our
parameter groups); with weight decay or momentum the two part (documented in ``mslr.py``).
"""

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmbalance.methods import MethodContext, build_method
from mmbalance.models import MultimodalModel
from mmbalance.models.fusions import SumFusion
from mmbalance.train.loop import build_optimizer

from reference_models import FEATURE_DIM, LABELS, NUM_CLASSES, LinearEncoder, linear_inputs, pattern

LR = 0.1


def sum_model() -> MultimodalModel:
    """The linear reference encoders with the code's late-fusion heads (``audio_cls``, ``visual_cls``)."""
    encoders = {"audio": LinearEncoder(4, FEATURE_DIM, 0.0), "visual": LinearEncoder(5, FEATURE_DIM, 0.3)}
    fusion = SumFusion({m: FEATURE_DIM for m in encoders}, NUM_CLASSES)
    for i, head in enumerate(fusion.heads.values()):
        with torch.no_grad():
            head.weight.copy_(pattern(NUM_CLASSES, FEATURE_DIM, phase=2.0 + i, scale=0.9))
            head.bias.copy_(pattern(NUM_CLASSES, phase=3.0 + i, scale=0.1))
    return MultimodalModel(encoders, fusion)


def code_mslr_step(model, audio_lr_ratio=1.0, visual_lr_ratio=1.0):
    """CREMAD_main.py train, MSLR branch, one batch (names mapped: ``audio_net`` → our audio
    encoder, ``audio_cls`` → the sum fusion's audio head), then ``optimizer.step()``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.0, weight_decay=0.0)
    out = model(linear_inputs()).logits
    loss = nn.CrossEntropyLoss()(out, LABELS)
    audio_lr_init_coeff = 0.9
    visual_lr_init_coeff = 1.1
    mslr_audio_coeff = audio_lr_init_coeff * audio_lr_ratio
    mslr_visual_coeff = visual_lr_init_coeff * visual_lr_ratio
    loss.backward()
    for name, params in model.named_parameters():
        layer = name.replace("encoders.audio", "audio_net").replace("fusion.heads.audio", "audio_cls") \
                    .replace("encoders.visual", "visual_net").replace("fusion.heads.visual", "visual_cls").split('.')[0]
        if 'audio_net' in layer or 'audio_cls' in layer:
            params.grad = params.grad * mslr_audio_coeff
        if 'visual_net' in layer or 'visual_cls' in layer:
            params.grad = params.grad * mslr_visual_coeff
    optimizer.step()


def code_ratio_updates(accuracies):
    """CREMAD_main.py main: the ratios in effect for each epoch, given per-epoch (acc_a, acc_v)."""
    audio_lr_ratio, visual_lr_ratio = 1.0, 1.0
    audio_lr_memory, visual_lr_memory = [], []
    ratios = []
    for accuracy_a, accuracy_v in accuracies:
        ratios.append((audio_lr_ratio, visual_lr_ratio))
        if len(audio_lr_memory) < 5:
            audio_lr_memory.append(accuracy_a)
            visual_lr_memory.append(accuracy_v)
        else:
            audio_lr_ratio = accuracy_a / np.mean(audio_lr_memory)
            visual_lr_ratio = accuracy_v / np.mean(visual_lr_memory)
            audio_lr_memory = audio_lr_memory[1:]
            visual_lr_memory = visual_lr_memory[1:]
            audio_lr_memory.append(accuracy_a)
            visual_lr_memory.append(accuracy_v)
    return ratios


ACCS = [(0.40, 0.20), (0.45, 0.22), (0.50, 0.21), (0.52, 0.25), (0.55, 0.24), (0.60, 0.30), (0.58, 0.35), (0.61, 0.33)]
# recorded from code_ratio_updates(ACCS): the ratios in effect in epochs 6 and 7
REF_RATIOS = [(1.2396694214876034, 1.3392857142857142), (1.1068702290076335, 1.4344262295081966)]


def ours_step(cfg, ratio=None):
    model = sum_model()
    method = build_method("mslr", cfg, MethodContext(["audio", "visual"], NUM_CLASSES, 10))
    if ratio:
        method.ratio = dict(ratio)
    opt = build_optimizer(method.param_groups(model, {"lr": LR}), {"lr": LR, "momentum": 0.0})
    torch.nn.functional.cross_entropy(model(linear_inputs()).logits, LABELS).backward()
    opt.step()
    return model


def test_transcription_reproduces_recorded_ratios():
    np.testing.assert_allclose(code_ratio_updates(ACCS)[6:], REF_RATIOS, rtol=1e-12)


def test_keep_step_matches_released_code_with_unit_ratios():
    """``strategy: keep`` with the code's CREMA-D scales is the code's step before its first update."""
    ref = sum_model()
    code_mslr_step(ref)
    ours = ours_step({"strategy": "keep", "scales": {"audio": 0.9, "visual": 1.1}})
    for (n, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), msg=n)


def test_dynamic_ratios_and_step_match_released_code():
    """``strategy: dynamic``: the same ratios per epoch, and the step taken with them."""
    method = build_method("mslr", {"strategy": "dynamic", "scales": {"audio": 0.9, "visual": 1.1}, "window": 5},
                          MethodContext(["audio", "visual"], NUM_CLASSES, 10))

    class _Trainer:
        splits, cfg = {"val": None}, {"lr": LR}
        model = sum_model()
        optimizer = build_optimizer(method.param_groups(model, {"lr": LR}), {"lr": LR, "momentum": 0.0})

        def evaluate(self, split):
            return {"probe_acc": dict(zip(("audio", "visual"), ACCS[epoch]))}

    trainer, ours = _Trainer(), []
    for epoch in range(len(ACCS)):
        ours.append((method.ratio["audio"], method.ratio["visual"]))
        method.on_epoch_end(epoch, trainer)
    np.testing.assert_allclose(ours, code_ratio_updates(ACCS), rtol=1e-12)
    ref = sum_model()
    code_mslr_step(ref, *REF_RATIOS[1])
    stepped = ours_step({"strategy": "dynamic", "scales": {"audio": 0.9, "visual": 1.1}},
                        ratio=dict(zip(("audio", "visual"), REF_RATIOS[1])))
    for (n, p), q in zip(stepped.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), msg=n)
