"""Shard round trip and byte-identical rewrites."""

import hashlib

import numpy as np
import pytest

from mmbalance.shards import encode_sample, iter_samples, write_shards


def _samples(n=5):
    rng = np.random.default_rng(0)
    for i in range(n):
        yield encode_sample(f"clip{i:03d}", {"audio": rng.normal(size=(257, 299)).astype("float16"),
                                             "visual": rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)}, i % 3)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip(tmp_path):
    names = write_shards(_samples(), tmp_path, "train", max_count=2)
    assert names == ["train-00000.tar", "train-00001.tar", "train-00002.tar"]
    back = list(iter_samples([str(tmp_path / n) for n in names]))
    assert [s["key"] for s in back] == [f"clip{i:03d}" for i in range(5)]
    assert [s["label"] for s in back] == [0, 1, 2, 0, 1]
    assert back[0]["audio"].shape == (257, 299) and back[0]["audio"].dtype == np.float16
    assert back[0]["visual"].shape == (2, 8, 8, 3)
    first = next(_samples())
    np.testing.assert_array_equal(back[0]["audio"], np.load(__import__("io").BytesIO(first["audio.npy"])))
    assert not list(tmp_path.glob(".*.tmp"))


def test_byte_identical_rewrite(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_shards(_samples(), a, "test", max_count=10)
    write_shards(_samples(), b, "test", max_count=10)
    assert _digest(a / "test-00000.tar") == _digest(b / "test-00000.tar")


@pytest.mark.parametrize("member_max", [None, 1000])  # 1000: members copied in several pieces
def test_same_bytes_as_webdatasets_own_stream_writer(tmp_path, monkeypatch, member_max):
    """The shards are webdataset's TarWriter output byte for byte (the writer only swaps its
    stream-mode tar for a plain one on the same file)."""
    import webdataset as wds

    import mmbalance.shards.write as w

    if member_max is not None:
        monkeypatch.setattr(w, "_MEMBER_MAX", member_max)
    write_shards(_samples(), tmp_path, "ours", max_count=10)
    with open(tmp_path / "theirs.tar", "wb") as fh:
        writer = wds.TarWriter(fh, user="mmbalance", group="mmbalance", mode=0o444, encoder=False,
                               mtime=w.FIXED_MTIME)
        for sample in _samples():
            writer.write(sample)
        writer.close()
    assert _digest(tmp_path / "ours-00000.tar") == _digest(tmp_path / "theirs.tar")


def test_unsorted_keys_rejected(tmp_path):
    samples = list(_samples(2))[::-1]
    with pytest.raises(ValueError, match="unique and sorted"):
        write_shards(iter(samples), tmp_path, "x", max_count=10)
