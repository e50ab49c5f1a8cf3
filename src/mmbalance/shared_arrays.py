"""A clip's arrays handed from a pool worker to the parent through POSIX shared memory.

A pool result travels through a pipe of 64 KiB: a CREMA-D clip's frames and spectrogram
(~600 KB) cross in ~10 pieces, and each piece waits for the parent's result thread (and its
GIL, which the thread writing the shards holds) while the worker sits idle. With 2 workers and
the shard writer sharing 2 cores, that wait cost a quarter of the worker time. Instead a worker
copies the clip's arrays into one shared-memory block and sends its name and layout (a few
hundred bytes); the parent copies the arrays out and frees the block.

Where no block can be had (no /dev/shm, or too little room in it: Docker's default is 64 MiB)
the arrays travel in the result as before. The room is reserved before anything is written:
a write into an unreserved tmpfs page that finds the filesystem full kills the worker with
SIGBUS, and a pool whose worker dies never returns that clip's result.

Inside a worker pool (``use_ring``, called by the pool's initializer) each worker keeps its blocks
and reuses them: a block starts with a one-byte state, set by the worker when it fills the block
and cleared by the parent once it has copied the arrays out. A fresh block per clip cost ~1.5 ms
of the ~10 ms a clip takes (creating, reserving and first touching ~600 KB of pages in the
worker; mapping, unmapping and unlinking them in the parent), all of it work a one-process run
never does. A worker whose blocks are all still unread makes another, up to ``RING_BYTES``; past
that it falls back to one block per clip. The state changes under a lock shared by the parent
and its workers, whose acquire and release order the parent's copy before the worker's next
write on any CPU. ``release_blocks`` frees the reused blocks once the pool has ended.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np

__all__ = ["RING_BYTES", "SharedArrays", "release_blocks", "share", "take", "use_ring"]


RING_BYTES = 64 * 2**20  # most a worker keeps in reused blocks (a CREMA-D clip needs ~0.6 MB)
_HEADER = 64  # bytes before the arrays in a reused block; byte 0: 1 = filled, not yet copied out
_FREE, _FILLED = 0, 1


@dataclass(frozen=True)
class SharedArrays:
    """A shared-memory block holding named arrays: ``layout`` is ``(name, dtype, shape, offset)``
    per array, in the order of the dict it was made from. ``reused``: a worker's kept block,
    handed back by ``take`` rather than freed."""

    block: str
    layout: tuple[tuple[str, str, tuple[int, ...], int], ...]
    reused: bool = False


# worker side: the lock shared with the parent (None outside a pool) and the worker's kept blocks
_lock = None
_ring: list[SharedMemory] = []
# parent side: the reused blocks mapped so far, by name (mapped once, freed by release_blocks)
_mapped: dict[str, SharedMemory] = {}


def use_ring(lock) -> None:
    """Reuse blocks from now on, with ``lock`` (a multiprocessing lock the parent shares) guarding
    their state; called in each pool worker and in the parent that reads its results."""
    global _lock
    _lock = lock


def share(arrays: dict[str, np.ndarray]) -> SharedArrays | dict[str, np.ndarray]:
    """Copy ``arrays`` into a shared block and return its handle: one of this worker's kept
    blocks (after ``use_ring``) or a new one that outlives this process until ``take`` frees it.
    ``arrays`` come back unchanged when no block can be had."""
    total = sum(a.nbytes for a in arrays.values())
    shm = _free_block(total) if _lock is not None else None
    if shm is not None:
        return SharedArrays(shm.name, _fill(shm, arrays, _HEADER), reused=True)
    shm = _new_block(total)
    if shm is None:
        return arrays
    layout = _fill(shm, arrays, 0)
    shm.close()  # this process's mapping only; the block stays for the parent
    return SharedArrays(shm.name, layout)


def take(handle: SharedArrays | dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """The arrays behind ``handle`` as ordinary arrays (copied out of the block, which is then
    freed, or handed back to its worker); a dict or None is returned as it is."""
    if not isinstance(handle, SharedArrays):
        return handle
    if handle.reused:
        shm = _mapped.get(handle.block) or _mapped.setdefault(handle.block, SharedMemory(name=handle.block))
        arrays = _copy_out(shm, handle.layout)
        with _lock:  # the copy above happens before the worker's next write into the block
            shm.buf[0] = _FREE
        return arrays
    shm = SharedMemory(name=handle.block)
    try:
        return _copy_out(shm, handle.layout)  # copies: a view would point into the mapping closed below
    finally:
        shm.close()
        shm.unlink()


def release_blocks() -> None:
    """Unmap and free every reused block this process has read (once their workers have ended)."""
    for shm in _mapped.values():
        shm.close()
        try:
            shm.unlink()
        except FileNotFoundError:  # already removed (e.g. by the resource tracker)
            pass
    _mapped.clear()


def _free_block(total: int) -> SharedMemory | None:
    """A kept block with room for ``total`` bytes that the parent has copied out, marked filled;
    a new kept block if none is free; None past ``RING_BYTES`` or when no block can be had."""
    with _lock:
        for shm in _ring:
            if shm.size >= _HEADER + total and shm.buf[0] == _FREE:
                shm.buf[0] = _FILLED
                return shm
    if sum(b.size for b in _ring) + _HEADER + total > RING_BYTES:
        return None
    shm = _new_block(_HEADER + total + total // 4)  # a quarter more: clips vary a little in size
    if shm is not None:
        shm.buf[0] = _FILLED
        _ring.append(shm)
    return shm


def _new_block(size: int) -> SharedMemory | None:
    """A new block of ``size`` bytes with its pages reserved, or None when none can be had."""
    try:
        shm = SharedMemory(create=True, size=max(size, 1))
    except OSError:
        return None
    try:
        _reserve(shm, size)
    except OSError:
        shm.close()
        shm.unlink()
        return None
    return shm


def _fill(shm: SharedMemory, arrays: dict[str, np.ndarray], start: int) -> tuple:
    """Write ``arrays`` one after another from byte ``start``; their layout entries."""
    layout, offset = [], start
    for name, arr in arrays.items():
        np.ndarray(arr.shape, arr.dtype, buffer=shm.buf, offset=offset)[...] = arr
        layout.append((name, arr.dtype.str, tuple(arr.shape), offset))
        offset += arr.nbytes
    return tuple(layout)


def _copy_out(shm: SharedMemory, layout: tuple) -> dict[str, np.ndarray]:
    """The arrays at ``layout`` in ``shm``, copied into ordinary arrays."""
    return {name: np.ndarray(shape, np.dtype(dtype), buffer=shm.buf, offset=offset).copy()
            for name, dtype, shape, offset in layout}


def _reserve(shm: SharedMemory, size: int) -> None:
    """Allocate the block's pages now, so that a full /dev/shm raises OSError (ENOSPC) here
    rather than SIGBUS at the first write; a no-op where the platform has no posix_fallocate."""
    fd = getattr(shm, "_fd", -1)
    if size and fd >= 0 and hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
