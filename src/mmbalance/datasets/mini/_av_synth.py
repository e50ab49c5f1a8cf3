"""Shared synthesis for mini audio-visual datasets stored as 10-s mp4 clips (AVE, Kinetics-Sounds).

A clip is an H.264 (or MPEG-4 part 2) video with a mono AAC track. Audio is the strong modality
(a noisy harmonic tone at a class pitch), vision the weak one (a faint class-dependent grating
under Gaussian pixel noise), as in the mini CREMA-D. A clip may carry its class only inside an
event span [start, end) and a *distractor* class outside it (AVE's annotated events), so an
adapter that ignores the span reads the wrong class.
"""

from __future__ import annotations

import csv
import multiprocessing
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

__all__ = [
    "ClipSpec",
    "SynthRecipe",
    "build_recipe",
    "check_recipe",
    "grating",
    "pick_flags",
    "plan_labels",
    "prepare_root",
    "run_jobs",
    "summary_of",
    "synth_audio",
    "synth_frames",
    "write_clip",
    "write_mp4",
    "write_truth",
    "youtube_ids",
]

PEAK = 0.9  # waveform peak, headroom for the AAC encoder and 16-bit PCM
_YT_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
VIDEO_CODECS = ("libx264", "mpeg4")


@dataclass(frozen=True)
class SynthRecipe:
    """Every per-run knob a writer process needs (picklable)."""

    seed: int
    num_classes: int
    duration_s: float
    sample_rate: int
    video_fps: int
    frame_size: int
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
    video_codec: str
    video_crf: int
    audio_bit_rate: int


@dataclass(frozen=True)
class ClipSpec:
    """One clip to write; ``index`` seeds its own generator (output independent of workers)."""

    index: int
    clip_id: str
    path: str  # relative to the dataset root
    label: int
    split: str
    tone_class: int  # class whose pitch the event audio carries (= label unless ambiguous)
    audio_informative: bool
    visual_informative: bool
    start_s: float  # event span [start_s, end_s)
    end_s: float
    distractor: int  # class shown/heard outside the span, -1 for none
    has_audio: bool = True


def build_recipe(
    *,
    seed: int,
    num_classes: int,
    duration_s: float,
    sample_rate: int = 16000,
    video_fps: int = 4,
    frame_size: int = 32,
    audio_snr_db: float = -10.0,
    visual_grating_amplitude: float = 0.4,
    pitch_min_hz: float = 180.0,
    pitch_max_hz: float = 1400.0,
    pitch_jitter: float = 0.05,
    harmonic_amplitudes: tuple[float, ...] = (1.0, 0.5, 0.25),
    envelope_block_s: float = 0.1,
    envelope_on_prob: float = 0.6,
    grating_cycles: tuple[float, ...] = (2.5, 3.5, 4.5),
    colour_cast_std: float = 0.5,
    pixel_scale: float = 40.0,
    video_codec: str = "libx264",
    video_crf: int = 18,
    audio_bit_rate: int = 32000,
) -> SynthRecipe:
    """A checked SynthRecipe: the signal knobs of the mini AVE and Kinetics-Sounds generators (their
    ``generate.<dataset>`` params; these are the defaults). Class pitches are
    geomspace(pitch_min_hz, pitch_max_hz, num_classes)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    recipe = SynthRecipe(
        seed=seed, num_classes=num_classes, duration_s=float(duration_s), sample_rate=sample_rate,
        video_fps=video_fps, frame_size=frame_size, audio_snr_db=audio_snr_db,
        pitches_hz=tuple(np.geomspace(pitch_min_hz, pitch_max_hz, num_classes).tolist()),
        pitch_jitter=pitch_jitter, harmonic_amplitudes=tuple(harmonic_amplitudes),
        envelope_block_s=envelope_block_s, envelope_on_prob=envelope_on_prob,
        visual_grating_amplitude=visual_grating_amplitude, grating_cycles=tuple(grating_cycles),
        colour_cast_std=colour_cast_std, pixel_scale=pixel_scale, video_codec=video_codec,
        video_crf=video_crf, audio_bit_rate=audio_bit_rate,
    )  # fmt: skip
    check_recipe(recipe)
    return recipe


def summary_of(recipe: SynthRecipe) -> dict:
    """The recipe as JSON-friendly values (pitches rounded)."""
    out = asdict(recipe)
    out["pitches_hz"] = [round(p, 3) for p in recipe.pitches_hz]
    return out


def check_recipe(recipe: SynthRecipe) -> None:
    """Reject settings that cannot produce a valid dataset (ValueError naming the setting)."""
    top = recipe.pitches_hz[-1] * (1 + recipe.pitch_jitter) * len(recipe.harmonic_amplitudes)
    if top >= recipe.sample_rate / 2:
        raise ValueError(f"highest harmonic {top:.0f} Hz exceeds Nyquist at {recipe.sample_rate} Hz")
    if recipe.frame_size % 2 or recipe.frame_size < 16:
        raise ValueError(f"frame_size must be even and >= 16 (yuv420p video), got {recipe.frame_size}")
    if recipe.video_codec not in VIDEO_CODECS:
        raise ValueError(f"video_codec must be one of {VIDEO_CODECS}, got {recipe.video_codec!r}")
    if recipe.video_fps < 1:
        raise ValueError(f"video_fps must be >= 1 (one frame per second at least), got {recipe.video_fps}")


def pick_flags(rng: np.random.Generator, n: int, fraction: float, name: str) -> set[int]:
    """Exactly round(fraction * n) distinct positions in range(n)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {fraction}")
    return set(rng.choice(n, round(fraction * n), replace=False).tolist())


@dataclass(frozen=True)
class LabelPlan:
    """The truth drawn for one clip before it gets an id and a path."""

    label: int
    split: str
    tone_class: int
    audio_informative: bool
    visual_informative: bool


def plan_labels(
    rng: np.random.Generator,
    num_classes: int,
    clips_per_class: int,
    val_fraction: float,
    test_fraction: float,
    ambiguous_fraction: float,
    uninformative_fraction: float,
) -> list[LabelPlan]:
    """Per class: exactly round(fraction * clips_per_class) val / test clips, ambiguous-audio
    clips (tone of a uniformly random class) and clips without visual class information."""
    n_val, n_test = round(val_fraction * clips_per_class), round(test_fraction * clips_per_class)
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and n_val + n_test < clips_per_class):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must leave train clips "
            f"out of clips_per_class={clips_per_class} (and test_fraction > 0)"
        )
    plans = []
    for label in range(num_classes):
        ambiguous = pick_flags(rng, clips_per_class, ambiguous_fraction, "audio_ambiguous_fraction")
        blank = pick_flags(rng, clips_per_class, uninformative_fraction, "visual_uninformative_fraction")
        for j in range(clips_per_class):
            split = "test" if j < n_test else "val" if j < n_test + n_val else "train"
            tone = int(rng.integers(num_classes)) if j in ambiguous else label
            plans.append(LabelPlan(label, split, tone, j not in ambiguous, j not in blank))
    return plans


def youtube_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct 11-character YouTube-like ids (never starting with '-': keeps CLIs happy)."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        chars = rng.choice(_YT_ALPHABET, 11)
        vid = "".join(chars.tolist())
        if vid[0] != "-" and vid not in seen:
            seen.add(vid)
            out.append(vid)
    return out


def prepare_root(root: Path, truth_file: str, media: Iterable[str]) -> None:
    """Replace a previous mini dataset under ``root`` (recognised by its truth file); refuse
    to touch a folder holding any of ``media`` without one (it may be real data)."""
    root = Path(root)
    existing = [root / m for m in media if (root / m).exists()]
    if existing:
        if not (root / truth_file).is_file():
            raise FileExistsError(f"{root}: holds {existing[0].name} but no {truth_file}; not overwriting it")
        for path in existing:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        (root / truth_file).unlink()
    root.mkdir(parents=True, exist_ok=True)


def run_jobs(fn: Callable, jobs: list, workers: int, desc: str, show_progress: bool, chunksize: int = 16) -> None:
    """Run ``fn`` over ``jobs``, in ``workers`` spawned processes when > 1 (no fork: the caller
    may hold threads). Every mini generator writes its clips through this."""
    with tqdm(total=len(jobs), desc=desc, unit="clip", disable=not show_progress) as bar:
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                for _ in pool.map(fn, jobs, chunksize=chunksize):
                    bar.update()
        else:
            for job in jobs:
                fn(job)
                bar.update()


def write_clip(job: tuple[Path, SynthRecipe, ClipSpec]) -> None:
    """Synthesise one clip and write it as mp4 (runs in a worker process)."""
    root, recipe, spec = job
    rng = np.random.default_rng([recipe.seed, spec.index])
    wave = synth_audio(rng, recipe, spec)  # [duration * rate] float32
    frames = synth_frames(rng, recipe, spec)  # [T, S, S, 3] uint8
    path = root / spec.path
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, wave if spec.has_audio else None, recipe)


def synth_audio(rng: np.random.Generator, recipe: SynthRecipe, spec: ClipSpec) -> np.ndarray:
    """White noise + the tone of ``tone_class`` inside the span (+ the distractor's outside);
    SNR relative to the event tone's power; float32 [n], peak 0.9."""
    sr = recipe.sample_rate
    n = round(recipe.duration_s * sr)
    a, b = round(spec.start_s * sr), min(n, round(spec.end_s * sr))
    event = tone(rng, recipe, spec.tone_class, b - a)
    wave = np.zeros(n)
    wave[a:b] = event
    if spec.distractor >= 0:  # each clip has its own generator: a conditional draw is safe
        outside = tone(rng, recipe, spec.distractor, n)
        wave[:a], wave[b:] = outside[:a], outside[b:]
    noise_std = np.sqrt(np.mean(event**2) / 10 ** (recipe.audio_snr_db / 10))
    wave += rng.normal(0.0, noise_std, n)
    return (PEAK * wave / np.abs(wave).max()).astype(np.float32)


def tone(rng: np.random.Generator, recipe, cls: int, n: int) -> np.ndarray:
    """Harmonic tone at class ``cls``'s pitch (+/- jitter) under an on/off envelope; float [n].

    ``recipe``: any recipe with ``sample_rate``, ``pitches_hz``, ``pitch_jitter``,
    ``harmonic_amplitudes``, ``envelope_block_s`` and ``envelope_on_prob`` (the mini CREMA-D's too).
    """
    t = np.arange(n) / recipe.sample_rate
    f0 = recipe.pitches_hz[cls] * (1 + rng.uniform(-recipe.pitch_jitter, recipe.pitch_jitter))
    phases = rng.uniform(0, 2 * np.pi, len(recipe.harmonic_amplitudes))
    tone = sum(
        amp * np.sin(2 * np.pi * (k + 1) * f0 * t + p)
        for k, (amp, p) in enumerate(zip(recipe.harmonic_amplitudes, phases, strict=True))
    )
    return tone * envelope(rng, recipe, n)


def envelope(rng: np.random.Generator, recipe, n: int) -> np.ndarray:
    """Random on/off blocks (at least one on), edges ramped over 5 ms; float [n] in [0, 1]."""
    block = max(1, round(recipe.envelope_block_s * recipe.sample_rate))
    on = rng.random(-(-n // block)) < recipe.envelope_on_prob
    if not on.any():
        on[rng.integers(on.size)] = True
    env = np.repeat(on.astype(float), block)[:n]
    k = max(1, recipe.sample_rate // 200)  # 5-ms moving average via cumsum, O(n)
    padded = np.concatenate([np.full(k // 2, env[0]), env, np.full(k - k // 2, env[-1])])
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    return (csum[k:] - csum[:-k])[:n] / k


def synth_frames(rng: np.random.Generator, recipe: SynthRecipe, spec: ClipSpec) -> np.ndarray:
    """Pixel noise + a per-clip colour cast + a static grating: the label's inside the span (if
    visually informative), the distractor's outside; uint8 [T, S, S, 3], T = duration * fps."""
    s = recipe.frame_size
    count = max(1, round(recipe.duration_s * recipe.video_fps))
    x = rng.standard_normal((count, s, s, 3), dtype=np.float32)
    x += rng.normal(0.0, recipe.colour_cast_std, 3).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    t = np.arange(count) / recipe.video_fps  # frame times [T]
    inside = (t >= spec.start_s - 1e-9) & (t < spec.end_s - 1e-9)
    amp = recipe.visual_grating_amplitude
    if spec.visual_informative:
        x[inside] += amp * grating(recipe, spec.label, phase)[None, :, :, None]
    if spec.distractor >= 0:
        x[~inside] += amp * grating(recipe, spec.distractor, phase)[None, :, :, None]
    return np.clip(128 + recipe.pixel_scale * x, 0, 255).astype(np.uint8)


def grating(recipe: SynthRecipe, cls: int, phase: float) -> np.ndarray:
    """Unit sinusoid [S, S] at angle pi*cls/num_classes with grating_cycles[cls % len] cycles."""
    s = recipe.frame_size
    angle = np.pi * cls / recipe.num_classes
    cycles = recipe.grating_cycles[cls % len(recipe.grating_cycles)]
    y, x = np.mgrid[0:s, 0:s] / s
    return np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) + phase).astype(np.float32)


def write_mp4(path: Path, frames: np.ndarray, wave: np.ndarray | None, recipe: SynthRecipe) -> None:
    """Mux video [T, S, S, 3] and (unless ``wave`` is None) a mono AAC track into an mp4.

    The video is all-intra (every frame a key frame), single-threaded, without wall-clock
    metadata: the bytes depend only on the inputs. With inter prediction, libx264's output for
    32x32 frames differed between identical runs for 2-3 % of the clips.
    """
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream(recipe.video_codec, rate=recipe.video_fps)
        video.width = video.height = recipe.frame_size
        video.pix_fmt = "yuv420p"
        video.thread_count = 1
        if recipe.video_codec == "libx264":
            video.options = {"preset": "veryfast", "crf": str(recipe.video_crf), "threads": "1",
                             "x264-params": "keyint=1:rc-lookahead=0:mbtree=0"}
        else:  # mpeg4 (MPEG-4 part 2): fixed quantiser on the crf scale's rough equivalent
            video.gop_size = 1
            video.codec_context.qscale = max(1, recipe.video_crf // 6)
        audio = None
        if wave is not None:
            # layout='mono' or the decoded sample count doubles; the fast coder is ~2.5x quicker
            audio = container.add_stream("aac", rate=recipe.sample_rate, layout="mono", options={"aac_coder": "fast"})
            audio.bit_rate = recipe.audio_bit_rate
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        if audio is not None:
            samples = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
            samples.sample_rate = recipe.sample_rate
            container.mux(audio.encode(samples))
            container.mux(audio.encode(None))


def write_truth(path: Path, specs: list[ClipSpec]) -> None:
    """One row per written clip (every ClipSpec field but the index), sorted by path."""
    names = [f.name for f in fields(ClipSpec) if f.name != "index"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        for spec in sorted(specs, key=lambda s: s.path):
            row = asdict(spec)
            writer.writerow([int(row[k]) if isinstance(row[k], bool) else row[k] for k in names])
