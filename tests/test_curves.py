"""curves.json: the run's per-epoch curves the report reads, and DVCLive's logs of the same points."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mmbalance.evaluate import curves

# Two epochs of the loop's history: a diagnostic that is non-finite in the first epoch, numpy
# scalars as scikit-learn returns them.
HISTORY = [
    {"epoch": 0, "train_loss": 1.5, "rho_audio": float("nan"),
     "val": {"acc": np.float64(0.25), "loss": 1.4, "probe_acc": {"audio": 0.5, "visual": 0.125}},
     "test": {"acc": 0.3, "loss": 1.3, "probe_acc": {"audio": 0.4, "visual": 0.2}}},
    {"epoch": 1, "train_loss": 1.25, "rho_audio": 2.0,
     "val": {"acc": 0.5, "loss": 1.1, "probe_acc": {"audio": 0.625, "visual": 0.25}},
     "test": {"acc": 0.6, "loss": 1.0, "probe_acc": {"audio": 0.55, "visual": 0.35}}},
]


def test_from_history_by_hand():
    got = curves.from_history(HISTORY)
    assert got["train/train_loss"] == {"step": [0, 1], "value": [1.5, 1.25]}
    assert got["train/rho_audio"] == {"step": [1], "value": [2.0]}  # the NaN epoch left out
    assert got["val/acc"] == {"step": [0, 1], "value": [0.25, 0.5]}
    assert got["test/probe_acc_visual"] == {"step": [0, 1], "value": [0.2, 0.35]}
    assert set(got) == {"train/train_loss", "train/rho_audio", "val/acc", "val/probe_acc_audio", "val/probe_acc_visual",
                        "test/acc", "test/probe_acc_audio", "test/probe_acc_visual"}


def test_curves_equal_the_dvclive_logs(tmp_path):
    """The points the loop hands DVCLive, read back from DVCLive's TSVs, are curves.json's."""
    from mmbalance.train.loop import _log_epoch
    from mmbalance.train.run import _live

    for seed in (0, 1):
        with _live(tmp_path / "live" / f"seed{seed}", True) as live:
            for row in HISTORY:
                _log_epoch(live, row)
    expected = {"0": curves.from_history(HISTORY), "1": curves.from_history(HISTORY)}
    assert curves.from_dvclive(tmp_path / "live") == expected
    curves.main([str(tmp_path)])  # the converter for runs trained before curves.json
    assert curves.read(tmp_path / "curves.json") == expected


def test_write_read_round_trip(tmp_path):
    data = {"10": {"test/acc": {"step": [0], "value": [0.5]}},
            "2": {"test/acc": {"step": [0, 1], "value": [1 / 3, math.pi]}, "train/train_loss": {"step": [], "value": []}}}
    curves.write(tmp_path / "curves.json", data)
    text = (tmp_path / "curves.json").read_text()
    assert curves.read(tmp_path / "curves.json") == data == json.loads(text)
    assert text.index('"2"') < text.index('"10"')  # seeds in numeric order, one series per line
    assert text.count("\n") == 1 + 2 + 1 + 2 + 1 + 1 + 1


def test_bad_curves_name_the_file(tmp_path):
    (tmp_path / "curves.json").write_text(json.dumps({"0": {"test/acc": {"step": [0, 1], "value": [0.5]}}}))
    with pytest.raises(ValueError, match=r"curves.json: seed 0, series 'test/acc'"):
        curves.read(tmp_path / "curves.json")
    with pytest.raises(SystemExit, match="no DVCLive folder"):
        curves.main([str(tmp_path / "missing")])
