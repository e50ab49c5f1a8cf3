"""The GPU path's host-side pieces, run on the CPU: batches assembled ahead by a thread
(``train.prefetch``), finiteness checked on the device once per epoch (``train.check_finite``),
compiled encoders (``train.compile``). Each must leave the numbers of a run unchanged."""

import threading

import numpy as np
import pytest
import torch

from mmbalance.shards import read_index
from mmbalance.train import runtime
from mmbalance.train.loop import NonFiniteError
from mmbalance.train.run import build_run, load_splits, train_seed
from conftest import write_av_shards

COUNTS = {"train": 40, "val": 10, "test": 12}
MODEL = {"fusion": "concat", "encoders": {"spectrogram": {"name": "tiny_cnn", "channels": [4, 8], "input_size": [16, 20]},
                                          "frames": {"name": "tiny_cnn", "channels": [4, 8]}}}
CFG = {"epochs": 2, "batch_size": 8, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001, "lr_step": 0,
       "device": "cpu", "num_threads": 1}
OGM = {"alpha": 0.8, "form": "paper", "start_epoch": 0, "end_epoch": 50, "noise": True, "noise_on": "all"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Tiny audio-visual shards with 3 stored frames per clip (frame sampling uses the generator)."""
    return write_av_shards(tmp_path_factory.mktemp("gpu_path_shards"), COUNTS, (33, 40), 16)


def _train(shards, method="ogm_ge", **train):
    info = read_index(shards)
    cfg = {**CFG, **train}
    torch.manual_seed(0)
    return train_seed(info, load_splits(shards, info, MODEL, cfg), method, OGM if method == "ogm_ge" else {}, MODEL, cfg, seed=0)


def _same(a: dict, b: dict) -> None:
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert a["test"] == b["test"] and a["val"] == b["val"]
    for k, v in a["best_state"]["model"].items():
        assert torch.equal(v, b["best_state"]["model"][k]), k


def test_prefetched_batches_train_bit_for_bit_the_same(shards):
    """The thread draws the batch order and the training frames from the same generator, in the
    same order, so a run with prefetch is the run without it."""
    _same(_train(shards, prefetch=0), _train(shards, prefetch=3))


def test_epoch_finiteness_check_trains_the_same(shards):
    _same(_train(shards, check_finite="step"), _train(shards, check_finite="epoch"))


@pytest.mark.parametrize("mode", ["step", "epoch"])
def test_non_finite_loss_raises_in_both_modes(shards, monkeypatch, mode):
    cls = type(build_run(read_index(shards), "concat", {}, MODEL, 2)[0])
    original = cls.loss

    def poisoned(self, out, labels):
        loss = original(self, out, labels)
        return loss * float("nan") if self.ctx.step == 3 else loss

    monkeypatch.setattr(cls, "loss", poisoned)
    with pytest.raises(NonFiniteError, match="step 3"):
        _train(shards, method="concat", check_finite=mode)


def test_unknown_check_finite_mode_is_refused(shards):
    with pytest.raises(ValueError, match="check_finite"):
        _train(shards, method="concat", check_finite="sometimes")


def test_compiled_encoders_keep_parameter_names_and_train(shards):
    """``train.compile`` (here with dynamo's eager backend: no compiler needed) compiles each
    encoder in place; checkpoints and saved models keep their keys."""
    torch._dynamo.reset()
    plain, compiled = _train(shards, method="concat"), _train(shards, method="concat", compile=True, compile_backend="eager")
    assert plain["best_state"]["model"].keys() == compiled["best_state"]["model"].keys()
    assert np.isfinite(compiled["test"]["loss"])
    info = read_index(shards)
    _, model = build_run(info, "concat", {}, MODEL, 2)
    runtime.compile_encoders(model, {"compile": True, "compile_backend": "eager"})
    assert all(getattr(e, "_compiled_call_impl", None) is not None for e in model.encoders.values())


def test_prefetcher_reraises_the_producers_error():
    def broken():
        yield 1
        raise OSError("shard unreadable")

    rt = runtime.Runtime(torch.device("cpu"), False)
    it = rt.prefetched(broken(), depth=2, pin=False)
    assert next(it) == 1
    with pytest.raises(OSError, match="shard unreadable"):
        next(it)


def test_prefetcher_stops_its_thread_when_the_consumer_stops():
    rt = runtime.Runtime(torch.device("cpu"), False)
    it = rt.prefetched(iter(range(1000)), depth=2, pin=False)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert not any(t.name == "mmbalance-prefetch" and t.is_alive() for t in threading.enumerate())


def test_map_tensors_reaches_every_tensor_of_a_batch_and_keeps_the_rest():
    from mmbalance.models import SequenceBatch

    seq = SequenceBatch(torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    batch = ({"audio": torch.zeros(2, 1, 5, 5), "text": seq}, torch.tensor([0, 1]), ["k0", "k1"])
    seen = []
    out = runtime.map_tensors(batch, lambda t: seen.append(t.shape) or t + 1)
    assert len(seen) == 4  # frames, the sequence's x and mask, labels
    inputs, labels, keys = out
    assert isinstance(inputs["text"], SequenceBatch) and torch.equal(inputs["text"].x, seq.x + 1)
    assert torch.equal(inputs["audio"], torch.ones(2, 1, 5, 5)) and labels.tolist() == [1, 2] and keys == ["k0", "k1"]


def test_gpu_step_measures_on_a_cpu_with_small_shapes():
    """benchmarks/gpu_step.py's measurement (samples/s, compute-only rate, data-wait share,
    warm-up) on the CPU with tiny encoders; the GPU run is the same code at paper shapes."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu_step

    info = {**gpu_step.INFO, "modalities": {"audio": {"kind": "spectrogram", "shape": [33, 40]},
                                            "visual": {"kind": "frames", "shape": [None, 16, 16, 3]}}}
    r = gpu_step.measure(gpu_step.synthetic(128, info), "fp32", 2, "concat", device="cpu", model_cfg=MODEL, info=info)
    assert r.rate > 0 and r.compute_rate > 0 and r.warmup_s > 0 and 0.0 <= r.data_wait < 1.0
    assert r.utilisation is None and r.syncs_per_step is None  # no GPU to sample or to flag syncs
    from argparse import Namespace

    table = gpu_step.report([r], Namespace(samples=128, epochs=2, epoch_samples=6698))
    assert "| host syncs/step |" in table and "| n/a |" in table
