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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np

__all__ = ["SharedArrays", "share", "take"]


@dataclass(frozen=True)
class SharedArrays:
    """A shared-memory block holding named arrays: ``layout`` is ``(name, dtype, shape, offset)``
    per array, in the order of the dict it was made from."""

    block: str
    layout: tuple[tuple[str, str, tuple[int, ...], int], ...]


def share(arrays: dict[str, np.ndarray]) -> SharedArrays | dict[str, np.ndarray]:
    """Copy ``arrays`` into a new shared block and return its handle (the block outlives this
    process until ``take`` frees it); return ``arrays`` unchanged when no block can be had."""
    total = sum(a.nbytes for a in arrays.values())
    try:
        shm = SharedMemory(create=True, size=max(total, 1))
    except OSError:
        return arrays
    try:
        _reserve(shm, total)
    except OSError:
        shm.close()
        shm.unlink()
        return arrays
    layout, offset = [], 0
    for name, arr in arrays.items():
        np.ndarray(arr.shape, arr.dtype, buffer=shm.buf, offset=offset)[...] = arr
        layout.append((name, arr.dtype.str, tuple(arr.shape), offset))
        offset += arr.nbytes
    shm.close()  # this process's mapping only; the block stays for the parent
    return SharedArrays(shm.name, tuple(layout))


def take(handle: SharedArrays | dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """The arrays behind ``handle`` as ordinary arrays (copied out of the block, which is then
    freed); a dict or None is returned as it is."""
    if not isinstance(handle, SharedArrays):
        return handle
    shm = SharedMemory(name=handle.block)
    try:
        # copies: a view would point into the mapping closed below
        return {name: np.ndarray(shape, np.dtype(dtype), buffer=shm.buf, offset=offset).copy()
                for name, dtype, shape, offset in handle.layout}
    finally:
        shm.close()
        shm.unlink()


def _reserve(shm: SharedMemory, size: int) -> None:
    """Allocate the block's pages now, so that a full /dev/shm raises OSError (ENOSPC) here
    rather than SIGBUS at the first write; a no-op where the platform has no posix_fallocate."""
    fd = getattr(shm, "_fd", -1)
    if size and fd >= 0 and hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
