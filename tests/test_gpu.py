"""CUDA runs (skipped without a GPU): bf16 autocast, channels-last, both loaders, epoch hooks."""

import numpy as np
import pytest
import torch

from mmbalance.methods.base import Method
from mmbalance.train.run import build_run, load_splits, train_seed
from conftest import write_av_shards

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
COUNTS = {"train": 48, "val": 12, "test": 20}
MODEL = {"fusion": "concat", "encoders": {"spectrogram": {"name": "resnet18", "input_size": [64, 75]},
                                          "frames": {"name": "resnet18"}}}
METHODS = {"concat": {}, "ogm_ge": {"alpha": 0.8, "form": "paper", "start_epoch": 0, "end_epoch": 50, "noise": True, "noise_on": "all"},
           "arl": {"gamma": 4.0, "T": 4.0, "ur": True, "al": True, "gr": True, "variant": "paper", "reference": None,
                   "warmup_epochs": None, "code_grad_scale": 0.5, "clip_grad_norm": None},
           "gmm_al": {"warmup_epochs": 1, "fit_every": 1, "alpha": 1.0, "beta": 1.0, "gamma": 1.0, "gmm_weights": True, "anneal": 0.96,
                      "anneal_from": "adaptive", "reset_optimizer": True, "optimizer": None, "lr": None, "gmm_seed": 0}}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_av_shards(tmp_path_factory.mktemp("gpu_shards"), COUNTS, (257, 299), 64)


@pytest.mark.parametrize("method,loader", [("concat", "memory"), ("ogm_ge", "memory"), ("arl", "stream"), ("gmm_al", "stream")])
def test_bf16_channels_last_training(shards, method, loader, monkeypatch):
    from mmbalance.shards import read_index

    cfg = {"epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0001, "lr_step": 0,
           "device": "cuda", "precision": "bf16", "loader": loader, "num_workers": 2, "pin_memory": True, "persistent_workers": True}
    seen = []
    cls = type(build_run(read_index(shards), method, METHODS[method], MODEL, 2)[0])
    original = cls.after_backward

    def spy(self, model, out, labels):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        seen.append((grads[0].dtype, grads[0].device.type, out.logits.dtype))
        return original(self, model, out, labels)

    monkeypatch.setattr(cls, "after_backward", spy)
    info = read_index(shards)
    res = train_seed(info, load_splits(shards, info, MODEL, cfg), method, METHODS[method], MODEL, cfg, seed=0)
    assert res["eval_samples"] == {"val": COUNTS["val"], "test": COUNTS["test"]}
    assert np.isfinite(res["test"]["loss"]) and 0.0 <= res["test"]["acc"] <= 1.0
    assert seen and all(s[:2] == (torch.float32, "cuda") for s in seen)  # hooks see fp32 (unscaled) gradients
    assert any(s[2] == torch.bfloat16 for s in seen)  # the forward ran under bf16 autocast
    state = res["best_state"]["model"]
    assert all(v.device.type == "cpu" for v in state.values())
