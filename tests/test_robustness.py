"""Missing-modality robustness (mmbalance.evaluate.robustness) on a tiny CPU model."""

from __future__ import annotations

from dataclasses import replace

import torch

from mmbalance.evaluate.robustness import (
    EvalInputs,
    accuracy_with_drops,
    evaluate_runs,
    keep_masks,
    load_trained,
    sweep,
    uniform_draws,
)
from mmbalance.train.data import batches, split_from_samples

from conftest import INFO, MODEL_CFG, save_concat_run, tiny_split
from test_methods import make

PROBS = [0.0, 0.25, 0.5, 0.75, 1.0]


@torch.no_grad()
def plain_accuracy(model, method, data) -> float:
    """Accuracy of method.predict(model(inputs)) with nothing dropped, computed independently."""
    model.eval()
    correct = 0
    for inputs, labels in batches(data, 5, train=False, gen=torch.Generator().manual_seed(0)):
        correct += int((method.predict(model(inputs)).argmax(1) == labels).sum())
    return correct / len(data)


def test_p0_equals_plain_accuracy():
    method, model, _ = make("concat")
    data = tiny_split(24, seed=2)
    res = sweep(model, method, data, PROBS, seed=0, batch_size=7)
    plain = plain_accuracy(model, method, data)
    assert res["plain_acc"] == plain
    for m in ("audio", "visual"):
        assert res["drop"][m][0] == plain
        assert len(res["drop"][m]) == len(PROBS)


@torch.no_grad()
def test_p1_for_both_modalities_drops_everything():
    method, model, _ = make("concat")
    data = tiny_split(24, seed=2)
    # every feature zero: the concat head gives its bias for every sample, one class for all
    zeros = {m: torch.zeros(1, d) for m, d in model.feature_dims.items()}
    constant = int(method.predict(model.fuse(zeros)).argmax(1))
    everything = {"audio": 1.0, "visual": 1.0}
    same = replace(data, labels=torch.full_like(data.labels, constant))
    other = replace(data, labels=torch.full_like(data.labels, (constant + 1) % 6))
    assert accuracy_with_drops(model, method, same, everything) == 1.0
    assert accuracy_with_drops(model, method, other, everything) == 0.0
    assert accuracy_with_drops(model, method, data, everything) == int((data.labels == constant).sum()) / len(data)


def test_masks_are_nested_seeded_and_exact_at_the_ends():
    draws = uniform_draws(1000, ["audio", "visual"], seed=3)
    assert torch.equal(draws["audio"], uniform_draws(1000, ["audio", "visual"], seed=3)["audio"])
    assert not torch.equal(draws["audio"], uniform_draws(1000, ["audio", "visual"], seed=4)["audio"])
    keep = {p: keep_masks(draws, {"audio": p})["audio"] for p in PROBS}
    assert keep[0.0].min() == 1.0 and keep[1.0].max() == 0.0
    for lo, hi in zip(PROBS, PROBS[1:]):
        assert bool((keep[hi] <= keep[lo]).all())  # dropped at p -> dropped at any larger p
    assert abs(float(1 - keep[0.5].mean()) - 0.5) < 0.06


def test_batch_size_does_not_change_the_masks():
    method, model, _ = make("concat")
    data = tiny_split(24, seed=2)
    a = accuracy_with_drops(model, method, data, {"visual": 0.5}, seed=1, batch_size=5)
    b = accuracy_with_drops(model, method, data, {"visual": 0.5}, seed=1, batch_size=64)
    assert a == b


@torch.no_grad()
def test_drops_score_the_whole_model_with_masks():
    """Scoring runs only the fusion head on features encoded once (``encoded_split``): the same
    accuracy as the whole model run with the masks, ``model(inputs, keep=...)``, batch by batch."""
    method, model, _ = make("concat")
    model.eval()
    data = tiny_split(40, seed=5)
    keep = keep_masks(uniform_draws(len(data), model.modalities, 2), {"audio": 0.5, "visual": 0.3})
    correct, start = 0, 0
    for inputs, labels in batches(data, 7, train=False, gen=torch.Generator().manual_seed(0)):
        out = model(inputs, keep={m: k[start:start + len(labels)] for m, k in keep.items()})
        correct += int((method.predict(out).argmax(1) == labels).sum())
        start += len(labels)
    assert accuracy_with_drops(model, method, data, {"audio": 0.5, "visual": 0.3}, seed=2, batch_size=7) == correct / len(data)


def test_unimodal_model_sweeps_its_own_modality_only():
    method, model, mods = make("audio_only")
    assert mods == ["audio"]
    res = sweep(model, method, tiny_split(12, seed=2), [0.0, 1.0])
    assert set(res["drop"]) == {"audio"}


def test_saved_models_round_trip(tmp_path):
    info, model, folder = save_concat_run(tmp_path)
    method, loaded, _ = load_trained(folder / "seed0.pt", info)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    logs = []
    data = tiny_split(12, seed=2)
    out = evaluate_runs([folder, tmp_path / "empty"], ["concat", "opm"], info, data, [0.0, 1.0], log=logs.append)
    assert out["missing"] == ["opm"] and "opm" in logs[0]
    seed0 = out["runs"]["concat"]["seeds"]["0"]
    assert seed0["drop"]["audio"][0] == seed0["plain_acc"] == plain_accuracy(loaded, method, data)
    assert out["runs"]["concat"]["method_state"] == "absent"


def test_joint_grid_of_fig6_drops_both_modalities_at_once():
    """Fig. 6: the first modality missing with each fixed p and the second with each varied p in
    the same forward pass; (0, 0) is the plain accuracy and each cell equals the two-modality drop."""
    from mmbalance.evaluate.robustness import joint_sweep

    method, model, _ = make("concat")
    data = tiny_split(24, seed=2)
    grid = joint_sweep(model, method, data, [0.0, 0.2], [0.0, 0.1, 1.0], seed=3, batch_size=7)
    assert (grid["fixed"], grid["varied"]) == ("audio", "visual")
    assert grid["acc"][0][0] == plain_accuracy(model, method, data)
    for i, pf in enumerate([0.0, 0.2]):
        for j, pv in enumerate([0.0, 0.1, 1.0]):
            assert grid["acc"][i][j] == accuracy_with_drops(model, method, data, {"audio": pf, "visual": pv}, 3, 7)
    # masks of the two modalities are independent draws: a sample may lose one, the other or both
    draws = uniform_draws(400, ["audio", "visual"], 0)
    keep = keep_masks(draws, {"audio": 0.5, "visual": 0.5})
    both = float(((keep["audio"] == 0) & (keep["visual"] == 0)).float().mean())
    assert 0.18 < both < 0.32  # ≈ 0.5 · 0.5


def test_joint_grid_needs_two_modalities():
    from mmbalance.evaluate.robustness import joint_sweep

    method, model, _ = make("audio_only")
    assert joint_sweep(model, method, tiny_split(12), [0.1], [0.1]) is None


def test_models_read_spectrograms_as_the_trainer_did():
    """Evaluation pools each spectrogram once to the model's encoder input size exactly as the
    train stage's split holds it (``split_from_samples`` with the pool sizes; 300 clips: two
    chunks), not per batch in the encoder: for event localisation, whose clips are cut into
    segments before the encoder pools, those differ. Kept per size; a model without an input
    size reads the stored array."""
    data = tiny_split(300, seed=1)
    samples = [{"key": k, "label": int(y), "audio": a[0].numpy(), "visual": v.numpy()}
               for k, y, a, v in zip(data.keys, data.labels, data.arrays["audio"], data.arrays["visual"])]
    trained_on = split_from_samples(samples, ["audio", "visual"], INFO, {"audio": [16, 20]})
    inputs = EvalInputs(data, INFO)
    pooled = inputs.for_model(MODEL_CFG)
    assert pooled.arrays["audio"].shape == (300, 1, 16, 20)
    assert torch.equal(pooled.arrays["audio"], trained_on.arrays["audio"])
    assert torch.equal(pooled.arrays["visual"], data.arrays["visual"])
    assert inputs.for_model(MODEL_CFG) is pooled
    unpooled = {**MODEL_CFG, "encoders": {**MODEL_CFG["encoders"], "audio": {"name": "tiny_cnn", "channels": [4, 8]}}}
    assert inputs.for_model(unpooled).arrays["audio"] is data.arrays["audio"]
