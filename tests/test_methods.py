"""Registry-driven: every method takes one CPU training step with a finite loss and gradients."""

import pytest
import torch

from mmbalance.methods import METHODS, MethodContext, build_method
from mmbalance.models import build_model
from mmbalance.params import load_params
from mmbalance.train.loop import build_optimizer
from pathlib import Path

from conftest import IN_CHANNELS, MODEL_CFG

PARAMS = load_params(Path(__file__).parents[1] / "params.yaml")


def make(name: str):
    ctx = MethodContext(modalities=["audio", "visual"], num_classes=6, epochs=2)
    method = build_method(name, PARAMS["methods"][name], ctx)
    mods = method.modalities(["audio", "visual"])
    torch.manual_seed(0)
    model = build_model(MODEL_CFG, mods, IN_CHANNELS, 6, "concat")
    return method, model, mods


@pytest.mark.parametrize("name", METHODS.names())
def test_one_step(name, batch):
    inputs, labels = batch
    method, model, mods = make(name)
    inputs = {m: inputs[m] for m in mods}
    opt = build_optimizer(model, {"lr": 0.01})
    method.on_epoch_start(0)
    out = method.forward(model, inputs, labels)
    assert out.logits.shape == (8, 6)
    assert set(out.unimodal_logits) == set(mods)
    loss = method.loss(out, labels)
    assert torch.isfinite(loss)
    loss.backward()
    method.after_backward(model, out, labels)
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    method.on_epoch_end(0)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_concat_unimodal_logits_sum_to_fused(batch):
    inputs, labels = batch
    _, model, _ = make("concat")
    out = model(inputs)
    total = sum(out.unimodal_logits.values())
    torch.testing.assert_close(total, out.logits)
