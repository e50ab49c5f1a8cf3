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
