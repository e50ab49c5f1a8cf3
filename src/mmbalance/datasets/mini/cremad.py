"""Mini CREMA-D: a small synthetic dataset in the native CREMA-D layout.

Audio is the strong modality (a noisy 3-harmonic tone at a class pitch), vision the weak one (a
faint class-dependent grating under Gaussian noise), so that joint training under-trains the
visual encoder as on the real data. Files: ``AudioWAV/<id>.wav`` (16-bit PCM mono),
``VideoFlash/<id>.flv`` (FLV1 video + AAC/MP3 audio track of the same waveform) and
``mini_truth.csv`` (per-clip ground truth; not part of the native layout).
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from mmbalance.datasets.cremad import (
    AUDIO_DIR,
    AUDIO_EXT,
    CLASSES,
    LEVELS,
    SENTENCES,
    VIDEO_DIR,
    VIDEO_EXT,
)
from mmbalance.datasets.mini import register_generator
from mmbalance.datasets.mini._av_synth import PEAK, run_jobs, tone

__all__ = ["TRUTH_FILE", "generate_cremad"]

TRUTH_FILE = "mini_truth.csv"
_ACTORS = tuple(range(1001, 1092))  # 91 actors, as in CREMA-D


@dataclass(frozen=True)
class _Recipe:
    """Every per-run knob a worker needs (picklable)."""

    seed: int
    duration_s: float
    sample_rate: int
    video_fps: int
    frame_size: int
    frame_width: int  # frame_size unless set: CREMA-D's real FLVs are 480x360
    frame_height: int
    audio_snr_db: float
    pitches_hz: tuple[float, ...]
    pitch_jitter: float
    harmonic_amplitudes: tuple[float, ...]
    envelope_block_s: float
    envelope_on_prob: float
    visual_grating_amplitude: float
    grating_cycles: tuple[float, ...]
    colour_cast_std: float
    pixel_scale: float
    video_bit_rate: int
    flv_audio_codec: str


@dataclass(frozen=True)
class _ClipSpec:
    """One clip to write: its index seeds its own generator."""

    index: int
    clip_id: str
    label: int
    tone_class: int  # class whose pitch the audio carries
    audio_informative: bool  # False: tone_class was drawn independently of the label
    visual_informative: bool  # False: no grating


@register_generator("cremad")
def generate_cremad(
    root: Path,
    *,
    clips_per_class: int,
    seed: int,
    duration_s: float = 2.5,
    sample_rate: int = 16000,
    video_fps: int = 10,
    frame_size: int = 32,
    frame_width: int | None = None,
    frame_height: int | None = None,
    audio_snr_db: float = -10.0,
    audio_ambiguous_fraction: float = 0.08,
    visual_grating_amplitude: float = 0.35,
    visual_uninformative_fraction: float = 0.2,
    pitch_min_hz: float = 180.0,
    pitch_max_hz: float = 1050.0,
    pitch_jitter: float = 0.06,
    harmonic_amplitudes: tuple[float, ...] = (1.0, 0.5, 0.25),
    envelope_block_s: float = 0.1,
    envelope_on_prob: float = 0.6,
    grating_cycles: tuple[float, ...] = (2.5, 3.5, 4.5),
    colour_cast_std: float = 0.5,
    pixel_scale: float = 40.0,
    video_bit_rate: int = 200_000,
    flv_audio_codec: str = "aac",
    workers: int = 1,
    show_progress: bool = True,
) -> dict:
    """Write a mini CREMA-D under ``root``; return a summary dict.

    Audio: tone at pitch ``geomspace(pitch_min_hz, pitch_max_hz, 6)[class]`` (x(1 +/- jitter)),
    harmonics with ``harmonic_amplitudes``, on/off envelope in ``envelope_block_s`` blocks (on
    with ``envelope_on_prob``), white noise at ``audio_snr_db``. Exactly
    round(audio_ambiguous_fraction * clips_per_class) clips per class get the tone of a
    uniformly random class instead. Vision: ``video_fps`` frames/s of 3xHxW N(0, 1) noise + a
    per-clip colour cast N(0, colour_cast_std) + a grating of amplitude
    ``visual_grating_amplitude`` (noise-std units), angle pi*class/6 and
    ``grating_cycles[class % len]`` cycles per frame (along each axis, relative to its length);
    H x W = ``frame_height`` x ``frame_width``, each defaulting to ``frame_size`` (a square; set
    both to 480 x 360 at ``video_fps`` 30 for CREMA-D's real geometry); round(visual_uninformative_fraction *
    clips_per_class) clips per class carry no grating; pixels = clip(128 + pixel_scale * x).
    Each clip uses its own generator seeded with (seed, index), so the output does not depend
    on ``workers`` (>1 writes with that many spawned processes). A previous mini dataset in
    ``root`` (recognised by its truth file) is replaced; real data is never deleted.
    """
    root = Path(root)
    recipe = _Recipe(
        seed=seed,
        duration_s=duration_s,
        sample_rate=sample_rate,
        video_fps=video_fps,
        frame_size=frame_size,
        frame_width=frame_size if frame_width is None else int(frame_width),
        frame_height=frame_size if frame_height is None else int(frame_height),
        audio_snr_db=audio_snr_db,
        pitches_hz=tuple(np.geomspace(pitch_min_hz, pitch_max_hz, len(CLASSES)).tolist()),
        pitch_jitter=pitch_jitter,
        harmonic_amplitudes=tuple(harmonic_amplitudes),
        envelope_block_s=envelope_block_s,
        envelope_on_prob=envelope_on_prob,
        visual_grating_amplitude=visual_grating_amplitude,
        grating_cycles=tuple(grating_cycles),
        colour_cast_std=colour_cast_std,
        pixel_scale=pixel_scale,
        video_bit_rate=video_bit_rate,
        flv_audio_codec=flv_audio_codec,
    )
    _check_recipe(recipe, clips_per_class)
    specs = _plan_clips(
        clips_per_class, seed, audio_ambiguous_fraction, visual_uninformative_fraction
    )
    _prepare_root(root)
    run_jobs(_write_clip, [(root, recipe, spec) for spec in specs], workers, "mini cremad", show_progress, chunksize=32)
    _write_truth(root / TRUTH_FILE, specs)
    return _summary(root, recipe, specs, clips_per_class)


def _check_recipe(recipe: _Recipe, clips_per_class: int) -> None:
    """Reject settings that cannot produce a valid dataset (ValueError)."""
    capacity = len(_ACTORS) * len(SENTENCES) * len(LEVELS)
    if not 1 <= clips_per_class <= capacity:
        raise ValueError(f"clips_per_class must be in [1, {capacity}], got {clips_per_class}")
    top = recipe.pitches_hz[-1] * (1 + recipe.pitch_jitter) * len(recipe.harmonic_amplitudes)
    if top >= recipe.sample_rate / 2:
        raise ValueError(f"highest harmonic {top:.0f} Hz exceeds Nyquist at {recipe.sample_rate}")
    for name in ("frame_width", "frame_height"):
        value = getattr(recipe, name)
        if value <= 0 or value % 2:  # yuv420p halves both axes for chroma
            raise ValueError(f"{name} (default frame_size) must be even and positive (yuv420p video), got {value}")
    if recipe.flv_audio_codec not in ("aac", "mp3"):
        raise ValueError(f"flv_audio_codec must be 'aac' or 'mp3', got {recipe.flv_audio_codec!r}")


def _plan_clips(
    clips_per_class: int, seed: int, ambiguous_fraction: float, uninformative_fraction: float
) -> list[_ClipSpec]:
    """Draw unique real-looking ids and the per-clip truth; returns specs sorted by id."""
    for name, frac in [
        ("audio_ambiguous_fraction", ambiguous_fraction),
        ("visual_uninformative_fraction", uninformative_fraction),
    ]:
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {frac}")
    rng = np.random.default_rng(seed)
    n_ambiguous = round(ambiguous_fraction * clips_per_class)
    n_blank = round(uninformative_fraction * clips_per_class)
    rows = []
    for label, emotion in enumerate(CLASSES):
        # sample (actor, sentence, level) combinations without replacement -> unique ids
        combos = rng.choice(len(_ACTORS) * len(SENTENCES) * len(LEVELS), clips_per_class, False)
        ambiguous = set(rng.choice(clips_per_class, n_ambiguous, replace=False).tolist())
        blank = set(rng.choice(clips_per_class, n_blank, replace=False).tolist())
        for j, combo in enumerate(combos):
            actor, rest = divmod(int(combo), len(SENTENCES) * len(LEVELS))
            sentence, level = divmod(rest, len(LEVELS))
            clip_id = f"{_ACTORS[actor]}_{SENTENCES[sentence]}_{emotion}_{LEVELS[level]}"
            # ambiguous audio: tone of a uniformly random class, independent of the label
            tone = int(rng.integers(len(CLASSES))) if j in ambiguous else label
            rows.append((clip_id, label, tone, j not in ambiguous, j not in blank))
    rows.sort()
    return [_ClipSpec(i, *row) for i, row in enumerate(rows)]


def _prepare_root(root: Path) -> None:
    """Create the layout folders; replace a previous mini dataset, refuse to touch real data."""
    existing = [root / d for d in (AUDIO_DIR, VIDEO_DIR) if (root / d).exists()]
    if existing and any(any(d.iterdir()) for d in existing):
        if not (root / TRUTH_FILE).is_file():
            raise FileExistsError(f"{root}: holds media but no {TRUTH_FILE}; not overwriting it")
        for d in existing:
            shutil.rmtree(d)
    (root / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    (root / VIDEO_DIR).mkdir(parents=True, exist_ok=True)


def _write_clip(job: tuple[Path, _Recipe, _ClipSpec]) -> None:
    """Synthesise and write one clip's .wav and .flv (runs in a worker process)."""
    root, recipe, spec = job
    rng = np.random.default_rng([recipe.seed, spec.index])
    wave = _synth_audio(rng, recipe, spec.tone_class)  # [n] float32
    frames = _synth_frames(rng, recipe, spec.label, spec.visual_informative)  # [T, H, W, 3]
    sf.write(root / AUDIO_DIR / f"{spec.clip_id}{AUDIO_EXT}", wave, recipe.sample_rate, "PCM_16")
    _write_flv(root / VIDEO_DIR / f"{spec.clip_id}{VIDEO_EXT}", frames, wave, recipe)


def _synth_audio(rng: np.random.Generator, recipe: _Recipe, tone_class: int) -> np.ndarray:
    """Noisy harmonic tone with an on/off envelope; float32 [duration * rate], peak 0.9."""
    n = round(recipe.duration_s * recipe.sample_rate)
    wave = tone(rng, recipe, tone_class, n)
    noise_std = np.sqrt(np.mean(wave**2) / 10 ** (recipe.audio_snr_db / 10))
    wave = wave + rng.normal(0.0, noise_std, n)
    return (PEAK * wave / np.abs(wave).max()).astype(np.float32)


def _synth_frames(
    rng: np.random.Generator, recipe: _Recipe, label: int, informative: bool
) -> np.ndarray:
    """Noise + colour cast (+ class grating); uint8 [T, H, W, 3] RGB, T = duration * fps."""
    h, w = _frame_hw(recipe)
    count = max(1, round(recipe.duration_s * recipe.video_fps))
    x = rng.standard_normal((count, h, w, 3), dtype=np.float32)  # float32: 2x faster draws
    x += rng.normal(0.0, recipe.colour_cast_std, 3).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)  # drawn either way: same random stream for all clips
    if informative:
        g = recipe.visual_grating_amplitude * _grating(recipe, label, phase)  # [H, W]
        x += g[None, :, :, None].astype(np.float32)
    return np.clip(128 + recipe.pixel_scale * x, 0, 255).astype(np.uint8)


def _frame_hw(recipe) -> tuple[int, int]:
    """(height, width) of the frames; a recipe without them (older callers) is frame_size square."""
    return (getattr(recipe, "frame_height", None) or recipe.frame_size,
            getattr(recipe, "frame_width", None) or recipe.frame_size)


def _grating(recipe: _Recipe, label: int, phase: float) -> np.ndarray:
    """Unit sinusoid [H, W]: angle pi*label/classes, grating_cycles[label % len] cycles/frame."""
    h, w = _frame_hw(recipe)
    angle = np.pi * label / len(CLASSES)
    cycles = recipe.grating_cycles[label % len(recipe.grating_cycles)]
    # coordinates in [0, 1) along each axis (for a square: the same values as mgrid / size)
    y, x = np.mgrid[0:h, 0:w]
    y, x = y / h, x / w
    return np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) + phase)


def _write_flv(path: Path, frames: np.ndarray, wave: np.ndarray, recipe: _Recipe) -> None:
    """Mux FLV1 video [T, H, W, 3] and an AAC (16 kHz) or MP3 (22.05 kHz) mono audio track.

    The bytes are deterministic for fixed inputs (no wall-clock metadata is written).
    """
    with av.open(str(path), "w", format="flv") as container:
        video = container.add_stream("flv", rate=recipe.video_fps)
        video.height, video.width = _frame_hw(recipe)
        video.pix_fmt = "yuv420p"
        video.bit_rate = recipe.video_bit_rate
        if recipe.flv_audio_codec == "aac":
            # the fast coder is ~2.5x quicker than the default twoloop one; layout='mono' or the
            # decoded sample count doubles
            audio = container.add_stream(
                "aac", rate=recipe.sample_rate, layout="mono", options={"aac_coder": "fast"}
            )
        else:  # FLV cannot signal 16 kHz MP3/PCM: MP3 goes at 22.05 kHz (PyAV resamples)
            audio = container.add_stream("mp3", rate=22050, layout="mono")
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        samples = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
        samples.sample_rate = recipe.sample_rate
        container.mux(audio.encode(samples))
        container.mux(audio.encode(None))


def _write_truth(path: Path, specs: list[_ClipSpec]) -> None:
    """clip_id,label,audio_informative,visual_informative (0/1), sorted by clip_id."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["clip_id", "label", "audio_informative", "visual_informative"])
        for s in specs:
            row = [s.clip_id, s.label, int(s.audio_informative), int(s.visual_informative)]
            writer.writerow(row)


def _summary(root: Path, recipe: _Recipe, specs: list[_ClipSpec], clips_per_class: int) -> dict:
    """Counts and settings of the written dataset (JSON-serialisable)."""
    return {
        "dataset": "cremad",
        "root": str(root),
        "num_clips": len(specs),
        "clips_per_class": clips_per_class,
        "class_counts": {c: sum(s.label == i for s in specs) for i, c in enumerate(CLASSES)},
        "audio_ambiguous": sum(not s.audio_informative for s in specs),
        "visual_uninformative": sum(not s.visual_informative for s in specs),
        **{k: v for k, v in asdict(recipe).items() if k != "pitches_hz"},
        "pitches_hz": [round(p, 3) for p in recipe.pitches_hz],
    }
