"""Checking a raw dataset root before any long work: the adapter's layout scan, then every clip
decoded by the same per-clip check ``prepare`` uses, so both list the same problems.

A problem is the record ``prepare`` writes under ``skipped`` in index.json:
``{"clip_id", "path", "reason"}``, ``path`` being the file (or list line) at fault.

Every media check ``prepare`` makes needs the decoded data (a truncated file is found by
counting the frames that decode against the count the file declares, silent audio by looking
at every sample), so a header probe cannot predict it: the check decodes each clip once, in a
worker pool like ``prepare``'s, and drops the arrays inside the worker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmbalance.datasets import Clip, DatasetLayoutError, Skip, get_dataset
from mmbalance.datasets.base import SPLITS
from mmbalance.media import MediaError
from mmbalance.shared_arrays import SharedArrays, release_blocks, share, take, use_ring

__all__ = [
    "Report",
    "by_split",
    "check_clip",
    "check_root",
    "checked_clips",
    "format_problem",
    "media_problem",
    "skip_problem",
    "sorted_problems",
    "validate",
    "worker_pool",
]


# --- problem records -------------------------------------------------------------------------


def skip_problem(skip: Skip) -> dict:
    """The problem record of a file or list entry the layout scan skipped."""
    return {"clip_id": skip.clip_id, "path": str(skip.path), "reason": skip.reason}


def media_problem(clip: Clip, err: MediaError) -> dict:
    """The problem record of a clip whose media cannot be decoded: the file the error names
    (MediaError messages start with ``<path>: ``), or all the clip's files if none matches."""
    reason = str(err)
    files = [str(p) for p in clip.paths.values()]
    named = [f for f in files if reason.startswith(f"{f}: ")]
    return {"clip_id": clip.clip_id, "path": named[0] if named else ", ".join(files), "reason": reason}


def sorted_problems(problems: list[dict]) -> list[dict]:
    """Problems in index.json's order: by clip id, then path (stable for equal keys)."""
    return sorted(problems, key=lambda s: (s["clip_id"], s["path"]))


def format_problem(problem: dict) -> str:
    """One report line for a problem record."""
    return f"SKIP {problem['clip_id']}: {problem['reason']} [{problem['path']}]"


# --- the per-clip check and its worker pool ----------------------------------------------------


def check_clip(dataset: str, clip: Clip, recipe: dict) -> tuple[dict[str, np.ndarray] | None, dict | None]:
    """Decode one clip with its adapter: ``(arrays, None)``, or ``(None, problem)`` when its
    media cannot be used. ``prepare`` shards the arrays; ``validate`` keeps only the problem."""
    try:
        return get_dataset(dataset).extract(clip, recipe), None
    except MediaError as err:  # names the file and what is wrong
        return None, media_problem(clip, err)


def _check_job(job: tuple[str, Clip, dict]) -> tuple[Clip, dict | None, dict | None]:
    dataset, clip, recipe = job
    return (clip, *check_clip(dataset, clip, recipe))


def _check_job_shared(job: tuple[str, Clip, dict]) -> tuple[Clip, SharedArrays | dict | None, dict | None]:
    # the arrays cross to the parent in a shared-memory block, not through the result pipe
    clip, arrays, problem = _check_job(job)
    return clip, None if arrays is None else share(arrays), problem


def _check_job_no_arrays(job: tuple[str, Clip, dict]) -> tuple[Clip, None, dict | None]:
    # the arrays are dropped in the worker: only the verdict crosses the process boundary
    clip, _, problem = _check_job(job)
    return clip, None, problem


# Modules a pool worker needs, imported once in the fork server (not once per worker): a spawned
# worker paid ~1-3 s of imports (scipy.signal, PyAV, OpenCV) before its first clip, more than a
# whole 100-clip prepare takes on 2 cores. The server lives as long as this process, so later
# pools (validate then prepare, one per dataset) start in ~30 ms; it keeps the environment
# variables of its start (the extraction reads none).
_WORKER_MODULES = ["__main__", "mmbalance.validate"]


def _init_worker(lock) -> None:
    """Keep each worker single-threaded: ``workers`` processes already fill the cores, and
    OpenCV's own thread pool per worker only adds contention (results do not depend on it).
    ``lock``: guards the state of the shared-memory blocks the worker reuses."""
    import cv2

    cv2.setNumThreads(1)
    use_ring(lock)


def _pool_context():
    """Forkserver context: workers fork from a server that imported the decoding modules once
    (and never started a thread, unlike this process, which may hold torch / OpenCV threads)."""
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(_WORKER_MODULES)  # no effect once the server runs: it keeps its modules
    return ctx


@contextmanager
def worker_pool(workers: int):
    """A pool of ``workers`` single-threaded processes, or None (decode in this process) for one.
    The shared-memory blocks its workers reuse are freed when it ends."""
    if workers <= 1:
        yield None
        return
    ctx = _pool_context()
    lock = ctx.Lock()
    pool = ctx.Pool(workers, initializer=_init_worker, initargs=(lock,))
    use_ring(lock)
    try:
        yield pool
    finally:
        pool.close()
        pool.join()
        use_ring(None)
        release_blocks()


def _chunksize(jobs: int) -> int:
    """Clips per task: small on small sets (the unevenly finished last tasks leave a core idle:
    ~32 tasks in all), at most 8 on big ones (fewer round trips; a clip is ~10-50 ms of work)."""
    return max(1, min(8, jobs // 32))


def checked_clips(dataset: str, clips: list[Clip], recipe: dict, pool, desc: str,
                  keep_arrays: bool = True) -> Iterator[tuple[Clip, dict | None, dict | None]]:
    """``(clip, arrays | None, problem | None)`` for each clip, in the order of ``clips``
    (ordered ``imap``: the order never depends on timing); ``keep_arrays=False`` returns None
    for the arrays and spares sending them from the workers."""
    jobs = [(dataset, c, recipe) for c in clips]
    if pool is None:
        results = map(_check_job if keep_arrays else _check_job_no_arrays, jobs)
    else:
        worker = _check_job_shared if keep_arrays else _check_job_no_arrays
        results = pool.imap(worker, jobs, chunksize=_chunksize(len(jobs)))
    # the blocks of results never read (an error stopped the consumer) are freed at exit by
    # multiprocessing's resource tracker, which every worker of the pool reports to
    for clip, arrays, problem in tqdm(results, total=len(jobs), desc=desc, mininterval=2.0):
        yield clip, take(arrays), problem


def by_split(clips: list[Clip]) -> dict[str, list[Clip]]:
    """Clips per split, in ``SPLITS`` order and sorted by clip id (the order shards follow)."""
    out = {s: sorted((c for c in clips if c.split == s), key=lambda c: c.clip_id) for s in SPLITS}
    return {s: members for s, members in out.items() if members}


# --- the check of a whole root -------------------------------------------------------------------


@dataclass
class Report:
    """What ``prepare`` would make of a root: usable clips per split and every problem."""

    dataset: str
    root: Path
    counts: dict[str, int]  # split -> clips that would reach the shards
    problems: list[dict] = field(default_factory=list)  # index.json's "skipped", same order

    def lines(self) -> list[str]:
        """A summary line, then one line per problem."""
        splits = ", ".join(f"{s} {self.counts[s]}" for s in SPLITS if self.counts.get(s))
        head = (f"{self.dataset} at {self.root}: {sum(self.counts.values())} usable clips ({splits}), "
                f"{len(self.problems)} problem(s)")
        return [head, *map(format_problem, self.problems)]


def check_root(dataset: str, root: Path, split_options: dict, recipe: dict | None, workers: int = 1) -> Report:
    """Scan ``root`` and decode every clip as ``prepare`` would (``recipe`` None: the layout
    scan only). Raises DatasetLayoutError, naming the path, when the root is not usable at all."""
    clips, skips = get_dataset(dataset).scan(root, **split_options)
    problems = [skip_problem(s) for s in skips]
    if recipe is None:
        return Report(dataset, Path(root), dict(Counter(c.split for c in clips)), sorted_problems(problems))
    splits = by_split(clips)
    counts = dict.fromkeys(splits, 0)  # a split whose every clip fails still shows, as in index.json
    ordered = [c for members in splits.values() for c in members]  # prepare's order
    with worker_pool(workers) as pool:
        for clip, _, problem in checked_clips(dataset, ordered, recipe, pool, f"{dataset}/check", keep_arrays=False):
            if problem is None:
                counts[clip.split] += 1
            else:
                problems.append(problem)
    return Report(dataset, Path(root), counts, sorted_problems(problems))


def validate(dataset: str, root: Path, split_options: dict, recipe: dict | None,
             workers: int = 1) -> tuple[bool, list[str]]:
    """``check_root`` as report lines: (usable, lines). An unusable root gives
    ``(False, ["ERROR <message naming the path>"])``."""
    try:
        report = check_root(dataset, root, split_options, recipe, workers)
    except DatasetLayoutError as err:
        return False, [f"ERROR {err}"]
    return True, report.lines()
