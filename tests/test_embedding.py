"""t-SNE of trained runs' test embeddings (IPRM Fig. 4): the class-spread numbers by hand, a saved
model through the embed stage, and the IPRM page's section."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmbalance.embedding import MULTIMODAL, class_spread, embed_run, spread_ratio, split_features
from mmbalance.report.embedding import embedding_section, load_embeddings

from conftest import save_concat_run, tiny_split


def test_class_spread_by_hand():
    # class 0 at (0, 0) and (2, 0): centre (1, 0), distances 1, 1; class 1 at (0, 3), (0, 5), (0, 7):
    # centre (0, 5), distances 2, 0, 2 → mean (1 + 1 + 2 + 0 + 2) / 5 = 1.2
    pts = np.array([[0, 0], [2, 0], [0, 3], [0, 5], [0, 7]], dtype=float)
    labels = np.array([0, 0, 1, 1, 1])
    assert class_spread(pts, labels) == pytest.approx(1.2)
    # all-sample centre (0.4, 3): distances √(0.16 + 9), √(2.56 + 9), 0.4, √(0.16 + 4), √(0.16 + 16)
    total = np.mean([np.hypot(0.4, 3), np.hypot(1.6, 3), 0.4, np.hypot(0.4, 2), np.hypot(0.4, 4)])
    assert spread_ratio(pts, labels) == pytest.approx(1.2 / total)


def test_collapsed_classes_have_ratio_zero_and_one_class_ratio_one():
    pts = np.array([[0, 0], [0, 0], [5, 5], [5, 5]], dtype=float)
    assert spread_ratio(pts, np.array([0, 0, 1, 1])) == 0.0
    assert spread_ratio(pts, np.array([0, 0, 0, 0])) == pytest.approx(1.0)


def test_features_are_the_encoders_and_their_concatenation(tmp_path):
    info, model, _ = save_concat_run(tmp_path)
    data = tiny_split(12, seed=1)
    views, labels = split_features(model, data, batch_size=5)
    assert list(views) == ["audio", "visual", MULTIMODAL] and labels.tolist() == data.labels.tolist()
    assert np.array_equal(views[MULTIMODAL], np.concatenate([views["audio"], views["visual"]], axis=1))


def test_embed_run_writes_points_and_spreads_for_every_view(tmp_path):
    info, _, folder = save_concat_run(tmp_path)
    data = tiny_split(24, seed=3)
    res = embed_run(folder, info, data, model_seed=0, perplexity=30, seed=0)
    assert res["views"] == ["audio", "visual", MULTIMODAL] and res["method"] == "concat"
    for view in res["views"]:
        assert np.array(res["points"][view]).shape == (24, 2)
        assert res["spread_2d"][view] > 0 and 0 < res["spread_ratio"][view] <= 1.5
    again = embed_run(folder, info, data, model_seed=0, perplexity=30, seed=0)
    assert again["points"] == res["points"]  # fixed seed: the same map
    with pytest.raises(FileNotFoundError, match="seed3.pt"):
        embed_run(folder, info, data, model_seed=3, perplexity=30, seed=0)


def test_the_iprm_page_section_draws_and_tabulates(tmp_path):
    body = {"dataset": "cremad", "run": "iprm", "views": ["audio", "visual", MULTIMODAL], "labels": [0, 1, 0, 1],
            "points": {v: [[0, 0], [1, 1], [0, 1], [1, 0]] for v in ("audio", "visual", MULTIMODAL)},
            "spread_2d": {"audio": 0.5, "visual": 0.7, MULTIMODAL: 0.4},
            "spread_ratio": {"audio": 0.81, "visual": 0.9, MULTIMODAL: 0.75}, "perplexity": 30.0, "model_seed": 0}
    (tmp_path / "iprm.json").write_text(json.dumps(body))
    loaded = load_embeddings([tmp_path / "iprm.json"])
    text = embedding_section(loaded, tmp_path)
    assert "paper Fig. 4" in text and "| IPRM |" in text and "0.70" in text and "0.750" in text
    assert (tmp_path / "plots" / "cremad" / "tsne.png").stat().st_size > 0
    assert embedding_section({}, tmp_path) is None
    (tmp_path / "mla.json").write_text(json.dumps({**body, "run": "mla"}))
    files = [tmp_path / "iprm.json", tmp_path / "mla.json"]
    assert [r["run"] for r in load_embeddings(files, {"cremad": ["mla", "iprm"]})["cremad"]] == ["mla", "iprm"]
    assert [r["run"] for r in load_embeddings(files, {})["cremad"]] == ["iprm", "mla"]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        load_embeddings([tmp_path / "bad.json"])
