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


def test_blocks_made_by_pool_workers_are_read_by_the_parent_and_freed_with_the_pool():
    with worker_pool(2) as pool:
        handles = pool.map(_share_in_worker, range(4), chunksize=1)
        for seed, handle in enumerate(handles):
            assert isinstance(handle, sa.SharedArrays) and handle.reused  # a worker's kept block
            expected = np.random.default_rng(seed).standard_normal((seed + 1, 3)).astype(np.float32)
            assert np.array_equal(sa.take(handle)["x"], expected)
    for handle in handles:
        with pytest.raises(FileNotFoundError):
            SharedMemory(name=handle.block)


def test_one_off_blocks_still_outlive_the_worker_that_made_them():
    with worker_pool(2) as pool:
        handles = pool.map(_share_one_off_in_worker, range(2), chunksize=1)
    for seed, handle in enumerate(handles):
        assert not handle.reused
        expected = np.random.default_rng(seed).standard_normal((seed + 1, 3)).astype(np.float32)
        assert np.array_equal(sa.take(handle)["x"], expected)


def _share_one_off_in_worker(seed: int) -> sa.SharedArrays | dict:
    sa.use_ring(None)
    return _share_in_worker(seed)


@pytest.fixture
def ring(monkeypatch):
    """This process as a pool worker and its parent at once: blocks kept and reused."""
    import threading

    monkeypatch.setattr(sa, "_ring", [])
    monkeypatch.setattr(sa, "_mapped", {})
    sa.use_ring(threading.Lock())
    yield
    sa.use_ring(None)
    sa.release_blocks()
    for shm in sa._ring:
        shm.close()


def test_a_kept_block_is_reused_once_copied_out(ring):
    arrays = _arrays()
    first = sa.share(arrays)
    assert first.reused and _equal(sa.take(first), arrays)
    again = sa.share(arrays)
    assert again.block == first.block  # handed back by take, filled again
    pending = sa.share(arrays)  # `again` not copied out yet: another block
    assert pending.block != again.block
    assert _equal(sa.take(again), arrays) and _equal(sa.take(pending), arrays)
    assert len(sa._ring) == 2


def test_a_filled_block_is_never_overwritten_before_it_is_read(ring):
    handles = [sa.share({"x": np.full((4,), i, dtype=np.int32)}) for i in range(5)]
    assert len({h.block for h in handles}) == 5
    assert [int(sa.take(h)["x"][0]) for h in handles] == [0, 1, 2, 3, 4]


def test_a_larger_clip_gets_a_block_it_fits_in(ring):
    small = sa.share({"x": np.zeros(10, dtype=np.uint8)})
    sa.take(small)
    big = {"x": np.arange(1000, dtype=np.int64)}
    handle = sa.share(big)
    assert handle.block != small.block and _equal(sa.take(handle), big)


def test_past_the_ring_budget_a_clip_gets_a_one_off_block(ring, monkeypatch):
    monkeypatch.setattr(sa, "RING_BYTES", 2 * (64 + 100 + 25))
    arrays = {"x": np.ones(100, dtype=np.uint8)}
    kept = [sa.share(arrays) for _ in range(2)]
    extra = sa.share(arrays)
    assert all(h.reused for h in kept) and not extra.reused
    assert all(_equal(sa.take(h), arrays) for h in [*kept, extra])
    with pytest.raises(FileNotFoundError):  # the one-off block was freed once read
        SharedMemory(name=extra.block)
