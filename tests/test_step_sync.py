"""Per-step diagnostics stay on the device: ``Method.log`` keeps tensors, the loop reads an epoch's
values back once (``epoch_means``), and GMM-AL's training step reads nothing back to the host."""

import math

import pytest
import torch

from mmbalance.methods import MethodContext, build_method
from mmbalance.methods.base import epoch_means
from mmbalance.models import Output

AV = ["audio", "visual"]


def test_log_keeps_detached_tensors_and_numbers():
    method = build_method("concat", {}, MethodContext(list(AV), 2, 1))
    x = torch.tensor(2.0, requires_grad=True)
    method.log(t=x * 3, n=0.5)
    (t,), (n,) = method.ctx.logs["t"], method.ctx.logs["n"]
    assert isinstance(t, torch.Tensor) and not t.requires_grad and float(t) == 6.0
    assert n == 0.5


def test_epoch_means_by_hand():
    # t: (1 + 2 + 6) / 3 = 3; mixed numbers and tensors (0-d and 1-element) average alike
    logs = {"t": [torch.tensor(1.0), 2, torch.tensor([6.0])], "n": [0.25, 0.75], "h": [torch.tensor(1.0, dtype=torch.bfloat16)]}
    means = epoch_means(logs)
    assert means == {"t": pytest.approx(3.0), "n": pytest.approx(0.5), "h": 1.0}
    assert all(type(v) is float for v in means.values())


def _forbid_host_reads(monkeypatch):
    """Make every tensor → host conversion raise (what would wait for a GPU on each step)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was read back to the host inside the training step")

    for name in ("__float__", "__int__", "__bool__", "item", "tolist", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


@pytest.mark.parametrize("cfg", [{}, {"gmm_weights": False}])
def test_gmm_al_adaptive_step_reads_nothing_back(monkeypatch, cfg):
    method = build_method("gmm_al", {"warmup_epochs": 1, **cfg}, MethodContext(list(AV), 3, 4))
    method.gmm = {"weights": [0.8, 0.2], "means": [0.0, 0.7], "vars": [0.01, 0.04]}
    method.ctx.epoch = 2
    torch.manual_seed(0)
    out = Output(logits=torch.randn(5, 3, requires_grad=True), features={},
                 unimodal_logits={m: torch.randn(5, 3, requires_grad=True) for m in AV})
    labels = torch.tensor([0, 1, 2, 0, 1])
    with monkeypatch.context() as m:
        _forbid_host_reads(m)
        loss = method.loss(out, labels)
        loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert isinstance(method.ctx.logs["gap"][0], torch.Tensor)
    assert isinstance(method.ctx.logs["w_imbalanced"][0], torch.Tensor)
    assert set(epoch_means(method.ctx.logs)) == {"gap", "lambda_t", "w_imbalanced"}
