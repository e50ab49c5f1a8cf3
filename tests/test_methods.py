"""Registry-driven: every method trains on CPU with finite loss and gradients, through the loop."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mmbalance.methods import METHODS, MethodContext, build_method
from mmbalance.models import build_model
from mmbalance.params import load_params
from mmbalance.train.loop import Trainer, fit

from conftest import IN_CHANNELS, MODEL_CFG, tiny_split

PARAMS = load_params(Path(__file__).parents[1] / "params.yaml")
TRAIN = {"epochs": 2, "batch_size": 6, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9}


def make(name: str, cfg: dict | None = None):
    ctx = MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=TRAIN["epochs"])
    method = build_method(name, PARAMS["methods"].get(name, {}) if cfg is None else cfg, ctx)
    if method.cfg.get("modality") not in (None, "audio", "visual"):
        pytest.skip(f"{name} trains {method.cfg['modality']!r}, a modality these audio-visual tests lack (covered by its dataset's tests)")
    mods = method.modalities(["audio", "visual"])
    ctx.modalities = mods
    torch.manual_seed(0)
    model = build_model(MODEL_CFG, mods, IN_CHANNELS, 6, MODEL_CFG.get("fusion") or "concat")
    model.method_modules.update(method.modules(model.feature_dims, 6))
    return method, model, mods


def splits_for(mods):
    out = {}
    for name, seed in (("train", 0), ("val", 1), ("test", 2)):
        s = tiny_split(12, seed)
        out[name] = replace(s, arrays={m: s.arrays[m] for m in mods}, lengths={m: v for m, v in s.lengths.items() if m in mods})
    return out


def train_step(name: str, method, model, splits):
    """One training step through the loop's hooks (epoch start, forward, loss, backward,
    after-backward); asserts a finite scalar loss. Returns (trainer, output, batch inputs)."""
    trainer = Trainer(model, method, splits, TRAIN, seed=0, name=name)
    method.on_epoch_start(0, trainer)
    model.train()
    inputs, labels = next(trainer.batches("train", train=True))
    out = method.forward(model, inputs, labels)
    loss = method.loss(out, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    method.after_backward(model, out, labels)
    return trainer, out, inputs


def assert_head_objective_kept(info: dict, name: str, model_cfg: dict, trains: bool) -> None:
    """A model whose fusion head adds its own objective (unimodal heads, a metric loss): run
    ``name`` trains an epoch when ``trains``, else the trainer stops it on the first step."""
    from mmbalance.train.run import build_run

    method, model = build_run(info, name, {}, model_cfg, 2)
    trainer = Trainer(model, method, splits_for(["audio", "visual"]), TRAIN, seed=0, name=name)
    if trains:
        trainer.train_epoch()
    else:
        with pytest.raises(ValueError, match=f"method '{name}' does not train the fusion head's own objective"):
            trainer.train_epoch()


def assert_finite_gradients(model, what: str) -> None:
    """Every parameter of ``model`` received a finite gradient."""
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{what}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{what}: non-finite gradient for {pname}"


@pytest.mark.parametrize("name", METHODS.names())
def test_one_step_every_parameter_gets_a_finite_gradient(name):
    method, model, mods = make(name)
    trainer, out, _ = train_step(name, method, model, splits_for(mods))
    assert out.logits.shape == (6, 6)
    assert set(out.unimodal_logits) == set(mods)
    assert_finite_gradients(model, name)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("name", METHODS.names())
def test_fit_two_epochs(name):
    method, model, mods = make(name)
    res = fit(model, method, splits_for(mods), TRAIN, seed=0, name=name)
    assert res["epochs"] == 2 and 0.0 <= res["test"]["acc"] <= 1.0
    assert set(res["test"]["probe_acc"]) == set(mods)


def test_concat_unimodal_logits_sum_to_fused(batch):
    inputs, _ = batch
    _, model, _ = make("concat")
    torch.testing.assert_close(sum(model(inputs).unimodal_logits.values()), model(inputs).logits)
