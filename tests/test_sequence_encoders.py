"""Sequence encoders (transformer, lstm): shapes, masking, registry, and every method on a
three-modality sequence model through the shared loop."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mmbalance.methods import METHODS, MethodContext, build_method
from mmbalance.models import ENCODERS, SequenceBatch, build_model
from mmbalance.models import sequence_encoders  # noqa: F401  (registers transformer / lstm)
from mmbalance.models.encoders import build_encoder
from mmbalance.models.sequence_encoders import SequenceLSTM, SequenceTransformer, masked_mean, sinusoidal_positions
from mmbalance.params import load_params
from mmbalance.train.data import SplitData
from mmbalance.train.loop import fit

from test_methods import assert_finite_gradients, train_step

DIMS = {"text": 12, "audio": 3, "vision": 5}
SMALL = {"transformer": {"d_model": 8, "layers": 1, "heads": 2, "ff_dim": 16, "dropout": 0.0},
         "lstm": {"hidden": 6}}


def _batch(b=4, length=7, dim=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, 3, 1, 5][:b])
    x = torch.randn(b, length, dim, generator=gen)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return SequenceBatch(x * mask[..., None], mask)


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_registered_and_built_from_params(name):
    assert name in ENCODERS.names()
    enc = build_encoder({"name": name, **SMALL[name]}, in_channels=5)
    out = enc(_batch())
    assert out.shape == (4, enc.out_dim) and torch.isfinite(out).all()


def test_unknown_encoder_key_raises():
    with pytest.raises(TypeError):
        build_encoder({"name": "transformer", "width": 3}, in_channels=5)


@pytest.mark.parametrize("enc", [
    SequenceTransformer(5, d_model=8, layers=2, heads=2, dropout=0.0),
    SequenceTransformer(5, d_model=8, layers=1, heads=2, dropout=0.0, positions="learned", max_len=16),
    SequenceLSTM(5, hidden=6),
    SequenceLSTM(5, hidden=6, bidirectional=True, layers=2, pooling="mean"),
])
def test_padding_never_changes_the_output(enc):
    """Garbage in the padded steps, or extra padding, leaves every row's features unchanged."""
    enc.eval()
    batch = _batch()
    with torch.no_grad():
        ref = enc(batch)
        noisy = SequenceBatch(torch.where(batch.mask[..., None], batch.x, torch.full_like(batch.x, 7.0)), batch.mask)
        longer = SequenceBatch(torch.cat([batch.x, torch.randn(4, 3, 5)], 1), torch.cat([batch.mask, torch.zeros(4, 3, dtype=torch.bool)], 1))
        alone = enc(SequenceBatch(batch.x[1:2, :3], batch.mask[1:2, :3]))
    torch.testing.assert_close(enc(noisy), ref)
    torch.testing.assert_close(enc(longer), ref)
    torch.testing.assert_close(alone, ref[1:2], atol=1e-5, rtol=1e-5)


def test_plain_tensor_means_every_step_is_real():
    enc = SequenceTransformer(5, d_model=8, layers=1, heads=2, dropout=0.0).eval()
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(enc(x), enc(SequenceBatch(x, torch.ones(2, 4, dtype=torch.bool))))


def test_empty_row_stays_finite():
    batch = _batch()
    mask = batch.mask.clone()
    mask[2] = False
    for enc in (SequenceTransformer(5, d_model=8, heads=2), SequenceLSTM(5, hidden=4)):
        assert torch.isfinite(enc(SequenceBatch(batch.x, mask))).all()


def test_lstm_last_state_is_the_last_real_step():
    enc = SequenceLSTM(5, hidden=6).eval()
    batch = _batch()
    with torch.no_grad():
        out = enc(batch)
        for i, n in enumerate(batch.mask.sum(1).tolist()):
            seq_out, _ = enc.lstm(batch.x[i : i + 1, :n])
            torch.testing.assert_close(out[i], seq_out[0, -1])


def test_masked_mean_and_positions_by_hand():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(masked_mean(h, mask), torch.tensor([[2.0, 3.0]]))
    table = sinusoidal_positions(3, 4)
    assert table.shape == (3, 4)
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(table[2, :2], torch.tensor([torch.sin(torch.tensor(2.0)), torch.cos(torch.tensor(2.0))]))
    assert sinusoidal_positions(3, 5).shape == (3, 5)


def test_bad_settings_raise_with_the_reason():
    with pytest.raises(ValueError, match="divisible"):
        SequenceTransformer(5, d_model=10, heads=4)
    with pytest.raises(ValueError, match="positions"):
        SequenceTransformer(5, positions="rotary")
    with pytest.raises(ValueError, match="pooling"):
        SequenceLSTM(5, pooling="max")
    with pytest.raises(ValueError, match="max_len"):
        SequenceTransformer(5, d_model=8, heads=2, positions="learned", max_len=4)(torch.randn(1, 6, 5))
    with pytest.raises(ValueError, match=r"\[B, L, D\]"):
        SequenceLSTM(5)(torch.randn(6, 5))


# --- every method on a three-modality sequence model (MOSI's text / audio / vision) ---------

PARAMS = load_params(Path(__file__).parents[1] / "params.yaml")
TRAIN = {"epochs": 2, "batch_size": 6, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9}
INFO = {"frames_per_clip": 1, "modalities": {m: {"kind": "sequence", "shape": [None, d]} for m, d in DIMS.items()}}


def _split(n: int, seed: int) -> SplitData:
    """``n`` binary-labelled clips with sequences of 1..6 steps per modality (zero padded)."""
    gen = torch.Generator().manual_seed(seed)
    arrays, lengths = {}, {}
    for m, d in DIMS.items():
        lengths[m] = torch.randint(1, 7, (n,), generator=gen)
        mask = torch.arange(6)[None, :] < lengths[m][:, None]
        arrays[m] = torch.randn(n, 6, d, generator=gen) * mask[..., None]
    return SplitData([f"c{i:03d}" for i in range(n)], torch.arange(n) % 2, arrays, lengths, INFO)


def _make(name: str, encoder: str):
    ctx = MethodContext(modalities=list(DIMS), num_classes=2, epochs=TRAIN["epochs"])
    cfg = dict(PARAMS["methods"].get(name, {}))
    try:
        method = build_method(name, cfg, ctx)
        mods = method.modalities(list(DIMS))
    except ValueError as err:  # two-modality-only methods and other datasets' unimodal rows
        pytest.skip(f"{name} does not run on text/audio/vision: {err}")
    ctx.modalities = mods
    torch.manual_seed(0)
    model_cfg = {"fusion": "concat", "encoders": {"sequence": {"name": encoder, **SMALL[encoder]}}}
    model = build_model(model_cfg, mods, DIMS, 2, "concat", {m: "sequence" for m in DIMS})
    model.method_modules.update(method.modules(model.feature_dims, 2))
    splits = {}
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        s = _split(12, seed)
        splits[split] = replace(s, arrays={m: s.arrays[m] for m in mods}, lengths={m: s.lengths[m] for m in mods})
    return method, model, mods, splits


@pytest.mark.parametrize("encoder", ["transformer", "lstm"])
@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_three_sequence_modalities(name, encoder):
    method, model, mods, splits = _make(name, encoder)
    _, _, inputs = train_step(name, method, model, splits)
    assert all(isinstance(inputs[m], SequenceBatch) for m in mods)
    assert_finite_gradients(model, f"{name}/{encoder}")
    method, model, mods, splits = _make(name, encoder)
    res = fit(model, method, splits, TRAIN, seed=0, name=name)
    assert set(res["test"]["probe_acc"]) == set(mods) and 0.0 <= res["test"]["acc"] <= 1.0
