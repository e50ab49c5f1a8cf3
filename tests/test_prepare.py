"""The prepare step on a tiny generated CREMA-D: shapes, determinism, skips."""

import hashlib
import json

import pytest

from mmbalance.datasets.mini import get_generator
from mmbalance.prepare import prepare
from mmbalance.shards import iter_samples, shard_urls

RECIPE = dict(sample_rate=16000, clip_seconds=3, n_fft=512, win_length=512, hop_length=159, window="tukey",
              scaling="density", normalize=True, frame_fps=1, frame_size=16, spec_dtype="float16")
SPLIT = {"split_csv": None, "test_fraction": 0.25, "val_fraction": 0.2, "split_seed": 0}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "cremad"
    get_generator("cremad")(root, clips_per_class=4, seed=0, show_progress=False)
    return root


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_shapes_and_counts(raw, tmp_path):
    index = prepare("cremad", raw, tmp_path, RECIPE, SPLIT, workers=1, shard_max_count=5)
    counts = {s: v["count"] for s, v in index["splits"].items()}
    assert sum(counts.values()) == 24 and counts["test"] == 6
    assert index["modalities"]["audio"]["shape"] == [257, 299]
    assert index["modalities"]["visual"]["shape"] == [None, 16, 16, 3]
    assert index["modalities"]["audio"]["kind"] == "spectrogram" and index["modalities"]["visual"]["kind"] == "frames"
    samples = list(iter_samples(shard_urls(tmp_path, "train")))
    assert [s["key"] for s in samples] == sorted(s["key"] for s in samples)
    assert samples[0]["audio"].shape == (257, 299) and samples[0]["visual"].shape[1:] == (16, 16, 3)
    assert json.loads((tmp_path / "index.json").read_text()) == index


def test_byte_identical_across_runs_and_workers(raw, tmp_path):
    prepare("cremad", raw, tmp_path / "a", RECIPE, SPLIT, workers=1, shard_max_count=5)
    prepare("cremad", raw, tmp_path / "b", RECIPE, SPLIT, workers=2, shard_max_count=5)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")


def test_undecodable_video_is_skipped_with_reason(raw, tmp_path):
    broken = tmp_path / "raw"
    import shutil

    shutil.copytree(raw, broken)
    victim = sorted((broken / "VideoFlash").glob("*.flv"))[0]
    victim.write_bytes(b"not a video at all")
    index = prepare("cremad", broken, tmp_path / "out", RECIPE, SPLIT, workers=1, shard_max_count=5)
    assert sum(v["count"] for v in index["splits"].values()) == 23
    (skip,) = index["skipped"]
    assert skip["clip_id"] == victim.stem
    assert victim.name in skip["reason"]
