"""Mini NVGesture: a small synthetic dataset in the native ``nvGesture_v1`` layout.

As on the real data (IPRM Tab. 1: RGB 78.2, optical flow 78.6, depth 81.5), depth is the strong
modality; here RGB and optical flow are clearly weaker, so the imbalance is visible. Each
gesture video shows, during the gesture's frames only, a textured "hand" (a disc) moving in a
class direction (360°·class/classes, the flow cue) with a class colour tint on it (the RGB cue);
the depth video shows the same hand closer than the background, at a class distance and with a
class grating (the depth cue, visible in any single frame and the quickest to learn). Before and after the gesture only the background is
seen, so an adapter that reads the wrong frames sees no class. The tint lies in the chroma plane
(no luma), so the grey frames, hence the flow, do not see it.

Cues per clip, drawn independently: exactly round(fraction · clips) clips per class have a
depth grating of a uniformly random class (``depth_ambiguous_fraction``), no tint
(``rgb_uninformative_fraction``) or a still hand (``flow_uninformative_fraction``).

Files: ``Video_data/class_XX/subjectY_rZ/{sk_color,sk_depth,duo_left}.avi`` (MJPG; depth and
duo_left grey), the two official list files with ``path: depth: color: duo_left: label:`` lines
(the first ``num_classes`` classes, labels 1-based), and ``mini_truth.csv`` (per-clip ground
truth; not part of the native layout). Gestures of ``test_subjects`` subjects (drawn with the
seed) form the test list, as the real split holds out subjects.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mmbalance.datasets.mini import register_generator
from mmbalance.datasets.mini._av_synth import pick_flags, prepare_root, run_jobs
from mmbalance.datasets.nvgesture import CLASSES, LIST_FILES, SENSOR_FILES, VIDEO_DIR, VIDEO_EXT, clip_id_of

__all__ = ["TRUTH_FILE", "generate_nvgesture"]

TRUTH_FILE = "mini_truth.csv"
_LUMA = np.array([0.299, 0.587, 0.114])


def _chroma_axes() -> np.ndarray:
    """Two orthonormal RGB directions [2, 3] orthogonal to the BT.601 luma weights."""
    first = np.array([1.0, -1.0, 0.0]) - (np.array([1.0, -1.0, 0.0]) @ _LUMA) / (_LUMA @ _LUMA) * _LUMA
    first /= np.linalg.norm(first)
    second = np.cross(_LUMA, first)
    return np.stack([first, second / np.linalg.norm(second)])


_CHROMA = _chroma_axes()


@dataclass(frozen=True)
class _Recipe:
    """Every per-run knob a worker needs (picklable)."""

    seed: int
    num_classes: int
    video_frames: int
    video_fps: int
    frame_size: int
    hand_radius: float
    speed_min: float
    speed_max: float
    direction_jitter_deg: float
    centre_jitter: float
    texture_sigma: float
    background_contrast: float
    tint_strength: float
    colour_cast_std: float
    noise_std: float
    depth_far: float
    depth_near: float
    depth_spread: float
    depth_grating_amplitude: float
    depth_noise_std: float
    pixel_scale: float
    jpeg_quality: int


@dataclass(frozen=True)
class _ClipSpec:
    """One gesture to write; ``index`` seeds its own generator."""

    index: int
    folder: str  # Video_data/class_XX/subjectY_rZ
    label: int  # 0-based
    split: str
    start: int  # gesture frames start … end-1
    end: int
    depth_class: int  # class whose grating the depth shows (= label unless ambiguous)
    rgb_informative: bool
    flow_informative: bool


@register_generator("nvgesture")
def generate_nvgesture(
    root: Path,
    *,
    seed: int,
    num_classes: int = 8,
    subjects: int = 20,
    test_subjects: int = 7,
    repetitions: int = 9,
    video_frames: int = 16,
    gesture_frames: int = 8,
    video_fps: int = 10,
    frame_size: int = 32,
    hand_radius: float = 7.0,
    speed_min: float = 0.3,
    speed_max: float = 0.6,
    direction_jitter_deg: float = 15.0,
    centre_jitter: float = 3.0,
    texture_sigma: float = 1.5,
    background_contrast: float = 0.3,
    tint_strength: float = 1.5,
    colour_cast_std: float = 0.2,
    noise_std: float = 0.3,
    depth_far: float = -1.0,
    depth_near: float = 0.5,
    depth_spread: float = 1.0,
    depth_grating_amplitude: float = 2.0,
    depth_noise_std: float = 0.2,
    pixel_scale: float = 40.0,
    depth_ambiguous_fraction: float = 0.22,
    rgb_uninformative_fraction: float = 0.38,
    flow_uninformative_fraction: float = 0.45,
    jpeg_quality: int = 90,
    workers: int = 1,
    show_progress: bool = True,
) -> dict:
    """Write a mini NVGesture under ``root``; return a summary dict.

    Gestures: ``repetitions`` per subject (``subject1`` … ``subject<subjects>``, ``_r0`` …) and
    class (the first ``num_classes`` of the 25); ``test_subjects`` subjects drawn with the seed
    form the test list. Each video has ``video_frames`` frames of ``frame_size``² pixels at
    ``video_fps``; the gesture spans ``gesture_frames`` of them from a random start (≥ 1 frame
    before and after). Colour: a static smooth background texture (std ``background_contrast``);
    during the gesture a disc of radius ``hand_radius`` px carrying its own unit-std texture
    (smoothing ``texture_sigma`` px) moves ``speed`` ~ U(speed_min, speed_max) px per frame along
    360°·class/classes ± U(direction_jitter_deg) from near the centre (± U(centre_jitter) px),
    tinted by a chroma vector of length ``tint_strength`` at the same angle; a per-clip colour
    cast N(0, colour_cast_std); fresh pixel noise N(0, noise_std). Depth: background at ``depth_far``, the hand
    at a class distance ``depth_near`` + depth_spread·(class/(classes − 1) − ½) plus a grating of amplitude ``depth_grating_amplitude`` (orientation
    45°·(class mod 4), 3 cycles per frame for classes 0-3, 5 for 4-7, …), noise N(0, depth_noise_std).
    Pixels = clip(128 + pixel_scale · x). duo_left is the colour video's grey. Written with
    OpenCV's own MJPG writer (quality ``jpeg_quality``): byte-identical for a seed, whatever
    ``workers``. A previous mini dataset in ``root`` (recognised by its truth file) is
    replaced; real data is never deleted.
    """
    root = Path(root)
    recipe = _Recipe(seed, num_classes, video_frames, video_fps, frame_size, hand_radius, speed_min, speed_max,
                     direction_jitter_deg, centre_jitter, texture_sigma, background_contrast, tint_strength,
                     colour_cast_std, noise_std, depth_far, depth_near, depth_spread, depth_grating_amplitude, depth_noise_std, pixel_scale,
                     jpeg_quality)
    _check(recipe, subjects, test_subjects, repetitions, gesture_frames)
    fractions = (depth_ambiguous_fraction, rgb_uninformative_fraction, flow_uninformative_fraction)
    specs = _plan(recipe, subjects, test_subjects, repetitions, gesture_frames, fractions)
    prepare_root(root, TRUTH_FILE, [VIDEO_DIR, *LIST_FILES.values()])
    run_jobs(_write_clip, [(root, recipe, s) for s in specs], workers, "mini nvgesture", show_progress, chunksize=32)
    _write_lists(root, specs)
    _write_truth(root / TRUTH_FILE, specs)
    return _summary(root, recipe, specs)


def _check(recipe: _Recipe, subjects: int, test_subjects: int, repetitions: int, gesture_frames: int) -> None:
    """Reject settings that cannot produce a valid dataset (ValueError naming the setting)."""
    if not 2 <= recipe.num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {recipe.num_classes}")
    if not 1 <= test_subjects < subjects:
        raise ValueError(f"test_subjects must be in [1, subjects), got {test_subjects} of {subjects}")
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    if not 2 <= gesture_frames <= recipe.video_frames - 2:
        raise ValueError(f"gesture_frames must be in [2, video_frames - 2], got {gesture_frames} of {recipe.video_frames}")
    if not 0 <= recipe.speed_min <= recipe.speed_max:
        raise ValueError(f"need 0 <= speed_min <= speed_max, got {recipe.speed_min}, {recipe.speed_max}")
    if recipe.frame_size < 16 or not 1 <= recipe.jpeg_quality <= 100:
        raise ValueError(f"frame_size must be >= 16 and jpeg_quality in [1, 100], got {recipe.frame_size}, {recipe.jpeg_quality}")


def _plan(recipe: _Recipe, subjects: int, test_subjects: int, repetitions: int, gesture_frames: int,
          fractions: tuple[float, float, float]) -> list[_ClipSpec]:
    """Folders, splits, spans and per-clip cues; returns specs sorted by folder."""
    rng = np.random.default_rng(recipe.seed)
    test = {int(s) for s in rng.choice(np.arange(1, subjects + 1), test_subjects, replace=False)}
    n = subjects * repetitions
    names = ("depth_ambiguous_fraction", "rgb_uninformative_fraction", "flow_uninformative_fraction")
    rows = []
    for label in range(recipe.num_classes):
        ambiguous, no_tint, still = (pick_flags(rng, n, f, name) for f, name in zip(fractions, names, strict=True))
        for j in range(n):
            subject, rep = j // repetitions + 1, j % repetitions
            start = int(rng.integers(1, recipe.video_frames - gesture_frames))  # ≥ 1 frame before and after
            depth_class = int(rng.integers(recipe.num_classes)) if j in ambiguous else label
            folder = f"{VIDEO_DIR}/class_{label + 1:02d}/subject{subject}_r{rep}"
            rows.append((folder, label, "test" if subject in test else "train", start, start + gesture_frames,
                         depth_class, j not in no_tint, j not in still))
    rows.sort()
    return [_ClipSpec(i, *row) for i, row in enumerate(rows)]


def _write_clip(job: tuple[Path, _Recipe, _ClipSpec]) -> None:
    """Synthesise and write one gesture's three videos (runs in a worker process)."""
    root, recipe, spec = job
    rng = np.random.default_rng([recipe.seed, spec.index])
    colour, depth = _synth(rng, recipe, spec)  # [T, S, S, 3] RGB, [T, S, S] grey
    folder = root / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in colour])
    for sensor, frames in (("color", colour), ("depth", depth), ("duo_left", grey)):
        _write_avi(folder / f"{SENSOR_FILES[sensor]}{VIDEO_EXT}", frames, recipe)


def _synth(rng: np.random.Generator, recipe: _Recipe, spec: _ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """Colour uint8 [T, S, S, 3] and depth uint8 [T, S, S] frames of one gesture."""
    s, count, span = recipe.frame_size, recipe.video_frames, spec.end - spec.start
    angle = 2 * np.pi * spec.label / recipe.num_classes
    heading = angle + np.deg2rad(rng.uniform(-1, 1) * recipe.direction_jitter_deg)
    speed = rng.uniform(recipe.speed_min, recipe.speed_max) if spec.flow_informative else 0.0
    step = speed * np.array([np.cos(heading), np.sin(heading)])  # (dx, dy) px per frame
    first = (s - 1) / 2 - (span - 1) / 2 * step + rng.uniform(-recipe.centre_jitter, recipe.centre_jitter, 2)
    background = recipe.background_contrast * _texture(rng, s, 2 * recipe.texture_sigma)
    hand = _texture(rng, s, recipe.texture_sigma)
    tint = recipe.tint_strength * (np.cos(angle) * _CHROMA[0] + np.sin(angle) * _CHROMA[1]) if spec.rgb_informative else 0.0
    cast = rng.normal(0.0, recipe.colour_cast_std, 3)
    grating = _grating(s, spec.depth_class, rng.uniform(0, 2 * np.pi))
    grey = np.repeat(background[None], count, axis=0)  # [T, S, S]
    masks = np.zeros((count, s, s), dtype=np.float32)
    for k in range(spec.start, spec.end):
        shift = (k - spec.start) * step
        masks[k] = _disc(s, first + shift, recipe.hand_radius)
        grey[k] = (1 - masks[k]) * background + masks[k] * _shift(hand, shift)
    colour = (grey[..., None] + masks[..., None] * tint + cast + rng.normal(0.0, recipe.noise_std, (count, s, s, 3)))
    near = recipe.depth_near + recipe.depth_spread * (spec.depth_class / (recipe.num_classes - 1) - 0.5)
    depth = ((1 - masks) * recipe.depth_far + masks * (near + recipe.depth_grating_amplitude * grating)
             + rng.normal(0.0, recipe.depth_noise_std, (count, s, s)))
    return _pixels(colour, recipe), _pixels(depth, recipe)


def _pixels(x: np.ndarray, recipe: _Recipe) -> np.ndarray:
    return np.clip(np.rint(128 + recipe.pixel_scale * x), 0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Periodic Gaussian-smoothed (``sigma`` px) white noise of unit std, float32 [S, S]."""
    f = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    smooth = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))).real
    return (smooth / max(smooth.std(), 1e-12)).astype(np.float32)


def _shift(texture: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The (periodic) texture moved by ``shift`` = (dx, dy) px, bilinear."""
    affine = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], dtype=np.float32)
    return cv2.warpAffine(texture, affine, texture.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def _disc(size: int, centre: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased disc mask [S, S] in [0, 1] around ``centre`` = (x, y)."""
    y, x = np.mgrid[0:size, 0:size]
    return np.clip(radius + 0.5 - np.hypot(x - centre[0], y - centre[1]), 0.0, 1.0).astype(np.float32)


def _grating(size: int, cls: int, phase: float) -> np.ndarray:
    """Unit sinusoid [S, S]: orientation 45°·(cls mod 4), 3 cycles per frame for classes 0-3,
    5, 7, … for the next fours (a 45° step is still clear on a hand 14 px wide)."""
    y, x = np.mgrid[0:size, 0:size] / size
    angle, cycles = np.pi * (cls % 4) / 4, 3.0 + 2.0 * (cls // 4)
    return np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) + phase).astype(np.float32)


def _write_avi(path: Path, frames: np.ndarray, recipe: _Recipe) -> None:
    """MJPG .avi with OpenCV's built-in writer (no FFmpeg metadata: the bytes depend on the
    frames only); grey frames [T, S, S] are written as 3 equal channels, as the real depth."""
    s = recipe.frame_size
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), float(recipe.video_fps), (s, s))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot open an MJPG writer")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, recipe.jpeg_quality)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _write_lists(root: Path, specs: list[_ClipSpec]) -> None:
    """The train and test list files, one ``path: depth: color: duo_left: label:`` line per gesture."""
    for split, name in LIST_FILES.items():
        lines = [f"path:./{s.folder} depth:{SENSOR_FILES['depth']}:{s.start}:{s.end} "
                 f"color:{SENSOR_FILES['color']}:{s.start}:{s.end} "
                 f"duo_left:{SENSOR_FILES['duo_left']}:{s.start}:{s.end} label:{s.label + 1}"
                 for s in specs if s.split == split]
        (root / name).write_text("".join(line + "\n" for line in lines))


def _write_truth(path: Path, specs: list[_ClipSpec]) -> None:
    """clip_id,label,split,start,end,depth_class,rgb_informative,flow_informative, sorted by clip_id."""
    names = ["clip_id", "label", "split", "start", "end", "depth_class", "rgb_informative", "flow_informative"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        for s in sorted(specs, key=lambda s: clip_id_of(s.folder)):
            writer.writerow([clip_id_of(s.folder), s.label, s.split, s.start, s.end, s.depth_class,
                             int(s.rgb_informative), int(s.flow_informative)])


def _summary(root: Path, recipe: _Recipe, specs: list[_ClipSpec]) -> dict:
    """Counts and settings of the written dataset (JSON-serialisable)."""
    return {
        "dataset": "nvgesture",
        "root": str(root),
        "num_clips": len(specs),
        "splits": {split: sum(s.split == split for s in specs) for split in LIST_FILES},
        "classes": list(CLASSES[: recipe.num_classes]),
        "depth_other_class": sum(s.depth_class != s.label for s in specs),
        "rgb_uninformative": sum(not s.rgb_informative for s in specs),
        "flow_uninformative": sum(not s.flow_informative for s in specs),
        **asdict(recipe),
    }
