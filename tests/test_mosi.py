"""CMU-MOSI: the pickle adapter (both layouts, labels, ids, padding, errors) and the mini generator."""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmbalance.datasets import DatasetLayoutError, get_dataset, list_datasets
from mmbalance.datasets.mini import get_generator, list_generators
from mmbalance.datasets.mini import mosi as mini_mosi
from mmbalance.datasets.mosi import NEUTRAL_REASON, binary_label, clip_ids, true_length
from mmbalance.media import MediaError
from mmbalance.prepare import prepare
from mmbalance.shards import iter_samples, shard_urls

L = 6


def _seq(lengths, dim, left=True, seed=0):
    """[N, L, dim] float32 of ones-based values, zero-padded on the left (MulT) or right."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(lengths), L, dim), dtype=np.float32)
    for i, n in enumerate(lengths):
        rows = slice(L - n, L) if left else slice(0, n)
        out[i, rows] = rng.uniform(0.5, 1.5, (n, dim))
    return out


def _mult_split(labels, lengths, ids):
    n = len(labels)
    return {"text": _seq(lengths, 4), "audio": _seq(lengths, 2, seed=1), "vision": _seq(lengths, 3, seed=2),
            "labels": np.asarray(labels, dtype=np.float32).reshape(n, 1, 1), "id": np.array(ids, dtype="S12")}


def _write(root: Path, data: dict, name: str = "mosi_data.pkl") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / name).open("wb") as fh:
        pickle.dump(data, fh, protocol=4)
    return root


@pytest.fixture
def mult(tmp_path) -> Path:
    """MulT layout: 4 train (one label 0), 2 valid, 3 test; ids are [video, segment, start] rows."""
    data = {
        "train": _mult_split([1.4, -0.6, 0.0, 2.0], [6, 3, 2, 1],
                             [[b"vidA", b"1", b"0.0"], [b"vidA", b"2", b"3.5"], [b"vidB", b"1", b"0.0"], [b"vidB", b"2", b"1.2"]]),
        "valid": _mult_split([-2.0, 0.2], [4, 5], [[b"vidC", b"1", b"0.0"], [b"vidC", b"2", b"2.0"]]),
        "test": _mult_split([-0.4, 3.0, -1.0], [2, 6, 3], [[b"vidD", b"1", b"0.0"], [b"vidD", b"2", b"1.0"], [b"vidD", b"3", b"2.0"]]),
    }
    data["train"]["audio"][0, 2, 1] = -np.inf  # COVAREP -inf → 0
    data["test"]["vision"][2] = 0.0  # a vision stream with no real step at all
    return _write(tmp_path / "mult", data)


def _mmsa_split(labels, lengths, ids):
    n = len(labels)
    return {"text": _seq([L] * n, 4, left=False), "audio": _seq(lengths, 2, left=False, seed=1),
            "vision": _seq(lengths, 3, left=False, seed=2), "regression_labels": np.asarray(labels, dtype=np.float32),
            "id": list(ids), "audio_lengths": list(lengths), "vision_lengths": list(lengths),
            "raw_text": ["x"] * n, "classification_labels": np.zeros(n)}


def test_registered():
    assert "mosi" in list_datasets() and "mosi" in list_generators()
    adapter = get_dataset("mosi")
    assert adapter.classes == ("negative", "positive") and adapter.modalities == ("text", "audio", "vision")
    assert set(adapter.kinds.values()) == {"sequence"}


def test_mult_scan_splits_labels_and_neutral_skip(mult):
    clips, skips = get_dataset("mosi").scan(mult)
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    by_id = {c.clip_id: c for c in clips}
    assert Counter(c.split for c in clips) == {"train": 3, "val": 2, "test": 3}
    assert by_id["vidA_1_0_0"].label == 1 and by_id["vidA_2_3_5"].label == 0  # 1.4 → pos, −0.6 → neg
    assert by_id["vidC_2_2_0"].split == "val" and by_id["vidC_2_2_0"].label == 1
    (skip,) = skips
    assert skip.clip_id == "vidB_1_0_0" and skip.reason == NEUTRAL_REASON and skip.path.endswith("mosi_data.pkl")
    assert all(c.paths == {"features": mult / "mosi_data.pkl"} for c in clips)


def test_zero_label_positive_keeps_neutral_utterances(mult):
    clips, skips = get_dataset("mosi").scan(mult, zero_label="positive")
    assert not skips and {c.clip_id: c.label for c in clips}["vidB_1_0_0"] == 1
    with pytest.raises(ValueError, match="zero_label"):
        get_dataset("mosi").scan(mult, zero_label="negative")


def test_binary_label_by_hand():
    assert [binary_label(v) for v in (-3.0, -0.2, 0.0, 0.2, 3.0)] == [0, 0, None, 1, 1]
    assert binary_label(0.0, "positive") == 1 and binary_label(float("nan")) is None


def test_extract_trims_left_padding_and_cleans_inf(mult):
    adapter = get_dataset("mosi")
    clips, _ = adapter.scan(mult)
    by_id = {c.clip_id: c for c in clips}
    first = adapter.extract(by_id["vidA_1_0_0"], {})
    assert {k: v.shape for k, v in first.items()} == {"text": (6, 4), "audio": (6, 2), "vision": (6, 3)}
    assert all(v.dtype == np.float32 for v in first.values())
    assert first["audio"][2, 1] == 0.0 and np.isfinite(first["audio"]).all()
    short = adapter.extract(by_id["vidA_2_3_5"], {})
    data = pickle.loads((mult / "mosi_data.pkl").read_bytes())
    np.testing.assert_array_equal(short["text"], data["train"]["text"][1, L - 3 :])
    blank = adapter.extract(by_id["vidD_3_2_0"], {})
    assert blank["vision"].shape == (1, 3) and not blank["vision"].any()  # all-zero keeps one step
    assert blank["text"].shape == (3, 4)


def test_true_length_both_ends():
    x = np.zeros((7, 2), dtype=np.float32)
    x[2, 0], x[4, 1] = 1.0, 2.0  # zero step 3 inside stays
    assert true_length(x) == (2, 5) and true_length(np.zeros((4, 2))) == (0, 1)


def test_non_finite_features_are_a_listed_media_error(mult, tmp_path):
    data = pickle.loads((mult / "mosi_data.pkl").read_bytes())
    data["valid"]["text"][0, 3, 0] = np.nan
    root = _write(tmp_path / "nan", data)
    adapter = get_dataset("mosi")
    clips, _ = adapter.scan(root)
    bad = next(c for c in clips if c.clip_id == "vidC_1_0_0")
    with pytest.raises(MediaError, match=r"mosi_data.pkl.*valid\[0\].*non-finite text"):
        adapter.extract(bad, {})
    data["valid"]["text"][0, 3, 0] = 1.0
    data["valid"]["vision"][0, 3, 0] = -np.inf  # -inf is zeroed in audio only, as the reference loaders do
    root = _write(tmp_path / "inf", data)
    clip = next(c for c in adapter.scan(root)[0] if c.clip_id == "vidC_1_0_0")
    with pytest.raises(MediaError, match="non-finite vision"):
        adapter.extract(clip, {})


def test_mmsa_layout_uses_lengths_and_string_ids(tmp_path):
    data = {
        "train": _mmsa_split([1.0, -1.0, 0.0], [2, 4, 3], ["v1$_$1", "v1$_$2", "v2$_$1"]),
        "valid": _mmsa_split([0.6], [5], ["v3$_$1"]),
        "test": _mmsa_split([-2.2, 1.8], [6, 1], ["v4$_$1", "v4$_$2"]),
    }
    data["train"]["audio"][0, 1] = 0.0  # a real but all-zero step inside the given length stays
    root = _write(tmp_path / "mmsa", data, "unaligned_50.pkl")
    adapter = get_dataset("mosi")
    clips, skips = adapter.scan(root, pickle="unaligned_50.pkl")
    assert [c.clip_id for c in clips] == ["v1_1", "v1_2", "v3_1", "v4_1", "v4_2"]
    assert [s.clip_id for s in skips] == ["v2_1"]
    arrays = adapter.extract(clips[0], {})
    assert arrays["audio"].shape == (2, 2) and not arrays["audio"][1].any()
    assert arrays["text"].shape == (6, 4) and adapter.extract(clips[-1], {})["vision"].shape == (1, 3)


def test_repeated_ids_get_split_and_row(tmp_path):
    ids = clip_ids({"train": {"text": np.zeros((2, 1, 1)), "id": ["a.b", "c"]},
                    "test": {"text": np.zeros((2, 1, 1)), "id": ["a.b", "d/e"]}})
    assert ids == {"train": ["a_b__train_00000", "c"], "test": ["a_b__test_00000", "d_e"]}
    no_ids = clip_ids({"train": {"text": np.zeros((2, 1, 1))}})
    assert no_ids == {"train": ["train_00000", "train_00001"]}


def test_split_csv_overrides_the_file(mult, tmp_path):
    csv = tmp_path / "split.csv"
    csv.write_text("clip_id,split\nvidA_1_0_0,test\nvidD_2_1_0,train\nnot_there,val\n")
    clips, skips = get_dataset("mosi").scan(mult, split_csv=csv)
    assert {c.clip_id: c.split for c in clips} == {"vidA_1_0_0": "test", "vidD_2_1_0": "train"}
    reasons = {s.clip_id: s.reason for s in skips}
    assert "listed in split file" in reasons["not_there"] and reasons["vidC_1_0_0"] == "not in split file"


def test_missing_valid_split_holds_out_val_from_train(mult, tmp_path):
    data = pickle.loads((mult / "mosi_data.pkl").read_bytes())
    del data["valid"]
    clips, _ = get_dataset("mosi").scan(_write(tmp_path / "noval", data), val_fraction=0.34)
    assert Counter(c.split for c in clips) == {"train": 2, "val": 1, "test": 3}


def test_layout_errors_name_the_file_and_keys(tmp_path):
    adapter = get_dataset("mosi")
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        adapter.scan(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"mosi_data.pkl: MOSI feature pickle not found"):
        adapter.scan(tmp_path / "empty")
    bad = {"train": {"text": np.zeros((1, 2, 3)), "audio": np.zeros((1, 2, 1))}, "test": {}}
    _write(tmp_path / "keys", bad)
    with pytest.raises(DatasetLayoutError, match=r"keys/mosi_data.pkl: split 'train'.*missing keys \['vision', 'labels"):
        adapter.scan(tmp_path / "keys")
    _write(tmp_path / "nosplit", {"train": {}})
    with pytest.raises(DatasetLayoutError, match=r"missing split keys \['test'\]"):
        adapter.scan(tmp_path / "nosplit")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "mosi_data.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DatasetLayoutError, match="cannot be read as a pickle"):
        adapter.scan(tmp_path / "junk")


# --- mini generator ------------------------------------------------------------------------

KW = {"utterances": 240, "show_progress": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        root = tmp_path_factory.mktemp(name)
        out[name], out[name + "_summary"] = root, get_generator("mosi")(root, seed=seed, **KW)
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generator_is_byte_identical_for_a_seed(runs):
    assert _digest(runs["a"] / "mosi_data.pkl") == _digest(runs["b"] / "mosi_data.pkl")
    assert _digest(runs["a"] / "mosi_data.pkl") != _digest(runs["c"] / "mosi_data.pkl")
    assert (runs["a"] / "mini_truth.csv").read_bytes() == (runs["b"] / "mini_truth.csv").read_bytes()


def test_generator_writes_the_mult_layout(runs):
    data = pickle.loads((runs["a"] / "mosi_data.pkl").read_bytes())
    assert list(data) == ["train", "valid", "test"]
    n = 0
    for split in data.values():
        k = len(split["labels"])
        n += k
        assert split["text"].shape == (k, 50, 300) and split["audio"].shape == (k, 50, 5)
        assert split["vision"].shape == (k, 50, 20) and split["labels"].shape == (k, 1, 1)
        assert split["id"].shape == (k, 3) and split["text"].dtype == np.float32
        assert np.abs(split["labels"]).max() <= 3.0
        assert not split["text"][:, 0].any()  # left padding: no utterance uses all 50 steps
    assert n == 240 and runs["a_summary"]["neutral"] == round(0.04 * 240)
    assert sum(runs["a_summary"]["split_counts"].values()) == 240
    audio = np.concatenate([s["audio"] for s in data.values()])
    assert np.isneginf(audio).sum() == round(0.01 * 240)


def test_generator_refuses_to_overwrite_real_data(tmp_path):
    (tmp_path / "mosi_data.pkl").write_bytes(b"real")
    with pytest.raises(FileExistsError, match="not overwriting"):
        get_generator("mosi")(tmp_path, **KW)
    assert get_generator("mosi") is mini_mosi.generate_mosi


def _pooled(data: dict, split: str, modality: str) -> np.ndarray:
    x = np.where(np.isneginf(data[split][modality]), 0.0, data[split][modality])
    return x.sum(1) / np.maximum((x != 0).any(-1).sum(1, keepdims=True), 1)


def test_text_is_the_strong_modality(runs):
    """A nearest-class-mean rule on mean-pooled features: text ≫ audio, vision > chance."""
    data = pickle.loads((runs["a"] / "mosi_data.pkl").read_bytes())
    acc = {}
    for m in ("text", "audio", "vision"):
        y = {s: data[s]["labels"].reshape(-1) for s in ("train", "test")}
        x = {s: _pooled(data, s, m) for s in ("train", "test")}
        w = x["train"][y["train"] > 0].mean(0) - x["train"][y["train"] < 0].mean(0)
        b = w @ (x["train"][y["train"] > 0].mean(0) + x["train"][y["train"] < 0].mean(0)) / 2
        keep = y["test"] != 0
        acc[m] = float(((x["test"][keep] @ w > b) == (y["test"][keep] > 0)).mean())
    assert acc["text"] > 0.8 and acc["text"] > acc["audio"] + 0.1 and acc["text"] > acc["vision"] + 0.1


def test_prepare_writes_sequence_shards(runs, tmp_path):
    split = {"split_csv": None, "pickle": "mosi_data.pkl", "zero_label": "drop"}
    index = prepare("mosi", runs["a"], tmp_path, {}, split, workers=1, shard_max_count=100)
    counts = runs["a_summary"]["split_counts"]
    assert sum(v["count"] for v in index["splits"].values()) == 240 - runs["a_summary"]["neutral"]
    assert index["splits"]["val"]["count"] <= counts["valid"]
    assert {m: s["kind"] for m, s in index["modalities"].items()} == {"text": "sequence", "audio": "sequence", "vision": "sequence"}
    assert index["modalities"]["text"]["shape"] == [None, 300] and index["modalities"]["audio"]["shape"] == [None, 5]
    lo, hi = index["modalities"]["text"]["length"]
    assert 5 <= lo <= hi <= 30
    assert {s["reason"] for s in index["skipped"]} == {NEUTRAL_REASON}
    sample = next(iter_samples(shard_urls(tmp_path, "test")))
    assert sample["vision"].dtype == np.float32 and sample["vision"].shape[1] == 20


@pytest.mark.parametrize("run_name", ["text_only", "vision_only"])
def test_unimodal_runs_train_on_prepared_shards(runs, tmp_path, run_name):
    """MOSI's text-only and vision-only runs train end to end on sequence shards."""
    from mmbalance.params import load_params, resolve_run
    from mmbalance.train.run import run

    split = {"split_csv": None, "pickle": "mosi_data.pkl", "zero_label": "drop"}
    prepare("mosi", runs["a"], tmp_path / "shards", {}, split, workers=1, shard_max_count=100)
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    method, cfg, model = resolve_run(params, run_name)
    train = {**params["train"], "epochs": 1, "batch_size": 32}
    res = run(tmp_path / "shards", tmp_path / "out", "mosi", method, cfg, model, train, [0], "mini", run_name=run_name)
    assert set(res["seeds"]["0"]["test"]["probe_acc"]) == {run_name.removesuffix("_only")}
    assert np.isfinite(res["seeds"]["0"]["test"]["loss"])
