"""AVE event localisation: segment labels, the ave_loc adapter and generator, per-segment targets
in the shards, and segment rows through the loader and the training loop's keys."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance.datasets import get_dataset
from mmbalance.datasets.ave import CLASSES as EVENTS
from mmbalance.datasets.ave_loc import BACKGROUND, CLASSES, SEGMENTS, segment_labels
from mmbalance.datasets.mini import get_generator
from mmbalance.media import MediaError
from mmbalance.prepare import prepare
from mmbalance.shards import iter_samples, read_index, shard_urls
from mmbalance.train.data import load_split, make_batch
from mmbalance.evaluate.predictions import segment_keys

RECIPE = dict(sample_rate=16000, clip_seconds=10, n_fft=512, win_length=512, hop_length=159, window="tukey",
              scaling="density", normalize=True, frame_fps=1, frame_size=16, spec_dtype="float16")
MINI = dict(num_classes=2, clips_per_class=5, duplicate_lines=0, frame_size=16, show_progress=False)
BG = len(CLASSES) - 1


def _truth(root: Path) -> dict[str, dict]:
    with (root / "mini_truth.csv").open() as fh:
        return {r["clip_id"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini") / "ave_loc"
    get_generator("ave_loc")(root, seed=0, **MINI)
    return root


@pytest.fixture(scope="module")
def shards(mini, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    prepare("ave_loc", mini, out, RECIPE, {"split_csv": None}, workers=1, shard_max_count=4)
    return out


def test_segment_labels_hand_values():
    assert segment_labels(3, 2.0, 5.0).tolist() == [BG, BG, 3, 3, 3, BG, BG, BG, BG, BG]
    assert segment_labels(0, 0.0, 10.0).tolist() == [0] * 10
    # a segment belongs to the event when its centre t + 0.5 lies in [start, end)
    assert segment_labels(1, 1.4, 3.6).tolist() == [BG, 1, 1, 1, BG, BG, BG, BG, BG, BG]
    assert segment_labels(1, 1.6, 3.4).tolist() == [BG, BG, 1, BG, BG, BG, BG, BG, BG, BG]


def test_adapter_facts():
    adapter = get_dataset("ave_loc")
    assert adapter.classes == (*EVENTS, BACKGROUND) and len(adapter.classes) == 29  # 28 events + background
    assert adapter.segments == SEGMENTS == 10 and adapter.frames_per_clip == 10
    assert get_dataset("ave").segments == 0 and get_dataset("ave").targets(None) is None  # classification


def test_generator_writes_background_outside_partial_spans(mini):
    rows = _truth(mini).values()
    partial = [r for r in rows if float(r["start_s"]) > 0 or float(r["end_s"]) < 10]
    assert partial and all(int(r["distractor"]) == -1 for r in rows)  # only noise outside the spans


def test_distractor_fraction_one_is_the_ave_generator(tmp_path):
    """The option's default draws nothing extra: the mini AVE is written as before it existed."""
    get_generator("ave")(tmp_path / "a", seed=0, **MINI)
    get_generator("ave")(tmp_path / "b", seed=0, distractor_fraction=1.0, **MINI)
    digest = lambda root: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    with pytest.raises(ValueError, match="distractor_fraction"):
        get_generator("ave")(tmp_path / "c", seed=0, distractor_fraction=1.5, **MINI)


def test_shards_store_the_whole_clip_and_segment_targets(mini, shards):
    index = read_index(shards)
    assert index["segments"] == 10 and index["frames_per_clip"] == 10 and index["classes"][-1] == BACKGROUND
    assert index["modalities"]["audio"]["shape"] == [257, 1004]
    assert index["modalities"]["visual"]["length"] == [10, 10]
    truth = _truth(mini)
    samples = [s for split in index["splits"] for s in iter_samples(shard_urls(shards, split), by_node=False)]
    assert samples
    for s in samples:
        r = truth[s["key"]]
        assert s["label"] == int(r["label"])  # the clip's event stays its label
        assert s["targets"].dtype == np.int64
        assert s["targets"].tolist() == segment_labels(int(r["label"]), float(r["start_s"]), float(r["end_s"])).tolist()


def test_classification_shards_carry_no_targets(tmp_path):
    get_generator("ave")(tmp_path / "raw", seed=0, **MINI)
    prepare("ave", tmp_path / "raw", tmp_path / "sh", {**RECIPE, "frames_per_clip": 3}, {"split_csv": None}, workers=1, shard_max_count=4)
    assert "segments" not in read_index(tmp_path / "sh")
    assert all("targets" not in s for s in iter_samples(shard_urls(tmp_path / "sh", "train"), by_node=False))


def test_short_video_is_a_clear_error(tmp_path):
    root = tmp_path / "short"
    get_generator("ave")(root, seed=0, duration_s=5, min_span_s=2, **MINI)
    adapter = get_dataset("ave_loc")
    clips, _ = adapter.scan(root)
    with pytest.raises(MediaError, match=rf"{clips[0].clip_id}.*10 one-second segments"):
        adapter.extract(clips[0], RECIPE)


def test_loader_rows_are_segments_clip_major(shards):
    data = load_split(shards, "train", ["audio", "visual"], {"audio": [16, 20]})
    n = len(data)
    assert data.labels.shape == (n, 10) and data.arrays["audio"].shape == (n, 1, 16, 20)
    idx = torch.tensor([1, 0])
    inputs, y = make_batch(data, idx, train=False, gen=torch.Generator().manual_seed(0))
    assert y.tolist() == data.labels[1].tolist() + data.labels[0].tolist()  # [B·S], clip-major
    assert inputs["visual"].shape[:2] == (2, 10)  # every segment's frame, in order
    assert segment_keys(["a", "b"], 3) == ["a/00", "a/01", "a/02", "b/00", "b/01", "b/02"]
    assert segment_keys(["a", "b"], 0) == ["a", "b"]
