"""Compute costs (mmbalance.evaluate.costs): FLOPs as FlopCounterMode defines them, parameter
counts, the memory measure on known allocations, and one run's costs on a tiny CPU model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmbalance.evaluate.costs import (
    CostSettings,
    count_flops,
    forward_flops_per_sample,
    held_bytes,
    run_costs,
    step_allocation_peak,
    trainable_parameters,
)
from mmbalance.train.run import build_run

from conftest import INFO, MODEL_CFG, tiny_split

TRAIN = {"epochs": 2, "batch_size": 6, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9}
FAST = CostSettings(warmup_steps=1, rounds=2, steps_per_round=1)


class Identity:
    """A method whose test-time prediction is the model's output."""

    @staticmethod
    def predict(out):
        return out


def test_linear_flops_are_two_per_multiply_add():
    b, i, o = 5, 7, 3
    model = nn.Linear(i, o)
    x = torch.randn(b, i)
    assert count_flops(model, x) == 2 * i * o * b  # the bias add counts 0
    assert forward_flops_per_sample(model, Identity, x, b) == 2 * i * o


def test_trainable_parameters():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    assert trainable_parameters(model) == 4 * 3 + 3 + 3 * 2 + 2
    model[1].weight.requires_grad_(False)
    assert trainable_parameters(model) == 4 * 3 + 3 + 2
    tied = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    tied[1].weight = tied[0].weight
    assert trainable_parameters(tied) == 9  # a shared tensor counts once


def test_allocation_peak_and_held_bytes():
    def step():
        a = torch.ones(1_000_000)  # 4 MB
        b = torch.ones(500_000)  # + 2 MB → 6 MB live
        del a
        c = torch.ones(250_000)  # 3 MB live
        return b, c

    assert step_allocation_peak(step) == 6_000_000
    model = nn.Linear(100, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 100)).sum().backward()
    opt.step()  # gradients + momentum buffers: each as large as the parameters
    assert held_bytes(model, opt) == 3 * 4 * (100 * 10 + 10)


def test_settings_reject_unknown_keys():
    assert CostSettings.from_params({"rounds": 2}).rounds == 2
    with pytest.raises(ValueError, match="unknown keys"):
        CostSettings.from_params({"round": 2})
    with pytest.raises(ValueError, match="rounds"):
        CostSettings.from_params({"rounds": 0})


def test_run_costs_of_saved_models(tmp_path):
    info = {**INFO, "classes": [f"c{i}" for i in range(6)]}
    paths = {}
    for name, method, cfg in (("concat", "concat", {}), ("audio_only", "audio_only", {"modality": "audio"})):
        torch.manual_seed(0)
        _, model = build_run(info, method, cfg, MODEL_CFG, 2)
        paths[name] = tmp_path / name / "seed0.pt"
        paths[name].parent.mkdir()
        torch.save({"state": model.state_dict(), "method": method, "method_cfg": cfg, "model_cfg": MODEL_CFG,
                    "epochs": 2, "seed": 0}, paths[name])
    batch = tiny_split(6, seed=1)
    ref = run_costs(paths["concat"], info, batch, TRAIN, FAST, None)
    uni = run_costs(paths["audio_only"], info, batch, TRAIN, FAST, paths["concat"])
    assert ref["step_ratio"] == 1.0 and ref["batch_size"] == 6
    assert uni["modalities"] == ["audio"] and uni["params"] < ref["params"]
    assert 0 < uni["flops_per_sample"] < ref["flops_per_sample"]
    assert uni["step_ratio"] == pytest.approx(uni["step_ms"] / uni["reference_step_ms"])
    # the weights, gradients and momentum alone take 3 × 4 bytes per parameter
    assert ref["peak_bytes"] > 12 * ref["params"]
