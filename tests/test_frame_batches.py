"""Frame batches: the picked frames of a batch are gathered as whole rows (numpy fancy indexing on
CPU) and equal torch's advanced indexing ``arrays[idx[:, None], pick]`` exactly."""

import torch

from mmbalance.train.data import SplitData, _frames_input, frame_indices

INFO = {"frames_per_clip": 2, "modalities": {"visual": {"kind": "frames"}}}


def _split(n: int = 9, t: int = 4) -> SplitData:
    frames = torch.randint(0, 256, (n, t, 5, 6, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([t, 1, 2, t, 3, t, 1, 2, t])[:n]
    return SplitData([f"c{i}" for i in range(n)], torch.arange(n) % 3, {"visual": frames}, {"visual": lengths}, INFO)


def test_gathered_frames_equal_advanced_indexing():
    data = _split()
    idx = torch.tensor([4, 0, 8, 1, 1])
    for train in (True, False):
        got = _frames_input(data, "visual", idx, train, torch.Generator().manual_seed(3))
        pick = frame_indices(data.lengths["visual"][idx], 2, train, torch.Generator().manual_seed(3))
        expected = data.arrays["visual"][idx[:, None], pick]  # [B, n, H, W, C]
        assert got.shape == (5, 2, 5, 6, 3) and got.dtype == torch.uint8
        assert torch.equal(got, expected)


def test_gather_from_a_non_contiguous_split():
    data = _split()
    data.arrays["visual"] = data.arrays["visual"].transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    idx = torch.arange(9)
    got = _frames_input(data, "visual", idx, False, torch.Generator())
    pick = frame_indices(data.lengths["visual"], 2, False, torch.Generator())
    assert torch.equal(got, data.arrays["visual"][idx[:, None], pick])


def _samples(seed: int = 0) -> tuple[list[dict], dict]:
    """Decoded-sample dicts with frames of varying length, a spectrogram and a text sequence."""
    g = torch.Generator().manual_seed(seed)
    info = {"frames_per_clip": 3, "modalities": {"audio": {"kind": "spectrogram"}, "visual": {"kind": "frames"},
                                                  "text": {"kind": "sequence"}, "flow": {"kind": "frames"}}}
    samples = []
    for i, t in enumerate([4, 1, 6, 3, 2]):
        samples.append({"key": f"k{i}", "label": i % 2,
                        "audio": torch.rand(7, 9, generator=g).numpy().astype("float16"),
                        "visual": torch.randint(0, 256, (t, 4, 5, 3), dtype=torch.uint8, generator=g).numpy(),
                        "text": torch.rand(t + 2, 4, generator=g).numpy(),
                        "flow": torch.randint(0, 256, (t + 1, 4, 5, 2), dtype=torch.uint8, generator=g).numpy()})
    return samples, info


def test_streamed_batch_equals_the_in_memory_batch():
    """``batch_from_samples`` picks frames per clip before stacking; it must give the tensors of
    padding the batch first and indexing it (``split_from_samples`` → ``make_batch``)."""
    from mmbalance.train.data import batch_from_samples, make_batch, split_from_samples

    samples, info = _samples()
    mods = ["visual", "audio", "text", "flow"]
    for train, pool in ((True, None), (False, None), (True, {"audio": [3, 4]})):
        part = split_from_samples(samples, mods, info, pool)
        want, want_labels = make_batch(part, torch.arange(len(part)), train, torch.Generator().manual_seed(5), raw=True)
        got, labels, keys = batch_from_samples(samples, mods, info, pool, train, torch.Generator().manual_seed(5))
        assert list(got) == list(want) == mods and keys == [s["key"] for s in samples]
        assert torch.equal(labels, want_labels)
        for m in ("visual", "audio", "flow"):
            assert got[m].dtype == want[m].dtype and torch.equal(got[m], want[m]), m
        assert torch.equal(got["text"].x, want["text"].x) and torch.equal(got["text"].mask, want["text"].mask)


def test_rows_equal_advanced_indexing():
    from mmbalance.train.data import _rows

    g = torch.Generator().manual_seed(1)
    idx = torch.tensor([3, 0, 3, 5])
    for arr in (torch.rand(6, 1, 4, 5, generator=g).half(), torch.rand(6, 7, 3, generator=g)[:, :4],
                torch.rand(6, 2, generator=g).bfloat16(), torch.randint(0, 9, (6, 3), generator=g)):
        got = _rows(arr, idx)
        assert got.dtype == arr.dtype and torch.equal(got, arr[idx])
