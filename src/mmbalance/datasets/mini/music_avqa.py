"""Mini MUSIC-AVQA: a small synthetic release in the layout of the real one.

Writes ``data/video/<video_id>.mp4`` (short H.264 videos with a mono AAC track, muxed with the
mini AVE's ``write_mp4``), ``data/json/avqa-{train,val,test}.json`` (the release's records:
``video_id``, ``question_id``, ``type``, ``question_content``, ``templ_values``,
``question_deleted``, ``anser``) and ``mini_truth.csv`` (per-question truth; not part of the
native layout).

A video is a tiny "performance": 1–``max_instruments`` instruments (of the first
``num_instruments`` real MUSIC-AVQA instrument names) stand at distinct positions (left, middle,
right), each drawn as a square of its own colour; some of them sound, each from its own onset to
the end, as a harmonic tone at its own pitch (``_av_synth.tone``). Questions use templates of
the real dataset's kinds with its placeholders (``<Object>``, ``<FL>``), answered from the
real vocabulary's kinds (yes / no, zero … three, left / middle / right, instrument names):

=============================  ====================================================================  ==========
type                           question_content                                                      needs
=============================  ====================================================================  ==========
Audio-Counting                 How many musical instruments were heard throughout the video?         audio
Audio-Visual-Existential       Is the <Object> in the video making sound?                            audio
Audio-Visual-Temporal          Which is the musical instrument that sounds at the same time as the   audio
                               <Object>?
Visual-Counting                Is there a <Object> in the entire video?                              visual
Visual-Counting                How many musical instruments are in the entire video?                 visual
Visual-Location                Where is the <Object>?                                                visual
Audio-Visual-Temporal          Where is the <FL> sounding instrument?                                both
Audio-Visual-Counting          How many instruments in the video did not sound from beginning to     both
                               end?
=============================  ====================================================================  ==========

The imbalance is set by two knobs per modality, drawn independently per video: audio is the
strong one (tones ``audio_snr_db`` above white noise; ``audio_uninformative_fraction`` of the
videos carry noise only), vision the weak one (squares of contrast 1 under Gaussian pixel noise
of std ``visual_noise_std``; ``visual_uninformative_fraction`` of the videos show noise only).
The question alone gives only the answer priors of its template, as on the real data.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from mmbalance.datasets.mini import register_generator
from mmbalance.datasets.mini._av_synth import PEAK, SynthRecipe, build_recipe, pick_flags, prepare_root, run_jobs, tone, write_mp4
from mmbalance.datasets.music_avqa import SPLIT_FILES, VIDEO_EXT

__all__ = ["INSTRUMENTS", "JSON_DIR", "POSITIONS", "TEMPLATES", "TRUTH_FILE", "VIDEO_DIR", "generate_music_avqa"]

TRUTH_FILE = "mini_truth.csv"
JSON_DIR, VIDEO_DIR = "data/json", "data/video"  # the authors' repository layout
# MUSIC-AVQA's 22 instruments, spelt as its templ_values and answers spell them
INSTRUMENTS = ("violin", "flute", "piano", "cello", "trumpet", "accordion", "acoustic_guitar", "bagpipe", "banjo",
               "bassoon", "clarinet", "congas", "drum", "electric_bass", "erhu", "guzheng", "pipa", "saxophone",
               "suona", "tuba", "ukulele", "xylophone")
POSITIONS = ("left", "middle", "right")
COUNTS = ("zero", "one", "two", "three")
# one RGB direction per instrument (unit-free; scaled by the square's contrast of 1 noise std)
_PALETTE = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1], [1, 1, 1],
                     [-1, -1, -1]], dtype=np.float32)
# (scenario, kind, question_content) per template; answers and applicability in _ask
TEMPLATES = {
    "heard": ("Audio", "Counting", "How many musical instruments were heard throughout the video?"),
    "making_sound": ("Audio-Visual", "Existential", "Is the <Object> in the video making sound?"),
    "same_time": ("Audio-Visual", "Temporal", "Which is the musical instrument that sounds at the same time as the <Object>?"),
    "is_there": ("Visual", "Counting", "Is there a <Object> in the entire video?"),
    "how_many": ("Visual", "Counting", "How many musical instruments are in the entire video?"),
    "where": ("Visual", "Location", "Where is the <Object>?"),
    "first_last": ("Audio-Visual", "Temporal", "Where is the <FL> sounding instrument?"),
    "silent": ("Audio-Visual", "Counting", "How many instruments in the video did not sound from beginning to end?"),
}


@dataclass(frozen=True)
class _Recipe:
    """Every knob of one generated release (recorded in the summary)."""

    train_videos: int
    val_videos: int
    test_videos: int
    questions_per_video: int
    seed: int
    num_instruments: int
    max_instruments: int
    sounding_prob: float
    duration_s: float
    audio_snr_db: float
    audio_uninformative_fraction: float
    visual_noise_std: float
    visual_uninformative_fraction: float
    square_fraction: float
    missing_videos: int


@dataclass(frozen=True)
class _Video:
    """One video's truth; ``index`` seeds its own generator (bytes independent of workers)."""

    index: int
    video_id: str
    split: str
    instruments: tuple[int, ...]  # instrument indices, one per position used
    positions: tuple[int, ...]  # index into POSITIONS, distinct
    onsets: tuple[float, ...]  # per instrument: seconds it starts sounding, -1 = silent
    audio_informative: bool
    visual_informative: bool
    written: bool  # False: listed in the json files but its mp4 is missing (a skip)


@register_generator("music_avqa")
def generate_music_avqa(
    root: Path,
    *,
    train_videos: int = 400,
    val_videos: int = 50,
    test_videos: int = 100,
    questions_per_video: int = 5,
    seed: int = 0,
    num_instruments: int = 6,
    max_instruments: int = 3,
    sounding_prob: float = 0.6,
    duration_s: float = 4.0,
    audio_snr_db: float = 5.0,
    audio_uninformative_fraction: float = 0.1,
    visual_noise_std: float = 0.8,
    visual_uninformative_fraction: float = 0.2,
    square_fraction: float = 0.25,
    missing_videos: int = 0,
    sample_rate: int = 16000,
    video_fps: int = 4,
    frame_size: int = 32,
    pitch_min_hz: float = 220.0,
    pitch_max_hz: float = 1400.0,
    show_progress: bool = True,
    workers: int = 1,
) -> dict:
    """Write a mini MUSIC-AVQA under ``root``; return a summary dict.

    ``train_videos`` / ``val_videos`` / ``test_videos`` videos of ``duration_s`` seconds at
    ``video_fps`` frames/s, ``frame_size``² pixels, each with min(``questions_per_video``, the
    templates that apply) questions (distinct templates, drawn uniformly). A video shows
    U{1..max_instruments} distinct instruments of the first ``num_instruments`` at distinct
    positions; each sounds with probability ``sounding_prob``, the sounding ones starting at
    distinct onsets (multiples of 0.5 s in the clip's first half; the earliest at 0 s). Audio:
    each sounding instrument's tone at geomspace(pitch_min_hz, pitch_max_hz)[instrument] from its
    onset, white noise ``audio_snr_db`` below one tone's power; noise only on
    round(audio_uninformative_fraction · N) videos. Frames: per instrument a square of side
    square_fraction · frame_size in its colour at its position (a random vertical offset per
    video), Gaussian pixel noise of std ``visual_noise_std`` (the squares' contrast is 1); noise
    only on round(visual_uninformative_fraction · N) videos. ``missing_videos`` train videos are
    listed in avqa-train.json but not written (their questions are skipped). Question ids run
    over the three files, video ids are random 8-digit numbers as the release's. Each video has
    its own generator seeded with (seed, index): the bytes do not depend on ``workers``. A
    previous mini release in ``root`` (recognised by its truth file) is replaced; real data is
    never overwritten.
    """
    knobs = locals()
    recipe = _Recipe(**{f.name: knobs[f.name] for f in fields(_Recipe)})
    _check(recipe)
    synth = build_recipe(seed=seed, num_classes=num_instruments, duration_s=duration_s, sample_rate=sample_rate,
                         video_fps=video_fps, frame_size=frame_size, audio_snr_db=audio_snr_db,
                         pitch_min_hz=pitch_min_hz, pitch_max_hz=pitch_max_hz, envelope_on_prob=1.0)
    rng = np.random.default_rng(seed)
    videos = _plan_videos(rng, recipe)
    questions = _plan_questions(rng, recipe, videos)
    root = Path(root)
    prepare_root(root, TRUTH_FILE, ["data"])
    (root / JSON_DIR).mkdir(parents=True)
    (root / VIDEO_DIR).mkdir(parents=True)
    jobs = [(root, synth, recipe, v) for v in videos if v.written]
    run_jobs(_write_video, jobs, workers, "mini music_avqa", show_progress)
    _write_json(root / JSON_DIR, questions)
    _write_truth(root / TRUTH_FILE, videos, questions)
    return _summary(root, recipe, videos, questions)


def _check(r: _Recipe) -> None:
    """Reject settings that cannot produce a valid release (ValueError naming the knob)."""
    if min(r.train_videos, r.val_videos, r.test_videos) < 1:
        raise ValueError(f"train_videos, val_videos and test_videos must be >= 1, got "
                         f"{r.train_videos}, {r.val_videos}, {r.test_videos}")
    if not 1 <= r.questions_per_video <= len(TEMPLATES):
        raise ValueError(f"questions_per_video must be in [1, {len(TEMPLATES)}], got {r.questions_per_video}")
    if not 2 <= r.num_instruments <= min(len(INSTRUMENTS), len(_PALETTE)):
        raise ValueError(f"num_instruments must be in [2, {min(len(INSTRUMENTS), len(_PALETTE))}], got {r.num_instruments}")
    if not 1 <= r.max_instruments <= min(len(POSITIONS), r.num_instruments):
        raise ValueError(f"max_instruments must be in [1, {min(len(POSITIONS), r.num_instruments)}], got {r.max_instruments}")
    for name in ("sounding_prob", "audio_uninformative_fraction", "visual_uninformative_fraction"):
        if not 0.0 <= getattr(r, name) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(r, name)}")
    if r.duration_s < max(2.0, r.max_instruments):
        # onsets are distinct multiples of 0.5 s in the first half: room for max_instruments of them
        raise ValueError(f"duration_s must be >= max(2, max_instruments) = {max(2, r.max_instruments)}, got {r.duration_s}")
    if not 0.0 < r.square_fraction <= 1.0 / len(POSITIONS):
        raise ValueError(f"square_fraction must be in (0, {1 / len(POSITIONS):.3f}] (squares must not overlap), "
                         f"got {r.square_fraction}")
    if not 0 <= r.missing_videos < r.train_videos:
        raise ValueError(f"missing_videos must be in [0, train_videos), got {r.missing_videos}")


def _plan_videos(rng: np.random.Generator, r: _Recipe) -> list[_Video]:
    """Every video's truth, in file order (train, val, test)."""
    splits = ["train"] * r.train_videos + ["val"] * r.val_videos + ["test"] * r.test_videos
    n = len(splits)
    ids = rng.choice(10**8, n, replace=False)  # 8-digit ids, as "00000272"
    deaf = pick_flags(rng, n, r.audio_uninformative_fraction, "audio_uninformative_fraction")
    blind = pick_flags(rng, n, r.visual_uninformative_fraction, "visual_uninformative_fraction")
    missing = pick_flags(rng, r.train_videos, r.missing_videos / r.train_videos, "missing_videos")  # train videos only
    onset_grid = np.arange(0.0, r.duration_s / 2, 0.5)  # candidate onsets in the first half
    videos = []
    for i in range(n):
        count = int(rng.integers(1, r.max_instruments + 1))
        instruments = tuple(int(x) for x in rng.choice(r.num_instruments, count, replace=False))
        positions = tuple(int(x) for x in rng.choice(len(POSITIONS), count, replace=False))
        sounding = rng.random(count) < r.sounding_prob
        k = int(sounding.sum())
        # distinct onsets, the earliest at 0 s (so "first" and "last" are never tied)
        times = np.sort(np.concatenate([[0.0], rng.choice(onset_grid[1:], max(k - 1, 0), replace=False)]))[:k]
        order = rng.permutation(k)  # which sounding instrument gets which onset
        onsets = np.full(count, -1.0)
        onsets[np.flatnonzero(sounding)] = times[order]
        videos.append(_Video(i, f"{ids[i]:08d}", splits[i], instruments, positions,
                             tuple(float(t) for t in onsets), i not in deaf, i not in blind, i not in missing))
    return videos


def _ask(rng: np.random.Generator, r: _Recipe, v: _Video, name: str) -> tuple[list[str], str] | None:
    """(templ_values, answer) of template ``name`` on video ``v``; None where it does not apply."""
    sounding = [j for j, t in enumerate(v.onsets) if t >= 0]
    present = set(v.instruments)
    if name == "heard":
        return [], COUNTS[len(sounding)]
    if name == "making_sound":
        j = int(rng.integers(len(v.instruments)))
        return [INSTRUMENTS[v.instruments[j]]], "yes" if v.onsets[j] >= 0 else "no"
    if name == "same_time":
        if len(sounding) != 2:
            return None
        a, b = rng.permutation(sounding)
        return [INSTRUMENTS[v.instruments[a]]], INSTRUMENTS[v.instruments[b]]
    if name == "is_there":
        absent = [k for k in range(r.num_instruments) if k not in present]
        if absent and rng.random() < 0.5:
            return [INSTRUMENTS[int(rng.choice(absent))]], "no"
        return [INSTRUMENTS[int(rng.choice(v.instruments))]], "yes"
    if name == "how_many":
        return [], COUNTS[len(v.instruments)]
    if name == "where":
        j = int(rng.integers(len(v.instruments)))
        return [INSTRUMENTS[v.instruments[j]]], POSITIONS[v.positions[j]]
    if name == "first_last":
        if not sounding:
            return None
        which = "first" if rng.random() < 0.5 else "last"
        pick = min if which == "first" else max
        j = pick(sounding, key=lambda s: v.onsets[s])
        return [which], POSITIONS[v.positions[j]]
    if name == "silent":
        return [], COUNTS[len(v.instruments) - len(sounding)]
    raise KeyError(name)


def _plan_questions(rng: np.random.Generator, r: _Recipe, videos: list[_Video]) -> list[dict]:
    """The question records of every video, in file order, with their truth (keys starting
    with '_' are left out of the json files)."""
    records, qid = [], 0
    names = list(TEMPLATES)
    for v in videos:
        asked = 0
        for t in rng.permutation(len(names)):  # drawn for every video: the same stream
            if asked == r.questions_per_video:
                break
            got = _ask(rng, r, v, names[t])
            if got is None:
                continue
            scenario, kind, content = TEMPLATES[names[t]]
            values, answer = got
            records.append({"video_id": v.video_id, "question_id": qid, "type": json.dumps([scenario, kind]),
                            "question_content": content, "templ_values": json.dumps(values), "question_deleted": 0,
                            "anser": answer, "_split": v.split, "_template": names[t]})
            qid += 1
            asked += 1
    return records


def _write_video(job: tuple[Path, SynthRecipe, _Recipe, _Video]) -> None:
    """Synthesise one video and write it as mp4 (runs in a worker process)."""
    root, synth, r, v = job
    rng = np.random.default_rng([r.seed, v.index])
    wave = _audio(rng, synth, v)  # [duration · rate] float32
    frames = _frames(rng, synth, r, v)  # [T, S, S, 3] uint8
    write_mp4(root / VIDEO_DIR / f"{v.video_id}{VIDEO_EXT}", frames, wave, synth)


def _audio(rng: np.random.Generator, synth: SynthRecipe, v: _Video) -> np.ndarray:
    """White noise + each sounding instrument's tone from its onset; float32 [n], peak 0.9.

    The noise level is set against one unit tone's power (Σ harmonic amplitude² / 2), so a video
    without a sounding instrument is noise at the same level. An uninformative video's tones are
    left out (its noise is drawn all the same: the stream stays aligned)."""
    sr = synth.sample_rate
    n = round(synth.duration_s * sr)
    wave = np.zeros(n)
    for inst, onset in zip(v.instruments, v.onsets, strict=True):
        if onset < 0:
            continue
        a = round(onset * sr)
        part = tone(rng, synth, inst, n - a)  # drawn for every sounding instrument
        if v.audio_informative:
            wave[a:] += part
    power = sum(h * h for h in synth.harmonic_amplitudes) / 2
    wave += rng.normal(0.0, np.sqrt(power / 10 ** (synth.audio_snr_db / 10)), n)
    return (PEAK * wave / np.abs(wave).max()).astype(np.float32)


def _frames(rng: np.random.Generator, synth: SynthRecipe, r: _Recipe, v: _Video) -> np.ndarray:
    """Pixel noise + one coloured square per instrument at its position; uint8 [T, S, S, 3]."""
    s = synth.frame_size
    count = max(1, round(synth.duration_s * synth.video_fps))
    side = max(2, round(r.square_fraction * s))
    scene = np.zeros((s, s, 3), dtype=np.float32)
    top = int(rng.integers(0, s - side + 1))  # one vertical offset per video
    for inst, pos in zip(v.instruments, v.positions, strict=True):
        left = round((pos + 0.5) * s / len(POSITIONS) - side / 2)
        scene[top : top + side, left : left + side] = _PALETTE[inst]
    noise = rng.normal(0.0, r.visual_noise_std, (count, s, s, 3)).astype(np.float32)
    x = noise + (scene if v.visual_informative else 0.0)
    return np.clip(128 + 40.0 * x, 0, 255).astype(np.uint8)


def _write_json(folder: Path, records: list[dict]) -> None:
    """avqa-{train,val,test}.json: the records of each split, indented as the release's files."""
    for split, name in SPLIT_FILES.items():
        rows = [{k: v for k, v in rec.items() if not k.startswith("_")} for rec in records if rec["_split"] == split]
        (folder / name).write_text(json.dumps(rows, indent=4) + "\n", encoding="utf-8")


def _write_truth(path: Path, videos: list[_Video], records: list[dict]) -> None:
    """One row per question, sorted by clip id: its answer and the video's truth."""
    by_id = {v.video_id: v for v in videos}
    names = ["clip_id", "split", "template", "question_type", "answer", "instruments", "positions", "onsets",
             "audio_informative", "visual_informative", "video_written"]
    rows = []
    for rec in records:
        v = by_id[rec["video_id"]]
        rows.append([f"{v.video_id}_{rec['question_id']}", v.split, rec["_template"], "-".join(json.loads(rec["type"])),
                     rec["anser"], ";".join(INSTRUMENTS[i] for i in v.instruments),
                     ";".join(POSITIONS[p] for p in v.positions), ";".join(f"{t:g}" for t in v.onsets),
                     int(v.audio_informative), int(v.visual_informative), int(v.written)])
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(sorted(rows))


def _summary(root: Path, r: _Recipe, videos: list[_Video], records: list[dict]) -> dict:
    """Counts and settings of the written release (JSON-serialisable)."""
    return {
        "dataset": "music_avqa",
        "root": str(root),
        "videos": {s: sum(v.split == s for v in videos) for s in SPLIT_FILES},
        "questions": {s: sum(rec["_split"] == s for rec in records) for s in SPLIT_FILES},
        "templates": {t: sum(rec["_template"] == t for rec in records) for t in TEMPLATES},
        "answers": sorted({rec["anser"] for rec in records}),
        "missing_videos": sum(not v.written for v in videos),
        **asdict(r),
    }
