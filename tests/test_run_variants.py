"""Run variants of the OPM/OGM paper's configuration tables (TPAMI 2024 Tab. 1, 3, 10, 14, 15):
``train_scale`` on the train settings, and every variant run of params.yaml building and taking a
training step through the loop."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mmbalance.methods import MethodContext, build_method
from mmbalance.models import build_model
from mmbalance.params import load_params, resolve_run, scale_train
from mmbalance.report.papers import run_label
from mmbalance.train.loop import Trainer

from conftest import IN_CHANNELS, MODEL_CFG, tiny_split

PARAMS = load_params(Path(__file__).parents[1] / "params.yaml")
TRAIN = {"epochs": 1, "batch_size": 6, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9}
# Tab. 1 (train settings), Tab. 3 (MMTM), Tab. 10 (multi-layer head), Tab. 14 (bias split), Tab. 15 (ρ, z)
TABLE_RUNS = ["concat__lr0_1", "concat__lr0_01", "concat__batch2", "concat__batch4", "opm__mmtm", "ogm__mmtm",
              "concat__mlp", "opm__mlp", "ogm__mlp"] + [f"{m}__{s}" for m in ("opm", "ogm")
                                                        for s in ("bias0", "bias1", "bias13", "bias23", "sigmoid", "diff", "diff_sigmoid")]


def params_with(run_block: dict) -> dict:
    return {"methods": {"v": run_block}, "model": {"fusion": "concat"}}


def test_train_scale_by_hand():
    """lr 0.01 × 0.1 = 0.001; batch 64 × 2 = 128 (a whole number); other settings unchanged;
    the method never sees ``train_scale``."""
    params = params_with({"method": "concat", "train_scale": {"lr": 0.1, "batch_size": 2}})
    train = {"lr": 0.01, "batch_size": 64, "epochs": 20}
    got = scale_train(params, "v", train)
    assert got == {"lr": pytest.approx(0.001), "batch_size": 128, "epochs": 20}
    assert isinstance(got["batch_size"], int) and train["batch_size"] == 64  # the input is not changed
    assert scale_train(params_with({"method": "concat", "train_scale": {"batch_size": 0.3}}), "v", {"batch_size": 6}) == {"batch_size": 2}
    method, cfg, _ = resolve_run(params, "v")
    assert method == "concat" and cfg == {}
    assert scale_train(params_with({}), "v", train) == train  # no train_scale: the train block itself


@pytest.mark.parametrize("block, message", [
    ({"train_scale": {"momentum": 2.0}}, r"methods\.v\.train_scale\.momentum: train\.momentum is None, not a number"),
    ({"train_scale": {"optimizer": 2.0}}, r"train\.optimizer is 'sgd', not a number"),
    ({"train_scale": {"lr": 0}}, r"methods\.v\.train_scale\.lr must be a positive number; got 0"),
    ({"train_scale": {"lr": "x"}}, r"must be a positive number; got 'x'"),
])
def test_train_scale_errors_name_the_run(block, message):
    with pytest.raises(ValueError, match=message):
        scale_train(params_with(block), "v", {"lr": 0.01, "optimizer": "sgd"})


def test_table_one_runs_are_the_papers_factors():
    """|B_t| 32 → 64 → 128 and η 1e-3 → 1e-4 → 1e-5 are ×2, ×4 and ×0.1, ×0.01 of the recipe."""
    train = PARAMS["train"]
    want = {"concat__lr0_1": ("lr", train["lr"] * 0.1), "concat__lr0_01": ("lr", train["lr"] * 0.01),
            "concat__batch2": ("batch_size", train["batch_size"] * 2), "concat__batch4": ("batch_size", train["batch_size"] * 4)}
    for run, (key, value) in want.items():
        got = scale_train(PARAMS, run, train)
        assert got[key] == pytest.approx(value), run
        assert {k: v for k, v in got.items() if k != key} == {k: v for k, v in train.items() if k != key}, run


def test_scaled_settings_reach_the_trainer():
    """The loop reads the scaled batch size (fewer batches per epoch) and learning rate."""
    params = params_with({"method": "concat", "train_scale": {"lr": 0.01, "batch_size": 2}})
    method, cfg, _ = resolve_run(params, "v")
    ctx = MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=1)
    m = build_method(method, cfg, ctx)
    model = build_model(MODEL_CFG, ["audio", "visual"], IN_CHANNELS, 6, "concat")
    splits = {"train": tiny_split(12, 0), "val": tiny_split(12, 1), "test": tiny_split(12, 2)}
    counts = {}
    for name, train in (("recipe", TRAIN), ("scaled", scale_train(params, "v", TRAIN))):
        trainer = Trainer(model, m, splits, train, seed=0, name=name)
        counts[name] = (len(list(trainer.batches("train", train=True))), trainer.optimizer.param_groups[0]["lr"])
    assert counts["recipe"] == (2, 0.01) and counts["scaled"][0] == 1 and counts["scaled"][1] == pytest.approx(1e-4)


@pytest.mark.parametrize("run", TABLE_RUNS)
def test_table_variant_trains_one_step(run):
    """Each variant resolves to its method with the fusion / backbone / frames it names, and a
    training step gives a finite loss, unimodal logits for both modalities and finite gradients."""
    method, cfg, model_cfg = resolve_run(PARAMS, run)
    assert method == run.split("__")[0] and "train_scale" not in cfg and "method" not in cfg
    assert not run_label(run).endswith(f"({run.split('__')[1]})"), "variant suffix has no label"
    ctx = MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=1)
    m = build_method(method, cfg, ctx)
    cfg_model = {**MODEL_CFG, **{k: model_cfg[k] for k in ("fusion", "backbone", "frames", "fusion_options")},
                 "backbone_options": {"mmtm": {"after": [-2, -1], "ratio": 4}}}  # the test encoders have 2 blocks
    torch.manual_seed(0)
    model = build_model(cfg_model, ["audio", "visual"], IN_CHANNELS, 6, cfg_model["fusion"])
    model.method_modules.update(m.modules(model.feature_dims, 6))
    m.bind(model)
    split = tiny_split(12, 0)
    splits = {"train": split, "val": replace(split), "test": replace(split)}
    trainer = Trainer(model, m, splits, scale_train(PARAMS, run, TRAIN), seed=0, name=run)
    m.on_epoch_start(0, trainer)
    model.train()
    inputs, labels = next(trainer.batches("train", train=True))
    out = m.forward(model, inputs, labels)
    loss = m.loss(out, labels)
    assert torch.isfinite(loss) and set(out.unimodal_logits) == {"audio", "visual"}
    loss.backward()
    m.after_backward(model, out, labels)
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{run}: non-finite gradient for {name}"


def test_mlp_runs_use_zeroed_unimodal_logits():
    """OPM/OGM with the multi-layer head read each modality's logits from the model's Output: the
    head with the other modality's features zeroed (TPAMI §4.3.7)."""
    _, _, model_cfg = resolve_run(PARAMS, "opm__mlp")
    assert model_cfg["fusion"] == "mlp"
    model = build_model({**MODEL_CFG, "fusion_options": model_cfg["fusion_options"]}, ["audio", "visual"], IN_CHANNELS, 6, "mlp")
    gen = torch.Generator().manual_seed(0)
    inputs = {"audio": torch.randn(3, 1, 33, 40, generator=gen), "visual": torch.randn(3, 1, 3, 16, 16, generator=gen)}
    out = model(inputs)
    zero_visual = {"audio": out.features["audio"], "visual": torch.zeros_like(out.features["visual"])}
    torch.testing.assert_close(out.unimodal_logits["audio"], model.fusion.fuse(zero_visual))
