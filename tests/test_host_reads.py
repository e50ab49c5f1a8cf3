"""Registry-driven: which methods read a tensor back to the host inside a training step.

On a GPU every such read (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``, ``.cpu()``…)
waits for the device to finish all the work queued so far, so the CPU can no longer run ahead of
the GPU. The loop keeps its own checks and sums on the device (``train.check_finite: epoch``); a
method's hooks must too, unless the read decides something on the host. Counted here on the CPU
by wrapping the tensor's read-back methods; ``HOST_DECISIONS`` lists the methods that still read,
and why (docs/performance.md, "Host reads in the step").
"""

import collections
import math
import traceback

import pytest
import torch

from mmbalance.methods import METHODS
from mmbalance.methods.ogm import boost_coefficient, gradient_coefficient
from mmbalance.methods.ogm_ge import discrepancy_ratios, modulation_coefficient
from mmbalance.methods.opm import drop_masks, drop_probability
from mmbalance.train.loop import Trainer

from conftest import tiny_split
from test_methods import TRAIN, make, splits_for

READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")

# method → (reads per step, why the step reads on the host); None = at least one, varies with the model
HOST_DECISIONS = {
    "greedy": (None, "which modality the next steps update is a host decision from gradient/weight norm ratios"),
    "moddrop": (None, "masks are drawn and redrawn with the CPU generator: a read of CPU tensors, not of the device"),
    # on CUDA this reads the host copy of q made a step earlier (HostCopy): no wait for the device
    "opm": (1, "whether some q > 0 decides whether masks are drawn, and with them the random stream"),
    "opm_ogm": (1, "as opm"),
}


class HostReads:
    """Counts tensor read-backs while ``active``; ``where`` keeps file:line of each."""

    def __init__(self, monkeypatch):
        self.active, self.where = False, collections.Counter()
        for name in READS:
            original = getattr(torch.Tensor, name)

            def read(tensor, *args, _original=original, **kwargs):
                if self.active:
                    frame = traceback.extract_stack(limit=3)[0]
                    self.where[f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"] += 1
                return _original(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, read)

    @property
    def count(self) -> int:
        return sum(self.where.values())


def reads_in_second_step(name: str, monkeypatch) -> HostReads:
    """Host reads in a method's second training step (hooks: forward, loss, after_backward)."""
    method, model, mods = make(name)
    trainer = Trainer(model, method, splits_for(mods), TRAIN, seed=0, name=name)
    method.on_epoch_start(0, trainer)
    model.train()
    batches, reads = trainer.batches("train", train=True), HostReads(monkeypatch)
    for step in range(2):
        inputs, labels = next(batches)
        reads.active = step == 1
        out = method.forward(model, inputs, labels)
        method.loss(out, labels).backward()
        method.after_backward(model, out, labels)
        reads.active = False
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
    return reads


@pytest.mark.parametrize("name", METHODS.names())
def test_step_reads_nothing_back_unless_a_host_decision(name, monkeypatch):
    reads = reads_in_second_step(name, monkeypatch)
    expected, why = HOST_DECISIONS.get(name, (0, ""))
    if expected == 0:
        assert reads.count == 0, f"{name} reads tensors back to the host in its step at {dict(reads.where)}"
    elif expected is None:
        assert reads.count > 0, f"{name} no longer reads in its step: remove it from HOST_DECISIONS ({why})"
    else:
        assert reads.count == expected, f"{name}: {dict(reads.where)}; expected {expected} ({why})"


@pytest.mark.parametrize("name", ["concat", "ogm_ge", "arl", "iprm", "gmm_al"])
def test_loop_reads_per_epoch_not_per_step(name, monkeypatch):
    """With ``check_finite: epoch`` a training epoch (loop and method hooks) reads the same number
    of times for 2 and for 4 steps: nothing is read back per step. The batches are assembled
    beforehand: assembling them reads CPU index tensors, before anything is on the device."""
    counts = []
    for n in (12, 24):
        method, model, mods = make(name)
        splits = {k: tiny_split(n, seed) for k, seed in (("train", 0), ("val", 1), ("test", 2))}
        trainer = Trainer(model, method, splits, {**TRAIN, "check_finite": "epoch"}, seed=0, name=name)
        method.on_epoch_start(0, trainer)
        batches = list(trainer._train_batches())
        trainer._train_batches = lambda: iter(batches)
        reads = HostReads(monkeypatch)
        reads.active = True
        trainer.train_epoch()
        counts.append(reads.count)
        monkeypatch.undo()
    assert counts[0] == counts[1], f"{name}: {counts[0]} reads in 2 steps, {counts[1]} in 4"


# The coefficients stay on the device as float64 tensors. torch's tanh may differ from the C
# library's (Python's math.tanh) in the last bit of a double (about 1e-16 after 1 − tanh), far
# below the float32 precision of the gradients they scale; the ratios (divisions only) are the
# Python-float numbers exactly.
RHOS = [0.3, 0.999, 1.0, 1.0000001, 1.37, 2.0, 3.5, 17.0] + [0.5 + 0.01 * i for i in range(300)]


@pytest.mark.parametrize("form", ["paper", "cvpr", "code"])
def test_device_coefficients_are_the_python_float_formulas(form):
    for rho in RHOS:
        k = 1.0 if rho <= 1 else (max(0.0, 1.0 - 0.8 * math.tanh(rho - 1.0)) if form == "paper" else 1.0 - math.tanh(0.8 * rho))
        assert float(modulation_coefficient(torch.tensor(rho, dtype=torch.float64), 0.8, form)) == pytest.approx(k, rel=1e-15, abs=1e-15)
        assert modulation_coefficient(rho, 0.8, form) == pytest.approx(k, rel=1e-15, abs=1e-15)
    for rho in RHOS:
        t = torch.tensor(rho, dtype=torch.float64)
        sig = 1.0 / (1.0 + math.exp(-rho))
        expected = {"sigmoid": 1.0 if rho <= 1 else max(0.0, 1 - 0.6 * sig),
                    "boost": 1.0 if rho <= 1 else 1 + 0.8 * math.tanh(rho - 1.0),
                    "q": 0.0 if rho <= 1 else min(1.0, max(0.0, 0.5 * (1.0 + 0.5 * math.tanh(rho - 1.0))))}
        got = {"sigmoid": gradient_coefficient(t, 0.6, "paper", "sigmoid"), "boost": boost_coefficient(t, 0.8), "q": drop_probability(t)}
        assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float64 for v in got.values())
        assert {k: float(v) for k, v in got.items()} == pytest.approx(expected, rel=1e-15, abs=1e-15)


def test_device_ratios_are_the_python_float_ratios():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        scores = {m: torch.rand(64, generator=gen) for m in ("a", "v", "t")}
        sums = {m: float(s.sum()) for m, s in scores.items()}
        expected = {m: sum(sums[m] / max(sums[j], 1e-12) for j in sums if j != m) / 2 for m in sums}
        assert {m: float(r) for m, r in discrepancy_ratios(scores).items()} == expected


def test_drop_masks_take_device_probabilities_and_keep_the_first_safest():
    torch.manual_seed(0)
    floats = drop_masks({"a": 1.0, "v": 1.0}, 8, torch.device("cpu"))
    torch.manual_seed(0)
    tensors = drop_masks({"a": torch.tensor(1.0, dtype=torch.float64), "v": torch.tensor(1.0, dtype=torch.float64)}, 8, torch.device("cpu"))
    assert all(torch.equal(floats[m], tensors[m]) for m in floats)
    assert floats["a"].tolist() == [1.0] * 8 and floats["v"].tolist() == [0.0] * 8  # every sample keeps "a"


def test_opm_decides_from_the_host_copy_of_the_previous_steps_q():
    """q from the previous step (the paper's OPM): the draw-or-not decision reads the copy of q_t
    that was started when q_t was computed, one step earlier."""
    from mmbalance.methods.opm import HostCopy

    assert torch.equal(HostCopy(torch.tensor([0.5, 0.0])).get(), torch.tensor([0.5, 0.0]))
    method, model, mods = make("opm", {"q_base": 0.9, "lam": 1.0})
    trainer = Trainer(model, method, splits_for(mods), TRAIN, seed=0, name="opm")
    inputs, labels = next(trainer.batches("train", train=True))
    assert method._q_host is None  # step 1: q is 0, known without the device
    method.forward(model, inputs, labels)
    copy, read = method._q_host, []  # the host copy of q_2, started in step 1
    copy.get = lambda _get=copy.get: read.append(1) or _get()
    method.forward(model, inputs, labels)
    used = torch.stack([method.ctx.logs[f"q_{m}"][1] for m in mods])  # the q^m of step 2
    assert read == [1] and torch.equal(copy.value, used)
