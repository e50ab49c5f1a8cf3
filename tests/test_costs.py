"""Compute costs (mmbalance.evaluate.costs): FLOPs as FlopCounterMode defines them, parameter
counts, the memory measure on known allocations, and one run's costs on a tiny CPU model."""

from __future__ import annotations

import statistics

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
    step_trainer,
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
    # the median of the rounds' ratios; 2 rounds are too few for a 95 % interval
    assert len(uni["step_ratios"]) == FAST.rounds and uni["step_ratio"] == statistics.median(uni["step_ratios"])
    assert uni["step_ratio_ci"] is None and "step_ratios" not in ref  # the reference is timed alone
    # the weights, gradients and momentum alone take 3 × 4 bytes per parameter
    assert ref["peak_bytes"] > 12 * ref["params"]


def test_each_run_steps_with_its_own_optimizer(tmp_path):
    """A run trained with AdamW (the Swin runs) is timed with AdamW, its reference with SGD."""
    info = {**INFO, "classes": [f"c{i}" for i in range(6)]}
    path = tmp_path / "concat" / "seed0.pt"
    path.parent.mkdir()
    _, model = build_run(info, "concat", {}, MODEL_CFG, 2)
    torch.save({"state": model.state_dict(), "method": "concat", "method_cfg": {}, "model_cfg": MODEL_CFG,
                "epochs": 2, "seed": 0}, path)
    batch = tiny_split(6, seed=1)
    adamw = {**TRAIN, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05}
    assert isinstance(step_trainer(path, info, batch, adamw).optimizer, torch.optim.AdamW)
    assert isinstance(step_trainer(path, info, batch, TRAIN).optimizer, torch.optim.SGD)
    out = run_costs(path, info, batch, adamw, FAST, path, TRAIN)
    # AdamW holds two moments per parameter where SGD holds one momentum buffer
    assert out["peak_bytes"] > 16 * out["params"]


def test_run_train_settings_come_from_each_runs_params_file(tmp_path):
    import importlib.util
    from pathlib import Path

    import yaml

    spec = importlib.util.spec_from_file_location("costs_stage", Path(__file__).parents[1] / "stages" / "costs.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    train = {**TRAIN, "weight_decay": 1e-4}
    # the dataset's file of the run-params stage: {run: that run's params file body}
    (tmp_path / "cremad.yaml").write_text(yaml.safe_dump({
        "concat": {"train": train, "methods": {"concat": {}}},
        "arl__swin": {"train": train, "methods": {"arl__swin": {"method": "arl", "train": {"optimizer": "adamw", "lr": 0.001}}}}}))
    cfg = stage._run_train(tmp_path / "cremad.yaml", ["concat", "arl__swin"], "cremad")
    assert cfg["concat"]["optimizer"] == "sgd"
    assert cfg["arl__swin"]["optimizer"] == "adamw" and cfg["arl__swin"]["lr"] == 0.001
    with pytest.raises(SystemExit, match="no params of run 'missing'"):
        stage._run_train(tmp_path / "cremad.yaml", ["missing"], "cremad")


def test_round_ratios_pair_each_round():
    from mmbalance.evaluate.costs import round_ratios

    # 2 rounds of 3 steps per side: round medians 2.0 / 1.0 and 3.0 / 2.0
    assert round_ratios([2.0, 9.0, 1.0, 3.0, 3.0, 3.0], [1.0, 1.0, 5.0, 2.0, 1.0, 2.0], 3) == [2.0, 1.5]


def test_median_ratio_interval_is_two_order_statistics():
    from mmbalance.evaluate.costs import median_ratio

    # 16 ratios: P(Binomial(16, 1/2) <= 3) = 697/65536, so the 4th and 13th smallest cover the
    # median with 1 - 2 * 0.0106 = 97.9 % (the 5th and 12th: only 92.3 %)
    ratios = [1.0 + i / 100 for i in (7, 3, 15, 0, 11, 5, 9, 1, 13, 2, 14, 6, 10, 4, 12, 8)]
    mid, ci = median_ratio(ratios)
    assert mid == pytest.approx(1.075) and ci == pytest.approx([1.03, 1.12])
    # 6 ratios: the extremes cover it with 1 - 2/64 = 96.9 %; 5 ratios: 1 - 2/32 < 95 %, no interval
    assert median_ratio([1.2, 0.9, 1.0, 1.1, 1.05, 0.95]) == (pytest.approx(1.025), pytest.approx([0.9, 1.2]))
    assert median_ratio([1.2, 0.9, 1.0, 1.1, 1.05]) == (1.05, None)


def test_report_refuses_a_malformed_step_ratio_ci():
    from mmbalance.report.tables import summarize_costs

    good = summarize_costs({"dataset": "ds", "runs": {"a": {"step_ratio": 1.1, "step_ratio_ci": [0.9, 1.3]}}})
    assert good.runs["a"].step_ratio_ci == (0.9, 1.3)
    with pytest.raises(ValueError, match=r"step_ratio_ci must be \[low, high\]"):
        summarize_costs({"dataset": "ds", "runs": {"a": {"step_ratio": 1.1, "step_ratio_ci": 0.9}}})
