"""Mini UCF-101: a small synthetic dataset in the native UCF-101 layout.

As on the real data (TPAMI OPM/OGM Tab. 2: RGB-only 77.2 vs OF-only 59.9), RGB is the strong
modality and optical flow the weak one. Each clip is a smooth random grey texture under a class
colour tint (the RGB cue: strong, visible in any single frame) that moves with a class motion
pattern (the flow cue: weak). The patterns are the linear flow fields A·(x − c) with
A = rate·R(φ_class): expansion, spiralling, rotation, contraction, … around a random centre c.
Their mean flow is a random translation, so the class lies in the field's divergence and curl,
which a CNN learns more slowly than a colour; per-frame pixel noise disturbs the flow estimate.
The motion restarts from the same texture every second (a one-second loop), so the frames kept
at 1 fps show no class-dependent zoom; the motion shows between a kept frame and the next.
For UCF-101-Three, the RGB difference gets its own weak cue: a class colour flicker whose
chroma drifts a little further every frame of a second (zero at the kept frames; chroma only,
so the grey frames and the flow do not see it). Files:
``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` (MJPG, no audio), ``ucfTrainTestlist/`` with
``classInd.txt`` and the three official train/test lists (test groups 1–7, 8–14, 15–21), and
``mini_truth.csv`` (per-clip ground truth; not part of the native layout).
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mmbalance.datasets.mini import register_generator
from mmbalance.datasets.mini._av_synth import run_jobs
from mmbalance.datasets.ucf101 import CLASS_INDEX, LIST_DIR, VIDEO_DIR, VIDEO_EXT, official_split_groups

__all__ = ["DEFAULT_CLASSES", "TRUTH_FILE", "generate_ucf101"]

TRUTH_FILE = "mini_truth.csv"
# Real UCF-101 class names (alphabetical, as in the real classInd.txt).
DEFAULT_CLASSES = ("ApplyEyeMakeup", "Basketball", "Biking", "Diving", "GolfSwing", "HandstandPushups",
                   "HorseRiding", "JumpRope")
# The real data spells this class differently in its file names than in its folder name.
_FILE_CLASS = {"HandstandPushups": "HandStandPushups"}
_LINE_END = "\r\n"  # the distributed list files use CRLF


def _chroma_axes() -> np.ndarray:
    """Two orthonormal RGB directions [2, 3] orthogonal to the BT.601 luma weights: colour
    offsets along them leave the grey frames (cv2 RGB2GRAY, JPEG's Y), hence the flow, untouched."""
    luma = np.array([0.299, 0.587, 0.114])
    first = np.array([1.0, -1.0, 0.0]) - (np.array([1.0, -1.0, 0.0]) @ luma) / (luma @ luma) * luma
    first /= np.linalg.norm(first)
    second = np.cross(luma, first)
    return np.stack([first, second / np.linalg.norm(second)])


_CHROMA = _chroma_axes()


@dataclass(frozen=True)
class _Recipe:
    """Every per-run knob a worker needs (picklable)."""

    seed: int
    num_classes: int
    duration_s: float
    video_fps: int
    frame_size: int
    texture_sigma: float
    texture_contrast: float
    motion_rate_min: float
    motion_rate_max: float
    pattern_jitter_deg: float
    centre_jitter: float
    noise_std: float
    colour_strength: float
    colour_cast_std: float
    flicker_strength: float
    flicker_jitter: float
    pixel_scale: float
    jpeg_quality: int


@dataclass(frozen=True)
class _ClipSpec:
    """One clip to write: its index seeds its own generator."""

    index: int
    rel_path: str  # Class/v_Class_gXX_cYY.avi
    label: int
    group: int
    colour_class: int  # class whose tint the frames carry
    rgb_informative: bool  # False: colour_class drawn independently of the label
    flow_informative: bool  # False: the texture does not move


@register_generator("ucf101")
def generate_ucf101(
    root: Path,
    *,
    clips_per_class: int,
    seed: int,
    classes: tuple[str, ...] | list[str] = DEFAULT_CLASSES,
    groups: int = 25,
    duration_s: float = 3.0,
    video_fps: int = 8,
    frame_size: int = 32,
    texture_sigma: float = 2.0,
    texture_contrast: float = 1.0,
    motion_rate_min: float = 0.04,
    motion_rate_max: float = 0.1,
    pattern_jitter_deg: float = 20.0,
    centre_jitter: float = 8.0,
    noise_std: float = 1.0,
    colour_strength: float = 2.0,
    colour_cast_std: float = 0.2,
    flicker_strength: float = 0.15,
    flicker_jitter: float = 0.05,
    pixel_scale: float = 30.0,
    rgb_ambiguous_fraction: float = 0.15,
    flow_uninformative_fraction: float = 0.2,
    jpeg_quality: int = 90,
    workers: int = 1,
    show_progress: bool = True,
) -> dict:
    """Write a mini UCF-101 under ``root``; return a summary dict.

    Clips: ``clips_per_class`` per class spread over ``groups`` groups (c01, c02, … within a
    group; the first groups get one more when it does not divide). The official split 1 tests
    groups 1–7, so ``groups`` sets its test share (25 as on the real data: 28 %; at least 8;
    below 21 the test lists of splits 2 / 3, groups 8–14 / 15–21, are partial or empty). Each clip has
    duration_s * video_fps frames of frame_size² pixels: a periodic Gaussian-smoothed noise
    texture (std ``texture_contrast``, smoothing ``texture_sigma`` px) moved every frame by the
    flow A·(x − c), A = rate·R(φ) (rate ~ U(motion_rate_min, motion_rate_max) per frame, φ =
    360°·class/classes ± U(pattern_jitter_deg): 0° expands, 90° rotates, 180° contracts),
    c = frame centre ± U(centre_jitter) px, restarting from the texture every second; a class
    tint of length ``colour_strength`` in the chroma plane at angle 360°·class/classes; a
    per-clip colour cast N(0, colour_cast_std) per channel; a colour flicker (the RGB-difference
    cue): the k-th frame of each second is shifted by k times a chroma vector of length
    ``flicker_strength`` at angle 360°·class/classes plus N(0, flicker_jitter) per chroma axis
    (the frames kept at 1 fps, k = 0, carry none of it); fresh pixel noise N(0, noise_std)
    every frame; pixels = clip(128 + pixel_scale * x). Exactly
    round(rgb_ambiguous_fraction * clips_per_class) clips per class get the tint of a uniformly
    random class, and round(flow_uninformative_fraction * clips_per_class) a still texture.
    Written with OpenCV's own MJPG AVI writer (quality ``jpeg_quality``): byte-identical for a
    seed, whatever ``workers`` (>1 writes with that many spawned processes). A previous mini
    dataset in ``root`` (recognised by its truth file) is replaced; real data is never deleted.
    """
    root = Path(root)
    classes = tuple(classes)
    recipe = _Recipe(seed, len(classes), duration_s, video_fps, frame_size, texture_sigma, texture_contrast,
                     motion_rate_min, motion_rate_max, pattern_jitter_deg, centre_jitter, noise_std, colour_strength,
                     colour_cast_std, flicker_strength, flicker_jitter, pixel_scale, jpeg_quality)
    _check(recipe, classes, clips_per_class, groups)
    specs = _plan_clips(classes, clips_per_class, groups, seed, rgb_ambiguous_fraction, flow_uninformative_fraction)
    _prepare_root(root, classes)
    run_jobs(_write_clip, [(root, recipe, spec) for spec in specs], workers, "mini ucf101", show_progress, chunksize=32)
    _write_lists(root / LIST_DIR, classes, specs)
    _write_truth(root / TRUTH_FILE, specs)
    return _summary(root, recipe, classes, specs, clips_per_class)


def _check(recipe: _Recipe, classes: tuple[str, ...], clips_per_class: int, groups: int) -> None:
    """Reject settings that cannot produce a valid dataset (ValueError)."""
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(c.isalnum() for c in classes):
        raise ValueError(f"classes must be ≥ 2 distinct alphanumeric names, got {list(classes)}")
    # split 1 tests groups 1–7 and needs a train group; splits 2 / 3 test groups 8–14 / 15–21, so
    # below 14 / 21 groups their test lists are partial or empty. The real data has 25 groups (test
    # share 28 %); fewer groups raise split 1's test share (15 groups: 7/15 = 47 %).
    if not 8 <= groups <= 99:
        raise ValueError(f"groups must be in [8, 99], got {groups}")
    if not groups <= clips_per_class <= 99 * groups:
        raise ValueError(f"clips_per_class must be in [{groups}, {99 * groups}] for {groups} groups, got {clips_per_class}")
    if round(recipe.duration_s * recipe.video_fps) < 2:
        raise ValueError("a clip needs at least 2 frames (duration_s * video_fps)")
    if not 0 <= recipe.motion_rate_min <= recipe.motion_rate_max < 1:
        raise ValueError(f"need 0 <= motion_rate_min <= motion_rate_max < 1, got {recipe.motion_rate_min}, "
                         f"{recipe.motion_rate_max}")
    if not 1 <= recipe.jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {recipe.jpeg_quality}")


def _plan_clips(classes: tuple[str, ...], clips_per_class: int, groups: int, seed: int,
                ambiguous_fraction: float, uninformative_fraction: float) -> list[_ClipSpec]:
    """Names, groups and per-clip truth; returns specs sorted by file path."""
    for name, frac in [("rgb_ambiguous_fraction", ambiguous_fraction), ("flow_uninformative_fraction", uninformative_fraction)]:
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {frac}")
    rng = np.random.default_rng(seed)
    per_group = [clips_per_class // groups + (g < clips_per_class % groups) for g in range(groups)]
    n_ambiguous, n_still = round(ambiguous_fraction * clips_per_class), round(uninformative_fraction * clips_per_class)
    rows = []
    for label, name in enumerate(classes):
        ambiguous = set(rng.choice(clips_per_class, n_ambiguous, replace=False).tolist())
        still = set(rng.choice(clips_per_class, n_still, replace=False).tolist())
        j = 0
        for g, count in enumerate(per_group, start=1):
            for c in range(1, count + 1):
                rel = f"{name}/v_{_FILE_CLASS.get(name, name)}_g{g:02d}_c{c:02d}{VIDEO_EXT}"
                # ambiguous RGB: tint of a uniformly random class, independent of the label
                tint = int(rng.integers(len(classes))) if j in ambiguous else label
                rows.append((rel, label, g, tint, j not in ambiguous, j not in still))
                j += 1
    rows.sort()
    return [_ClipSpec(i, *row) for i, row in enumerate(rows)]


def _prepare_root(root: Path, classes: tuple[str, ...]) -> None:
    """Create the layout folders; replace a previous mini dataset, refuse to touch real data."""
    existing = [root / d for d in (VIDEO_DIR, LIST_DIR) if (root / d).exists()]
    if existing and any(any(d.iterdir()) for d in existing):
        if not (root / TRUTH_FILE).is_file():
            raise FileExistsError(f"{root}: holds UCF-101 files but no {TRUTH_FILE}; not overwriting it")
        for d in existing:
            shutil.rmtree(d)
    for name in classes:
        (root / VIDEO_DIR / name).mkdir(parents=True, exist_ok=True)
    (root / LIST_DIR).mkdir(parents=True, exist_ok=True)


def _write_clip(job: tuple[Path, _Recipe, _ClipSpec]) -> None:
    """Synthesise and write one clip's .avi (runs in a worker process)."""
    root, recipe, spec = job
    rng = np.random.default_rng([recipe.seed, spec.index])
    frames = _synth_frames(rng, recipe, spec)  # [T, S, S, 3] RGB uint8
    _write_avi(root / VIDEO_DIR / spec.rel_path, frames, recipe)


def _synth_frames(rng: np.random.Generator, recipe: _Recipe, spec: _ClipSpec) -> np.ndarray:
    """Moving texture + class tint + cast + class flicker + noise; uint8 [T, S, S, 3] RGB."""
    s, count = recipe.frame_size, round(recipe.duration_s * recipe.video_fps)
    # pattern, rate and centre are drawn for every clip: the same random stream for all clips
    label_angle = 2 * np.pi * spec.label / recipe.num_classes
    phi = label_angle + np.deg2rad(rng.uniform(-1, 1) * recipe.pattern_jitter_deg)
    rate = rng.uniform(recipe.motion_rate_min, recipe.motion_rate_max) if spec.flow_informative else 0.0
    centre = (s - 1) / 2 + rng.uniform(-recipe.centre_jitter, recipe.centre_jitter, 2)  # (x, y)
    texture = _texture(rng, s, recipe.texture_sigma)  # [S, S], unit std
    step = np.eye(2) + rate * np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])  # x' - c = step (x - c)
    grey = recipe.texture_contrast * np.stack(
        [_warp(texture, np.linalg.matrix_power(step, k % recipe.video_fps), centre) for k in range(count)])  # [T, S, S]
    tint_angle = 2 * np.pi * spec.colour_class / recipe.num_classes
    tint = recipe.colour_strength * (np.cos(tint_angle) * _CHROMA[0] + np.sin(tint_angle) * _CHROMA[1])  # [3]
    cast = rng.normal(0.0, recipe.colour_cast_std, 3)
    flicker = (recipe.flicker_strength * np.array([np.cos(label_angle), np.sin(label_angle)])
               + rng.normal(0.0, recipe.flicker_jitter, 2)) @ _CHROMA  # [3], added once more every frame of a second
    ramp = (np.arange(count) % recipe.video_fps)[:, None, None, None]  # [T, 1, 1, 1]: 0 at each kept frame
    x = grey[..., None] + (tint + cast) + ramp * flicker + rng.normal(0.0, recipe.noise_std, (count, s, s, 3))
    return np.clip(np.rint(128 + recipe.pixel_scale * x), 0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Periodic Gaussian-smoothed (``sigma`` px) white noise of unit std, float32 [S, S]."""
    f = np.fft.fftfreq(size)  # cycles per pixel
    fy, fx = np.meshgrid(f, f, indexing="ij")
    smooth = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))).real
    return (smooth / max(smooth.std(), 1e-12)).astype(np.float32)


def _warp(texture: np.ndarray, forward: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The texture moved by x → c + forward (x − c): out(x) = texture(c + forward⁻¹ (x − c)),
    bilinear, wrapping around the (periodic) texture's edges."""
    inverse = np.linalg.inv(forward)
    affine = np.hstack([inverse, (centre - inverse @ centre)[:, None]]).astype(np.float32)  # output → source
    size = texture.shape[::-1]
    return cv2.warpAffine(texture, affine, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_WRAP)


def _write_avi(path: Path, frames: np.ndarray, recipe: _Recipe) -> None:
    """MJPG .avi with OpenCV's built-in writer (no FFmpeg metadata: the bytes depend on the frames only)."""
    s = recipe.frame_size
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), float(recipe.video_fps), (s, s))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot open an MJPG writer")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, recipe.jpeg_quality)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _write_lists(folder: Path, classes: tuple[str, ...], specs: list[_ClipSpec]) -> None:
    """classInd.txt and the official lists of splits 1–3 (test = groups 1–7 / 8–14 / 15–21)."""
    _write_text(folder / CLASS_INDEX, [f"{i} {name}" for i, name in enumerate(classes, start=1)])
    for split in (1, 2, 3):
        test_groups = set(official_split_groups(split))
        _write_text(folder / f"trainlist{split:02d}.txt",
                    [f"{s.rel_path} {s.label + 1}" for s in specs if s.group not in test_groups])
        _write_text(folder / f"testlist{split:02d}.txt", [s.rel_path for s in specs if s.group in test_groups])


def _write_text(path: Path, lines: list[str]) -> None:
    with path.open("w", newline="") as fh:
        fh.write("".join(line + _LINE_END for line in lines))


def _write_truth(path: Path, specs: list[_ClipSpec]) -> None:
    """clip_id,label,rgb_informative,flow_informative (0/1), sorted by clip_id."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["clip_id", "label", "rgb_informative", "flow_informative"])
        for s in sorted(specs, key=lambda s: Path(s.rel_path).stem):
            writer.writerow([Path(s.rel_path).stem, s.label, int(s.rgb_informative), int(s.flow_informative)])


def _summary(root: Path, recipe: _Recipe, classes: tuple[str, ...], specs: list[_ClipSpec], clips_per_class: int) -> dict:
    """Counts and settings of the written dataset (JSON-serialisable)."""
    return {
        "dataset": "ucf101",
        "root": str(root),
        "num_clips": len(specs),
        "clips_per_class": clips_per_class,
        "classes": list(classes),
        "rgb_ambiguous": sum(not s.rgb_informative for s in specs),
        "flow_uninformative": sum(not s.flow_informative for s in specs),
        **asdict(recipe),
    }
