"""Determinism and the non-finite guard: the same seed gives identical metrics on CPU, every
adapter's shards are byte-identical whatever the worker count, and a NaN/inf loss or gradient
stops the run with an error naming method, epoch and step.

CREMA-D's shard bytes across worker counts are covered in test_prepare.py; training resumed from
a checkpoint in test_resume.py and test_interrupt.py.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from mmbalance.prepare import prepare
from mmbalance.train.loop import NonFiniteError, fit
from mmbalance.train.run import seed_everything

from test_bad_inputs import BUILD, RECIPE, SPLITS
from test_methods import TRAIN, make, splits_for


def _fit(name: str, seed: int = 0, method_hook=None) -> dict:
    seed_everything(seed)
    method, model, mods = make(name)
    if method_hook is not None:
        method_hook(method)
    return fit(model, method, splits_for(mods), {**TRAIN, "epochs": 3}, seed=seed, name=name)


@pytest.mark.parametrize("name", ["concat", "ogm_ge"])  # ogm_ge draws Gaussian gradient noise
def test_same_seed_same_metrics(name):
    first, second = _fit(name), _fit(name)
    assert first["test"] == second["test"] and first["best_epoch"] == second["best_epoch"]
    assert [r["train_loss"] for r in first["history"]] == [r["train_loss"] for r in second["history"]]
    for key, value in first["best_state"]["model"].items():
        assert torch.equal(value, second["best_state"]["model"][key]), key


@pytest.mark.parametrize("name", ["concat", "ogm_ge"])
def test_same_seed_same_predictions(name, tmp_path):
    """Two runs with the same seed on one machine save byte-identical per-clip predictions."""
    from mmbalance.evaluate.predictions import from_trainer, load_predictions, save_predictions

    paths = []
    for i in range(2):
        res = _fit(name)
        paths.append(tmp_path / f"run{i}" / "seed0.npz")
        save_predictions(paths[-1], from_trainer(res["predictions"]))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    preds = load_predictions(paths[0])
    assert len(preds.keys) == len(res["predictions"]["keys"]) and list(preds.keys) == sorted(preds.keys)
    assert preds.correct().mean() == pytest.approx(res["test"]["acc"])


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("ds", ["ave", "kinetics_sounds", "ucf101", "mosi"])
def test_shards_byte_identical_across_worker_counts(ds, tmp_path):
    root = tmp_path / "raw"
    BUILD[ds](root)
    prepare(ds, root, tmp_path / "one", RECIPE, SPLITS[ds], workers=1, shard_max_count=3)
    prepare(ds, root, tmp_path / "two", RECIPE, SPLITS[ds], workers=2, shard_max_count=3)
    one = _digests(tmp_path / "one")
    assert len(one) > 2 and one == _digests(tmp_path / "two")


def _poison_loss(at_step: int):
    """Make the method's loss NaN from step ``at_step`` on."""
    def hook(method):
        real = method.loss

        def loss(out, y):
            value = real(out, y)
            return value * math.nan if method.ctx.step >= at_step else value
        method.loss = loss
    return hook


def _poison_grad(at_step: int):
    """Put an inf into one gradient after backward from step ``at_step`` on."""
    def hook(method):
        real = method.after_backward

        def after_backward(model, out, y):
            real(model, out, y)
            if method.ctx.step >= at_step:
                next(p for p in model.parameters() if p.grad is not None).grad.view(-1)[0] = math.inf
        method.after_backward = after_backward
    return hook


def test_non_finite_loss_stops_the_run_naming_method_epoch_and_step():
    # 12 training clips in batches of 6: two steps per epoch, so step 3 is in epoch 1
    with pytest.raises(NonFiniteError, match=r"non-finite loss nan at method ogm_ge, epoch 1, step 3"):
        _fit("ogm_ge", method_hook=_poison_loss(3))


def test_non_finite_gradient_stops_the_run_naming_the_parameter():
    with pytest.raises(NonFiniteError, match=r"non-finite gradient in \S+ at method concat, epoch 0, step 1"):
        _fit("concat", method_hook=_poison_grad(1))


def test_seeds_trained_side_by_side_equal_sequential_seeds(tmp_path):
    """``train.seed_workers: 2`` trains the seeds in forked processes: same numbers, same files."""
    from pathlib import Path

    from mmbalance.params import load_params, resolve_run
    from mmbalance.train.run import run

    root = tmp_path / "raw"
    BUILD["ucf101"](root)
    prepare("ucf101", root, tmp_path / "shards", RECIPE, SPLITS["ucf101"], workers=1, shard_max_count=50)
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    method, cfg, model = resolve_run(params, "ogm_ge")
    out = {}
    for workers in (1, 2):
        train = {**params["train"], "epochs": 2, "batch_size": 8, "seed_workers": workers}
        res = run(tmp_path / "shards", tmp_path / f"out{workers}", "ucf101", method, cfg, model, train, [0, 1], "mini",
                  models=tmp_path / f"models{workers}", run_name="ogm_ge", live=tmp_path / f"live{workers}")
        out[workers] = {s: {k: v for k, v in r.items() if k != "wall_s"} for s, r in res["seeds"].items()}
        assert sorted(p.name for p in (tmp_path / f"models{workers}").iterdir()) == ["seed0.pt", "seed1.pt"]
    assert out[1] == out[2]
    assert (tmp_path / "out1" / "curves.json").read_text() == (tmp_path / "out2" / "curves.json").read_text()
    for seed in ("seed0", "seed1"):
        live = "{}/metrics.json".format(seed)
        assert (tmp_path / "live1" / live).read_text() == (tmp_path / "live2" / live).read_text()


def _huge_grad(at_step: int):
    """Make one gradient finite but so large that its norm overflows float32."""
    def hook(method):
        real = method.after_backward

        def after_backward(model, out, y):
            real(model, out, y)
            if method.ctx.step >= at_step:
                next(p for p in model.parameters() if p.grad is not None).grad.fill_(1e30)
        method.after_backward = after_backward
    return hook


def test_overflowing_gradient_norm_stops_the_run_naming_the_parameter():
    with pytest.raises(NonFiniteError, match=r"gradient norm of \S+ overflows at method concat, epoch 0, step 1"):
        _fit("concat", method_hook=_huge_grad(1))


def test_seed_worker_logger_tolerates_the_shared_step_signal_vanishing(tmp_path, monkeypatch):
    """Seed workers share DVCLive's step signal file; the one whose exists() check loses the race
    to another worker's removal must still finish (its logs are written before the removal)."""
    import dvclive.live

    from mmbalance.train.run import _live

    def lost_race():
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / ".dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED"))

    monkeypatch.setattr(dvclive.live, "cleanup_dvclive_step_completed", lost_race)
    with _live(tmp_path / "live", True) as live:
        live.log_metric("train/loss", 1.0)
        live.next_step()
    assert (tmp_path / "live" / "metrics.json").exists()

    def other_error():
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "elsewhere.json"))

    monkeypatch.setattr(dvclive.live, "cleanup_dvclive_step_completed", other_error)
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        with _live(tmp_path / "live2", True) as live:
            live.next_step()
