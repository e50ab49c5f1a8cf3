"""Registry-driven: every method does something, and says so in its logged curves.

Each registered method declares its distinguishing quantity (``Method.acting``: a ``log`` key or
glob and the value it takes when the method changes nothing). On a tiny CPU run through the loop
the quantity must be logged in every epoch (so it reaches DVCLive as ``train/<key>``) and leave
its no-op value at least once, and the trained encoders must differ from Concat's trained with
the same seed and data. A method that trains plain fusion under another name fails here.
"""

import math
from pathlib import Path

import pytest
import torch

from mmbalance.methods import METHODS, Method, MethodContext, build_method
from mmbalance.methods.base import acting_series, is_acting
from mmbalance.methods.plain import Unimodal
from mmbalance.models import build_model
from mmbalance.train.loop import fit

from test_methods import TRAIN, make, splits_for

# Plain baselines: nothing to act with (fused CE, or one modality alone: every `<modality>_only`
# run registered on plain.py's Unimodal class).
EXEMPT = {"concat"} | {n for n in METHODS.names() if METHODS.get(n) is Unimodal}
EPOCHS = 4
# Settings that bring a method's first action inside a 4-epoch run; params.yaml's values otherwise.
TINY = {
    "dr": {"reinit_every": 1},  # a diagnosis after every epoch (the code: every 20)
    "g_blending": {"super_epoch": 1},  # new weights after every epoch
    "gmm_al": {"warmup_epochs": 1},
    "arl_code": {"warmup_epochs": 1},
    "ogm_code": {"start_epoch": 0},
    "opm_code": {"start_epoch": 0},
    "reconboost": {"warmup_epochs": 1, "stage_epochs": 1, "correct_epochs": 1},
}
ACTING = [n for n in METHODS.names() if n not in EXEMPT]


class Live:
    """Records what the loop sends to DVCLive: per step, metric name → value."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = [{}]

    def log_metric(self, name: str, value: float) -> None:
        self.steps[-1][name] = value

    def next_step(self) -> None:
        self.steps.append({})


def train(name: str, cfg: dict | None = None, live=None):
    """A 4-epoch run of ``name`` on the tiny splits; returns (method, model, fit result)."""
    from test_methods import PARAMS

    block = {**PARAMS["methods"].get(name, {}), **TINY.get(name, {}), **(cfg or {})}
    method, model, mods = make(name, block)
    method.ctx.epochs = EPOCHS
    res = fit(model, method, splits_for(mods), {**TRAIN, "epochs": EPOCHS}, seed=0, name=name, live=live)
    return method, model, res


def test_every_method_declares_its_quantity_or_is_a_plain_baseline():
    missing = [n for n in ACTING if not METHODS.get(n).acting]
    assert not missing, f"declare `acting = {{'key': ..., 'noop': ...}}` on {missing} (or list them in EXEMPT)"
    assert all(not METHODS.get(n).acting for n in EXEMPT & set(METHODS.names())), "a plain baseline declares a quantity"


@pytest.mark.parametrize("name", ACTING)
def test_method_acts_and_logs_it_per_epoch(name):
    acting = METHODS.get(name).acting
    live = Live()
    _, _, res = train(name, live=live)
    series = acting_series(res["history"], acting)
    assert series, f"{name}: nothing logged under {acting['key']!r}; call self.log({acting['key']}=...)"
    assert is_acting(series, acting["noop"]), f"{name}: {acting['key']} stays at its no-op value {acting['noop']}: {series}"
    for key, values in series.items():
        assert all(math.isfinite(v) for v in values), f"{name}: {key} = {values}"
        sent = [step[f"train/{key}"] for step in live.steps if f"train/{key}" in step]
        assert sent == pytest.approx(values), f"{name}: train/{key} did not reach DVCLive every epoch it was logged"


@pytest.mark.parametrize("name", ACTING)
def test_method_trains_differently_from_concat(name, concat_encoders):
    _, model, _ = train(name)
    mine = {k: v for k, v in model.state_dict().items() if k.startswith("encoders.")}
    assert mine.keys() == concat_encoders.keys()
    assert any(not torch.equal(mine[k], concat_encoders[k]) for k in mine), f"{name} trained exactly as concat"


@pytest.fixture(scope="module")
def concat_encoders():
    _, model, _ = train("concat")
    return {k: v for k, v in model.state_dict().items() if k.startswith("encoders.")}


def train_sequences(name: str):
    """A 4-epoch run of ``name`` on three sequence modalities (text, audio, vision; a transformer
    encoder without any convolution, as on CMU-MOSI); None if the method needs two modalities."""
    from test_methods import PARAMS
    from test_sequence_encoders import DIMS, SMALL, _split

    ctx = MethodContext(modalities=list(DIMS), num_classes=2, epochs=EPOCHS)
    try:
        method = build_method(name, {**PARAMS["methods"].get(name, {}), **TINY.get(name, {})}, ctx)
    except ValueError:
        return None
    torch.manual_seed(0)
    model_cfg = {"fusion": "concat", "encoders": {"sequence": {"name": "transformer", **SMALL["transformer"]}}}
    model = build_model(model_cfg, list(DIMS), DIMS, 2, "concat", {m: "sequence" for m in DIMS})
    model.method_modules.update(method.modules(model.feature_dims, 2))
    splits = {split: _split(12, seed) for split, seed in (("train", 0), ("val", 1), ("test", 2))}
    res = fit(model, method, splits, {**TRAIN, "epochs": EPOCHS}, seed=0, name=name)
    return {k: v for k, v in model.state_dict().items() if k.startswith("encoders.")}, res


@pytest.fixture(scope="module")
def concat_sequences():
    return train_sequences("concat")[0]


@pytest.mark.parametrize("name", ACTING)
def test_method_acts_on_three_sequence_modalities(name, concat_sequences):
    """The CMU-MOSI setting: three modalities, encoders without 4-D convolution weights (a
    modulation restricted to conv weights would leave them untouched: Concat under another name)."""
    run = train_sequences(name)
    if run is None:
        pytest.skip(f"{name} is defined for two modalities")
    encoders, res = run
    acting = METHODS.get(name).acting
    assert is_acting(acting_series(res["history"], acting), acting["noop"]), f"{name}: {acting['key']} at its no-op value"
    assert any(not torch.equal(encoders[k], concat_sequences[k]) for k in encoders), f"{name} trained exactly as concat"


class Idle(Method):
    """Plain fusion that claims a modulation coefficient and logs it at its no-op value."""

    acting = {"key": "k_*", "noop": 1.0}

    def loss(self, out, labels):
        self.log(**{f"k_{m}": 1.0 for m in out.unimodal_logits})
        return super().loss(out, labels)


def test_a_method_that_does_nothing_is_caught(monkeypatch):
    monkeypatch.setitem(METHODS._items, "idle", Idle)
    _, _, res = train("idle", {})
    series = acting_series(res["history"], Idle.acting)
    assert set(series) == {"k_audio", "k_visual"} and len(series["k_audio"]) == EPOCHS
    assert not is_acting(series, Idle.acting["noop"])
    assert acting_series(res["history"], {"key": "q_*", "noop": 0.0}) == {}  # never logged: nothing to show


def test_report_draws_each_methods_quantity(tmp_path):
    """The report's ``acting.png`` finds each run's declared series in its DVCLive curves."""
    from PIL import Image

    from mmbalance.report import load_results
    from mmbalance.report.diagnostics import acting_series_of, render_diagnostics, RunData
    from mmbalance.report.plots import load_curves
    from test_diagnostics import _run

    paths = [_run(tmp_path, "concat", {"train/rho_audio": [1.0, 2.0]}),
             _run(tmp_path, "mslr", {"train/lr_ratio_audio": [0.9, 0.9], "train/lr_ratio_visual": [1.1, 1.1],
                                     "train/lr_audio": [0.009, 0.009]}),
             _run(tmp_path, "dr", {"train/reinit_audio": [0.2], "train/reinit_visual": [0.0]})]
    runs = {r.run: r for r in load_results(paths)}
    curves = {name: load_curves(Path(r.source).parent) for name, r in runs.items()}
    data = {n: RunData(r, curves[n], {}) for n, r in runs.items()}
    assert acting_series_of(data["concat"]) is None  # a plain baseline declares nothing
    assert acting_series_of(data["mslr"]) == (METHODS.get("mslr").acting, ["train/lr_ratio_audio", "train/lr_ratio_visual"])
    out = tmp_path / "reports"
    drawn = {d.name: d for d in render_diagnostics("cremad", runs, curves, out / "plots", out)}
    assert drawn["acting"].path == "plots/cremad/acting.png" and drawn["acting"].paper == "arl"
    with Image.open(out / drawn["acting"].path) as img:
        assert img.format == "PNG" and img.width > 300
