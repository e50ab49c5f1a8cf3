"""Twitter sarcasm: the adapter (list files, labels, skips, errors, features) and the mini generator."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmbalance.datasets import DatasetLayoutError, get_dataset, list_datasets
from mmbalance.datasets.mini import get_generator, list_generators
from mmbalance.datasets.sarcasm import parse_line
from mmbalance.media import MediaError
from mmbalance.media.image import read_image
from mmbalance.media.text import embedding_table, hashed_embeddings, token_bucket, tokenize
from mmbalance.prepare import prepare
from mmbalance.shards import iter_samples, shard_urls

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {"frame_size": 32, "max_tokens": 30}


def _jpeg(path: Path, value: int = 128, size: int = 20) -> None:
    import cv2

    img = np.full((size, size + 4, 3), value, dtype=np.uint8)
    img[: size // 2] = 255 - value  # two halves: a resized image keeps both
    path.write_bytes(cv2.imencode(".jpg", img)[1].tobytes())


@pytest.fixture
def hand(tmp_path) -> Path:
    """A hand-written release: 4 train lines (one malformed, one repeated), 2 valid2, 2 test2
    (one repeating a train id), an image missing, an unlisted image and a stray file."""
    root = tmp_path / "hand"
    (root / "text").mkdir(parents=True)
    (root / "dataset_image").mkdir()
    (root / "text" / "train.txt").write_text(
        "['101', 'oh great , another monday ', 1]\n"
        "['102', \"it 's sunny # sarcasm\", 0]\n"
        "['103', 'no label']\n"
        "['101', 'again', 0]\n"
        "\n"
        "['104', 'missing image', 1]\n", encoding="utf-8")
    (root / "text" / "valid2.txt").write_text("['201', 'yay traffic', 1, 0]\n['202', 'nice photo', 0, 0]\n")
    (root / "text" / "test2.txt").write_text("['301', 'lovely <url>', 1, 1]\n['102', 'dup', 0, 0]\n")
    for tweet in ("101", "102", "201", "202", "301", "999"):
        _jpeg(root / "dataset_image" / f"{tweet}.jpg", value=int(tweet) % 200)
    (root / "dataset_image" / "notes.txt").write_text("x")
    return root


def test_registered():
    assert "sarcasm" in list_datasets() and "sarcasm" in list_generators()
    adapter = get_dataset("sarcasm")
    assert adapter.classes == ("not_sarcastic", "sarcastic") and adapter.modalities == ("image", "text")
    assert adapter.kinds == {"image": "frames", "text": "sequence"} and adapter.frames_per_clip == 1


def test_parse_line_by_hand():
    assert parse_line("['7', 'a b', 1]", "train") == ("7", "a b", 1)
    assert parse_line("['7', 'a', 1, 0]", "test") == ("7", "a", 0)  # annotator = last element
    assert parse_line("['7', 'a', 1, 0]", "val", "hashtag") == ("7", "a", 1)
    for line, split, reason in [("['7', 'a']", "train", "expected a list"), ("['7', 'a', 1]", "test", "hashtag_label"),
                                ("[7 'a', 1]", "train", "not a Python list literal"), ("['x7', 'a', 1]", "train", "not a number"),
                                ("['7', 'a', 2]", "train", "label 2"), ("['7', 3, 1]", "train", "not a string"),
                                ("['7', 'a', True]", "train", "label True")]:
        with pytest.raises(ValueError, match=reason):
            parse_line(line, split)


def test_scan_hand_layout_lists_every_skip(hand):
    clips, skips = get_dataset("sarcasm").scan(hand)
    assert [c.clip_id for c in clips] == ["101", "102", "201", "202", "301"]
    assert {c.clip_id: (c.split, c.label) for c in clips} == {
        "101": ("train", 1), "102": ("train", 0), "201": ("val", 0), "202": ("val", 0), "301": ("test", 1)}
    assert clips[2].paths == {"image": hand / "dataset_image" / "201.jpg", "text": hand / "text" / "valid2.txt"}
    reasons = {(s.clip_id, Path(s.path.split(":")[0]).name): s.reason for s in skips}
    assert "expected a list" in reasons[("train_line00003", "train.txt")]
    assert "listed again (first at line 1)" in reasons[("101", "train.txt")]
    assert reasons[("102", "test2.txt")] == "already listed in train.txt; kept there"
    assert reasons[("104", "train.txt")].startswith("image missing: expected ") and "104.jpg" in reasons[("104", "train.txt")]
    assert "not listed in" in reasons[("999", "999.jpg")] and "image file" in reasons[("notes", "notes.txt")]
    assert [s.path for s in skips if s.clip_id == "104"] == [f"{hand / 'text' / 'train.txt'}:6"]


def test_hashtag_labels_and_keyword_filter(hand):
    clips, _ = get_dataset("sarcasm").scan(hand, label="hashtag")
    assert {c.clip_id: c.label for c in clips}["201"] == 1
    clips, skips = get_dataset("sarcasm").scan(hand, keyword_filter=True)
    assert [c.clip_id for c in clips] == ["101", "201", "202"]  # '# sarcasm' and '<url>' tweets dropped
    dropped = {s.clip_id: s.reason for s in skips if "keyword_filter" in s.reason}
    assert set(dropped) == {"102", "301"} and "'<url>'" in dropped["301"]
    with pytest.raises(ValueError, match="label must be one of"):
        get_dataset("sarcasm").scan(hand, label="both")


def test_split_csv_overrides_the_files(hand, tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("clip_id,split\n101,test\n301,train\n555,val\n")
    clips, skips = get_dataset("sarcasm").scan(hand, split_csv=split)
    assert {c.clip_id: c.split for c in clips} == {"101": "test", "301": "train"}
    reasons = {s.clip_id: s.reason for s in skips}
    assert "listed in split file" in reasons["555"] and reasons["202"] == "not in split file"


def test_layout_errors_name_the_path(hand, tmp_path):
    adapter = get_dataset("sarcasm")
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        adapter.scan(tmp_path / "nowhere")
    (tmp_path / "bare").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"bare/text: expected folder is missing"):
        adapter.scan(tmp_path / "bare")
    (hand / "text" / "valid2.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"text/valid2.txt: split file is missing"):
        adapter.scan(hand)


def test_extract_image_and_hashed_text(hand):
    adapter = get_dataset("sarcasm")
    clips, _ = adapter.scan(hand)
    arrays = adapter.extract(clips[0], RECIPE)
    assert arrays["image"].shape == (1, 32, 32, 3) and arrays["image"].dtype == np.uint8
    top, bottom = arrays["image"][0, 0, 0].astype(int), arrays["image"][0, -1, 0].astype(int)
    assert np.abs(top - 154).max() <= 3 and np.abs(bottom - 101).max() <= 3  # halves 255 - 101 and 101
    expected = hashed_embeddings("oh great , another monday ", max_tokens=30)
    np.testing.assert_array_equal(arrays["text"], expected)
    assert arrays["text"].shape == (5, 32) and arrays["text"].dtype == np.float32
    short = adapter.extract(clips[0], {**RECIPE, "max_tokens": 2, "text_dim": 8})
    assert short["text"].shape == (2, 8)


def test_hashed_text_features_by_hand():
    assert tokenize("Oh <user> GREAT!! it 's") == ["oh", "<user>", "great", "!", "!", "it", "'", "s"]
    digest = hashlib.blake2b(b"great", digest_size=8, person=b"mmbalance-tok").digest()
    assert token_bucket("great", 4096) == int.from_bytes(digest, "little") % 4096
    table = embedding_table(16, 4, 3)
    np.testing.assert_array_equal(table, (np.random.default_rng(3).standard_normal((16, 4)) / 2).astype(np.float32))
    x = hashed_embeddings("b a b", buckets=16, dim=4, seed=3)
    np.testing.assert_array_equal(x, table[[token_bucket("b", 16), token_bucket("a", 16), token_bucket("b", 16)]])
    assert hashed_embeddings(" ,", dim=4).shape == (1, 4) and not hashed_embeddings("", dim=4).any()


def test_hashed_text_is_the_same_in_every_process():
    """Python's str hash is salted per process; the token hash is not."""
    code = "from mmbalance.media.text import hashed_embeddings as h; print(h('yay monday', dim=4).tolist())"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1 and str(hashed_embeddings("yay monday", dim=4).tolist()) == outs.pop().strip()


def test_npy_text_features_and_their_errors(hand):
    adapter = get_dataset("sarcasm")
    clips, _ = adapter.scan(hand)
    folder = hand / "bert"
    folder.mkdir()
    np.save(folder / "101.npy", np.ones((3, 6), dtype=np.float16))
    recipe = {**RECIPE, "text_features": "npy", "text_feature_folder": "bert"}
    out = adapter.extract(clips[0], recipe)
    assert out["text"].shape == (3, 6) and out["text"].dtype == np.float32
    with pytest.raises(MediaError, match=r"bert/102.npy: text feature file does not exist"):
        adapter.extract(clips[1], recipe)
    np.save(folder / "102.npy", np.ones(4))
    with pytest.raises(MediaError, match=r"102.npy: text features must be \[L, D\]"):
        adapter.extract(clips[1], recipe)
    with pytest.raises(ValueError, match="text_features must be one of"):
        adapter.extract(clips[0], {**RECIPE, "text_features": "bert"})


def test_damaged_images_are_media_errors(hand):
    import cv2

    path = hand / "dataset_image" / "101.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # scan data ≫ headers
    data = cv2.imencode(".jpg", noise)[1].tobytes()
    path.write_bytes(data[: len(data) * 8 // 10])
    with pytest.raises(MediaError, match=r"101.jpg: cannot decode image"):
        read_image(path, 32)
    assert read_image(path, 32, truncated="keep").shape == (32, 32, 3)
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="101.jpg: image file is empty"):
        read_image(path, 32)
    path.write_bytes(b"not an image at all")
    with pytest.raises(MediaError, match="not a recognised image format"):
        read_image(path, 32)


# --- mini generator ------------------------------------------------------------------------

KW = {"train_size": 240, "val_size": 40, "test_size": 120, "missing_images": 2, "show_progress": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        root = tmp_path_factory.mktemp(name)
        out[name], out[name + "_summary"] = root, get_generator("sarcasm")(root, seed=seed, **KW)
    return out


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_generator_is_byte_identical_for_a_seed(runs):
    assert _digest(runs["a"]) == _digest(runs["b"]) != _digest(runs["c"])


def test_generator_writes_the_release_layout(runs):
    root = runs["a"]
    assert sorted(p.name for p in (root / "text").iterdir()) == ["test2.txt", "train.txt", "valid2.txt"]
    first = (root / "text" / "test2.txt").read_text().splitlines()[0]
    tweet_id, _, label = parse_line(first, "test")
    assert len(tweet_id) == 18 and (root / "dataset_image" / f"{tweet_id}.jpg").is_file()
    assert len(list((root / "dataset_image").glob("*.jpg"))) == 400 - 2
    clips, skips = get_dataset("sarcasm").scan(root)
    assert Counter(c.split for c in clips) == {"train": 238, "val": 40, "test": 120}
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    assert len(skips) == 2 and all(s.reason.startswith("image missing") for s in skips)
    with (root / "mini_truth.csv").open() as fh:
        truth = {r["tweet_id"]: r for r in csv.DictReader(fh)}
    assert all(int(truth[c.clip_id]["label"]) == c.label for c in clips)
    assert Counter(c.label for c in clips if c.split == "test") == {1: round(0.44 * 120), 0: 120 - round(0.44 * 120)}
    hashtag, _ = get_dataset("sarcasm").scan(root, label="hashtag")
    flips = sum(a.label != b.label for a, b in zip(clips, hashtag, strict=True))
    assert flips == runs["a_summary"]["hashtag_disagreements"] == round(0.05 * 40) + round(0.05 * 120)


def test_generator_refuses_to_overwrite_real_data(tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.txt").write_text("['1', 'real', 0]\n")
    with pytest.raises(FileExistsError, match="not overwriting"):
        get_generator("sarcasm")(tmp_path, **KW)
    assert (tmp_path / "text" / "train.txt").read_text() == "['1', 'real', 0]\n"


def test_text_is_the_strong_modality(tmp_path):
    """At the generator's default size, logistic regression on mean-pooled hashed text beats one on
    the image's Fourier magnitudes, which beats chance (the trained models: text 81 %, image 72 %)."""
    from sklearn.linear_model import LogisticRegression

    get_generator("sarcasm")(tmp_path, seed=0, show_progress=False)
    adapter = get_dataset("sarcasm")
    clips, _ = adapter.scan(tmp_path)
    feats = {"text": {}, "image": {}}
    labels = {}
    for c in clips:
        arrays = adapter.extract(c, RECIPE)
        grey = arrays["image"][0].astype(float).mean(-1)
        feats["text"].setdefault(c.split, []).append(arrays["text"].mean(0))
        feats["image"].setdefault(c.split, []).append(np.abs(np.fft.fft2(grey - grey.mean())).ravel())
        labels.setdefault(c.split, []).append(c.label)
    acc = {m: LogisticRegression(max_iter=2000).fit(f["train"], labels["train"]).score(f["test"], labels["test"])
           for m, f in feats.items()}
    assert acc["text"] > 0.75 and acc["text"] > acc["image"] + 0.05 and acc["image"] > 0.6, acc


def test_prepare_writes_image_and_text_shards(runs, tmp_path):
    index = prepare("sarcasm", runs["a"], tmp_path, RECIPE, {"split_csv": None}, workers=1, shard_max_count=100)
    assert {s: v["count"] for s, v in index["splits"].items()} == {"train": 238, "val": 40, "test": 120}
    assert index["modalities"]["image"] == {"kind": "frames", "dtype": "uint8", "shape": [None, 32, 32, 3], "length": [1, 1]}
    assert index["modalities"]["text"]["kind"] == "sequence" and index["modalities"]["text"]["shape"] == [None, 32]
    lo, hi = index["modalities"]["text"]["length"]
    assert 6 <= lo <= hi <= 30
    assert {s["reason"].split(":")[0] for s in index["skipped"]} == {"image missing"}
    sample = next(iter_samples(shard_urls(tmp_path, "test")))
    assert sample["image"].shape == (1, 32, 32, 3) and sample["text"].dtype == np.float32


@pytest.mark.parametrize("run_name", ["image_only", "text_only"])
def test_unimodal_runs_train_on_prepared_shards(runs, tmp_path, run_name):
    """The image-only and text-only runs train end to end on the prepared shards."""
    from mmbalance.params import load_params, resolve_run
    from mmbalance.train.run import run

    prepare("sarcasm", runs["a"], tmp_path / "shards", RECIPE, {"split_csv": None}, workers=1, shard_max_count=100)
    params = load_params(ROOT / "params.yaml")
    method, cfg, model = resolve_run(params, run_name)
    train = {**params["train"], "epochs": 1, "batch_size": 32}
    res = run(tmp_path / "shards", tmp_path / "out", "sarcasm", method, cfg, model, train, [0], "mini", run_name=run_name)
    assert set(res["seeds"]["0"]["test"]["probe_acc"]) == {run_name.removesuffix("_only")}
    assert np.isfinite(res["seeds"]["0"]["test"]["loss"])
