"""Clip arrays handed from a pool worker through shared memory: the same arrays come out, the
block is freed once read, and where no block can be had the arrays travel as they are."""

from __future__ import annotations

import errno
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import pytest

import mmbalance.shared_arrays as sa
from mmbalance.validate import worker_pool


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"visual": rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8),  # [T, H, W, C]
            "audio": rng.standard_normal((9, 11)).astype(np.float16),  # [F, T]
            "text": rng.standard_normal((4, 6)).astype(np.float32)[:, ::2],  # not contiguous
            "empty": np.zeros((0, 3), dtype=np.int64)}


def _equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def test_round_trip_keeps_order_dtypes_shapes_and_values():
    arrays = _arrays()
    handle = sa.share(arrays)
    assert isinstance(handle, sa.SharedArrays)
    out = sa.take(handle)
    assert _equal(out, arrays)
    assert all(v.flags.c_contiguous and v.flags.owndata for v in out.values())  # copies, not views


def test_block_is_freed_once_taken():
    handle = sa.share(_arrays())
    sa.take(handle)
    with pytest.raises(FileNotFoundError):
        SharedMemory(name=handle.block)


def test_dict_and_none_pass_through():
    arrays = _arrays()
    assert sa.take(arrays) is arrays and sa.take(None) is None


def test_no_shared_memory_sends_the_arrays_themselves(monkeypatch):
    def unavailable(*args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "no /dev/shm")

    monkeypatch.setattr(sa, "SharedMemory", unavailable)
    arrays = _arrays()
    assert sa.share(arrays) is arrays


def test_full_shared_memory_sends_the_arrays_and_leaves_no_block(monkeypatch):
    created = []
    real = sa.SharedMemory

    def recording(*args, **kwargs):
        shm = real(*args, **kwargs)
        created.append(shm.name)
        return shm

    def full(shm, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sa, "SharedMemory", recording)
    monkeypatch.setattr(sa, "_reserve", full)
    arrays = _arrays()
    assert sa.share(arrays) is arrays
    with pytest.raises(FileNotFoundError):  # the half-made block was removed
        SharedMemory(name=created[0])


def _share_in_worker(seed: int) -> sa.SharedArrays | dict:
    rng = np.random.default_rng(seed)
    return sa.share({"x": rng.standard_normal((seed + 1, 3)).astype(np.float32)})


def test_blocks_made_by_pool_workers_are_read_by_the_parent():
    with worker_pool(2) as pool:
        handles = pool.map(_share_in_worker, range(4), chunksize=1)
    for seed, handle in enumerate(handles):
        assert isinstance(handle, sa.SharedArrays)  # outlives the worker that made it
        expected = np.random.default_rng(seed).standard_normal((seed + 1, 3)).astype(np.float32)
        assert np.array_equal(sa.take(handle)["x"], expected)
