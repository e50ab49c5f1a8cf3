"""Modality Shapley values (mmbalance.evaluate.shapley): the formula against hand-computed values,
and the coalition accuracies of a tiny CPU model through the robustness masking."""

from __future__ import annotations

import pytest
import torch

from mmbalance.evaluate.robustness import accuracy_with_drops
from mmbalance.evaluate.shapley import coalitions, shapley_runs, shapley_seed, shapley_values
from mmbalance.train.run import build_run

from conftest import INFO, MODEL_CFG, tiny_split
from test_methods import make
from test_robustness import plain_accuracy


def v(table: dict[str, float]) -> dict[frozenset, float]:
    """Coalition values written as {"at": 0.8, "": 0.1} (one letter per modality)."""
    names = {"a": "audio", "t": "text", "v": "visual"}
    return {frozenset(names[c] for c in key): value for key, value in table.items()}


def test_two_modalities_by_hand():
    # v(∅) 0.17, v(a) 0.60, v(v) 0.40, v(av) 0.66:
    # φa = ½ (0.60 − 0.17) + ½ (0.66 − 0.40) = 0.345; φv = ½ (0.40 − 0.17) + ½ (0.66 − 0.60) = 0.145
    phi = shapley_values(["audio", "visual"], v({"": 0.17, "a": 0.60, "v": 0.40, "av": 0.66}))
    assert phi == pytest.approx({"audio": 0.345, "visual": 0.145})


def test_three_modalities_by_hand():
    # weights |S|!(n−|S|−1)!/n! for n = 3: 1/3 (|S| = 0), 1/6 (|S| = 1), 1/3 (|S| = 2)
    # φa = (0.5−0.1)/3 + (0.8−0.7)/6 + (0.6−0.3)/6 + (0.9−0.75)/3 = 0.25
    # φt = (0.7−0.1)/3 + (0.8−0.5)/6 + (0.75−0.3)/6 + (0.9−0.6)/3 = 0.425
    # φv = (0.3−0.1)/3 + (0.6−0.5)/6 + (0.75−0.7)/6 + (0.9−0.8)/3 = 0.125
    value = v({"": 0.1, "a": 0.5, "t": 0.7, "v": 0.3, "at": 0.8, "av": 0.6, "tv": 0.75, "atv": 0.9})
    phi = shapley_values(["audio", "text", "visual"], value)
    assert phi == pytest.approx({"audio": 0.25, "text": 0.425, "visual": 0.125})
    assert sum(phi.values()) == pytest.approx(0.9 - 0.1)  # efficiency


def test_one_modality_gets_the_whole_gain_and_gaps_are_named():
    assert shapley_values(["audio"], v({"": 0.2, "a": 0.7})) == pytest.approx({"audio": 0.5})
    with pytest.raises(KeyError, match="visual"):
        shapley_values(["audio", "visual"], v({"": 0.2, "a": 0.7, "av": 0.8}))


def test_coalitions_of_three_are_the_eight_subsets():
    subsets = coalitions(["a", "t", "v"])
    assert len(subsets) == 8 and subsets[0] == () and subsets[-1] == ("a", "t", "v")


def test_coalition_accuracies_use_the_robustness_masking():
    method, model, _ = make("concat")
    data = tiny_split(24, seed=2)
    res = shapley_seed(model, method, data, batch_size=7)
    acc = {tuple(c["present"]): c["acc"] for c in res["coalitions"]}
    assert acc[("audio", "visual")] == plain_accuracy(model, method, data)
    assert acc[()] == accuracy_with_drops(model, method, data, {"audio": 1.0, "visual": 1.0})
    assert acc[("audio",)] == accuracy_with_drops(model, method, data, {"visual": 1.0})
    assert sum(res["shapley"].values()) == pytest.approx(acc[("audio", "visual")] - acc[()])


def test_saved_runs_per_seed_and_missing_folders(tmp_path):
    info = {**INFO, "classes": [f"c{i}" for i in range(6)]}
    folder = tmp_path / "concat"
    folder.mkdir()
    for seed in (0, 1):
        torch.manual_seed(seed)
        _, model = build_run(info, "concat", {}, MODEL_CFG, 2)
        torch.save({"state": model.state_dict(), "method": "concat", "method_cfg": {}, "model_cfg": MODEL_CFG,
                    "epochs": 2, "seed": seed}, folder / f"seed{seed}.pt")
    (tmp_path / "empty").mkdir()
    logs = []
    out = shapley_runs([folder, tmp_path / "empty"], info, tiny_split(12, seed=2), log=logs.append)
    assert out["missing"] == ["empty"] and "empty" in logs[0]
    run = out["runs"]["concat"]
    assert sorted(run["seeds"]) == ["0", "1"] and run["modalities"] == ["audio", "visual"]
    assert "masked" in out["empty_set"]


def test_a_run_that_cannot_predict_is_skipped_with_its_reason(tmp_path, monkeypatch):
    import mmbalance.evaluate.shapley as shapley

    def fails(*args, **kwargs):
        raise RuntimeError("predict needs training-time state")

    (tmp_path / "greedy").mkdir()
    (tmp_path / "greedy" / "seed0.pt").write_bytes(b"")
    monkeypatch.setattr(shapley, "shapley_run", fails)
    logs = []
    out = shapley_runs([tmp_path / "greedy"], {}, tiny_split(6), log=logs.append)
    assert out["runs"] == {} and out["skipped"] == {"greedy": "predict needs training-time state"}
    assert "greedy" in logs[0] and "training-time state" in logs[0]


def test_greedy_reloaded_predicts_without_a_training_forward(tmp_path):
    """Greedy fuses gated features with the model's fusion head at test time: a reloaded model
    (no training forward, no epoch hook) has it through ``Method.bind`` and gets Shapley values."""
    info = {**INFO, "classes": [f"c{i}" for i in range(6)]}
    folder = tmp_path / "greedy"
    folder.mkdir()
    method, model = build_run(info, "greedy", {}, MODEL_CFG, 2)
    torch.save({"state": model.state_dict(), "method": "greedy", "method_cfg": {}, "model_cfg": MODEL_CFG,
                "epochs": 2, "seed": 0, "method_state": method.state_dict()}, folder / "seed0.pt")
    out = shapley_runs([folder], info, tiny_split(12, seed=2))
    assert out["skipped"] == {} and sorted(out["runs"]["greedy"]["seeds"]) == ["0"]
