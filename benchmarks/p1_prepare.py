"""P1: raw clips → training inputs, clips/s, three ways side by side on the same clips.

- **project**: ``mmbalance.prepare.prepare`` (scan, parallel extraction with ``prepare.workers``
  processes, deterministic shards + index), exactly what the `prepare` stage runs;
- **per-file** (reference style, written for this comparison): the papers' repositories'
  preprocessing scripts (OGM-GE ``video_preprocessing.py``, PMR ``audio_preprocessing.py``):
  one process looping over the clips; every video frame decoded and converted to a BGR image (as
  ``cv2.VideoCapture.read`` does), the first frame of each second written as a full-size jpg
  ``Image-01-FPS/<clip>/<index:05d>.jpg``; the audio tiled to 3 s, the same scipy spectrogram,
  one pickle per clip ``Audio-299/<clip>.pkl``. Decoding uses the project's decoders (PyAV for
  the video, soundfile for the wav) so that the comparison is about the pipeline, not the codec;
- **decode-only**: the same clips decoded (every video frame, the wav) and nothing else, with
  the project's worker count: the floor any extraction pipeline has to pay.

Worker scaling (2 workers vs 1) is measured on the clips three times over, under new actor
numbers (hard links: the same files, no extra data to generate): a pool's start and its
first and last chunks cost ~0.1 s whatever the size, a seventh of a 96-clip run, while a
real dataset has thousands of clips (CREMA-D 7,442). The 96-clip ratio is reported as well.

Every timed run happens in a process of its own, as the `prepare` stage runs, after one
untimed warm-up run in that process (imports, the worker pool's server, first allocations: costs
a real dataset pays once). Timed in the benchmark's own process, a run inherited the heap that
the runs before it left: the one-worker run (decoding in that process) varied by ±20 % between
runs of `make bench`, the two-worker run's writing likewise.

Usage: python benchmarks/p1_prepare.py --raw build/bench/raw --work build/bench/p1
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import soundfile as sf
from scipy import signal

from common import (DATASET, Measurement, clean_dir, interleaved, median, paired_ratio, prepare_recipe, run_standalone,
                    scan_options)


def _clips(raw: Path, params: dict) -> list:
    from mmbalance.datasets import get_dataset

    clips, _ = get_dataset(DATASET).scan(raw, **scan_options(params))
    return clips


# ---- reference-style per-file extractor ----------------------------------------------------

def reference_video(path: Path, out_dir: Path) -> int:
    """Decode every frame to BGR (cv2.VideoCapture.read's work), write the first of each second
    as a full-size jpg; returns the number written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        per_second = max(1, round(float(stream.average_rate or 30)))
        for index, frame in enumerate(container.decode(stream)):
            image = frame.to_ndarray(format="bgr24")  # [H, W, 3], every frame as cv2 returns it
            if index % per_second == 0:
                cv2.imwrite(str(out_dir / f"{index:05d}.jpg"), image)
                written += 1
    return written


def reference_audio(path: Path, out_file: Path, recipe: dict) -> None:
    """PMR-style: wav → tile/crop to clip_seconds → clip ±1 → scipy spectrogram → log → z-score
    → one pickle per clip."""
    wave, rate = sf.read(str(path), dtype="float32")  # 16 kHz mono in CREMA-D
    n = int(round(float(recipe["clip_seconds"]) * rate))
    wave = np.clip(np.tile(wave, -(-n // wave.size))[:n], -1, 1)
    _, _, spec = signal.spectrogram(wave, rate, nperseg=recipe["win_length"],
                                    noverlap=recipe["win_length"] - recipe["hop_length"])
    spec = np.log(spec + 1e-7)
    spec = (spec - spec.mean()) / (spec.std() + 1e-9)
    with open(out_file, "wb") as fh:
        pickle.dump(spec, fh)


def reference_extract(clips: list, out: Path, recipe: dict) -> None:
    """The per-file extractor over all clips, one process (as the repositories' scripts run)."""
    (out / "Audio-299").mkdir(parents=True, exist_ok=True)
    for clip in clips:
        reference_video(clip.paths["video"], out / "Image-01-FPS" / clip.clip_id)
        reference_audio(clip.paths["audio"], out / "Audio-299" / f"{clip.clip_id}.pkl", recipe)


# ---- decode-only -------------------------------------------------------------------------

def decode_only(paths: tuple[str, str]) -> int:
    """Decode every video frame and the wav, keep nothing; returns the frames decoded."""
    video, audio = paths
    sf.read(audio, dtype="float32")
    with av.open(video) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def decode_all(clips: list, workers: int) -> None:
    """decode_only over the clips with the project's pool (``worker_pool``: single-threaded
    processes forked from a server that imported the decoders; ordered imap in chunks of 8), so
    the two differ only in the per-clip work."""
    from mmbalance.validate import worker_pool

    jobs = [(str(c.paths["video"]), str(c.paths["audio"])) for c in clips]
    with worker_pool(workers) as pool:
        list(pool.imap(decode_only, jobs, chunksize=8) if pool is not None else map(decode_only, jobs))


# ---- the benchmark -----------------------------------------------------------------------

def repeated_set(raw: Path, out: Path, copies: int) -> Path:
    """``raw``'s CREMA-D files ``copies`` times under ``out``: copy k renames actor NNNN to
    NNNN + 1000·k (hard links where the filesystem allows, else copies)."""
    import os
    import shutil

    for folder in ("AudioWAV", "VideoFlash"):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for src in sorted((raw / folder).iterdir()):
            actor, rest = src.name.split("_", 1)
            for k in range(copies):
                dst = out / folder / f"{int(actor) + 1000 * k:04d}_{rest}"
                if dst.exists():
                    continue
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
    return out


RUNNERS = ("project", "project_1worker", "per_file", "decode_only", "decode_only_1worker")


def run_once(name: str, raw: Path, work: Path, params: dict) -> None:
    """One run of runner ``name`` on the clips under ``raw`` (outputs under ``work``)."""
    from mmbalance.prepare import prepare

    recipe, opts = prepare_recipe(params), scan_options(params)
    workers, shard_max = int(params["prepare"]["workers"]), int(params["prepare"]["shard_max_count"])
    if name in ("project", "project_1worker"):
        prepare(DATASET, raw, clean_dir(work / name), recipe, opts, workers if name == "project" else 1, shard_max)
    elif name == "per_file":
        reference_extract(_clips(raw, params), clean_dir(work / name), recipe)
    else:
        decode_all(_clips(raw, params), workers if name == "decode_only" else 1)


def in_child(name: str, raw: Path, work: Path, params_file: Path):
    """A runner: a new Python process that runs ``name`` once untimed, then once timed, and
    returns the timed run's seconds."""
    def runner() -> float:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--raw", str(raw), "--work", str(work),
               "--params-json", str(params_file)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"P1 runner {name} failed:\n{out.stderr[-3000:]}")
        return float(out.stdout.strip().splitlines()[-1])
    return runner


def child_main(argv: list[str]) -> None:
    """``--child NAME --raw R --work W --params-json P``: warm-up run, timed run, print seconds."""
    import argparse

    ap = argparse.ArgumentParser()
    for flag in ("--child", "--raw", "--work", "--params-json"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args(argv)
    params = json.loads(Path(args.params_json).read_text())
    raw, work = Path(args.raw), Path(args.work)
    run_once(args.child, raw, work, params)
    start = time.perf_counter()
    run_once(args.child, raw, work, params)
    print(json.dumps(time.perf_counter() - start))


def run(raw: Path, work: Path, params: dict, repeats: int) -> list[Measurement]:
    """Time the three pipelines (and the project with one worker) side by side."""
    clips = _clips(raw, params)
    workers = int(params["prepare"]["workers"])
    work.mkdir(parents=True, exist_ok=True)
    params_file = work / "params.json"
    params_file.write_text(json.dumps(params, default=str))
    decode_all(clips, 1)  # warm the page cache: every runner then reads from memory
    t = interleaved({name: in_child(name, raw, work / "x1", params_file) for name in RUNNERS}, repeats, self_timed=True)
    n = len(clips)
    rate = {k: n / median(v) for k, v in t.items()}
    big = repeated_set(raw, work / "raw_x3", 3)
    n_big = len(_clips(big, params))
    t_big = interleaved({name: in_child(name, big, work / "x3", params_file) for name in ("project", "project_1worker")},
                        repeats, self_timed=True)
    rate_big = {k: n_big / median(v) for k, v in t_big.items()}
    return [
        Measurement("P1", f"project prepare ({workers} workers) vs per-file extractor (1 process)",
                    rate["project"], "clips/s", paired_ratio(t["per_file"], t["project"]),
                    "speed-up", (">=", 3.0), f"per-file: {rate['per_file']:.1f} clips/s"),
        Measurement("P1", f"project prepare ({workers} workers) vs decode-only ({workers} workers)",
                    rate["project"], "clips/s", paired_ratio(t["project"], t["decode_only"]),
                    "time / decode-only time", ("<=", 1.5), f"decode-only: {rate['decode_only']:.1f} clips/s"),
        Measurement("P1", f"project prepare, {workers} workers vs 1 worker ({n_big} clips: the set three times)",
                    rate_big["project"], "clips/s", paired_ratio(t_big["project_1worker"], t_big["project"]),
                    "speed-up", (">=", 1.6) if workers == 2 else None,
                    f"1 worker: {rate_big['project_1worker']:.1f} clips/s; same recipe and shard settings"),
        Measurement("P1", f"project prepare, {workers} workers vs 1 worker ({n} clips)",
                    rate["project"], "clips/s", paired_ratio(t["project_1worker"], t["project"]),
                    "speed-up", None, f"1 worker: {rate['project_1worker']:.1f} clips/s; pool start and the "
                    "first and last chunks weigh more on a small set"),
        Measurement("P1", "project prepare, 1 worker vs per-file extractor (1 process)",
                    rate["project_1worker"], "clips/s", paired_ratio(t["per_file"], t["project_1worker"]),
                    "speed-up", None, "same core count on both sides"),
        Measurement("P1", "project prepare, 1 worker vs decode-only, 1 worker",
                    rate["project_1worker"], "clips/s", paired_ratio(t["project_1worker"], t["decode_only_1worker"]),
                    "time / decode-only time", None, f"decode-only: {rate['decode_only_1worker']:.1f} clips/s; "
                    f"{n} clips, median of {repeats}"),
    ]


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(sys.argv[1:])
    else:
        run_standalone(run, __doc__, "scratch folder for the outputs", 3)
