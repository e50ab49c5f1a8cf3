"""AVE (Audio-Visual Event) adapter: ``<root>/AVE/<video_id>.mp4`` + the official split files.

Layout (as the dataset unpacks)::

    <root>/AVE/<video_id>.mp4      10-s YouTube clips, audio track inside
    <root>/Annotations.txt         Category&VideoID&Quality&StartTime&EndTime (header line)
    <root>/trainSet.txt            same fields, no header: the official 3,339 / 402 / 402 split
    <root>/valSet.txt
    <root>/testSet.txt

Labels are indices into the 28 *sorted* category names (the reference loaders number classes by
first appearance in testSet.txt; a permutation of labels changes no metric). Audio is the
annotated event span [StartTime, EndTime) cut, tiled and cropped to ``clip_seconds`` (257x1004
for 10 s); frames are the 1-fps frames inside the span, all stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from pathlib import Path

import numpy as np

from mmbalance.datasets.base import Clip, DatasetAdapter, DatasetLayoutError, Skip, register_dataset
from mmbalance.media import MediaError
from mmbalance.media.audio import audio_features
from mmbalance.media.video import read_frames

__all__ = [
    "ANNOTATIONS",
    "CLASSES",
    "SPLIT_FILES",
    "VIDEO_DIR",
    "Ave",
    "EventClip",
    "Annotation",
    "parse_line",
]

# Real category names (the facts' hyphenated spellings stand for these commas).
CLASSES = (
    "Accordion", "Acoustic guitar", "Baby cry, infant cry", "Banjo", "Bark", "Bus", "Cat",
    "Chainsaw", "Church bell", "Clock", "Female speech, woman speaking",
    "Fixed-wing aircraft, airplane", "Flute", "Frying (food)", "Goat", "Helicopter", "Horse",
    "Male speech, man speaking", "Mandolin", "Motorcycle", "Race car, auto racing",
    "Rodents, rats, mice", "Shofar", "Toilet flush", "Train horn", "Truck", "Ukulele",
    "Violin, fiddle",
)  # fmt: skip
VIDEO_DIR, VIDEO_EXT = "AVE", ".mp4"
ANNOTATIONS = "Annotations.txt"
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
HEADER = ("category", "videoid", "quality", "starttime", "endtime")
DUPLICATE_POLICIES = ("per_split", "global")


@dataclass(frozen=True)
class EventClip(Clip):
    """A Clip with its annotated event span in seconds, [start_s, end_s)."""

    start_s: float = 0.0
    end_s: float = 10.0


@dataclass(frozen=True)
class Annotation:
    """One parsed annotation line."""

    video_id: str
    label: int
    start_s: float
    end_s: float
    where: str  # "<file>:<line>", for skip reasons


def parse_line(line: str, where: str) -> Annotation:
    """Parse ``Category&VideoID&Quality&StartTime&EndTime`` (``where`` = "<file>:<line>" is kept
    for later messages); ValueError says what is wrong with the line."""
    fields = [f.strip() for f in line.split("&")]
    if len(fields) != 5:
        raise ValueError(f"expected 5 '&'-separated fields, got {len(fields)}: {line!r}")
    category, video_id, _quality, start, end = fields
    if category not in CLASSES:
        raise ValueError(f"unknown category {category!r} (not one of the 28 AVE classes)")
    if not video_id or "." in video_id or "/" in video_id:
        raise ValueError(f"malformed video id {video_id!r}")
    try:
        start_s, end_s = float(start), float(end)
    except ValueError:
        raise ValueError(f"start/end {start!r}/{end!r} are not numbers") from None
    if not 0.0 <= start_s < end_s:
        raise ValueError(f"event span [{start}, {end}) is empty or negative")
    return Annotation(video_id, CLASSES.index(category), start_s, end_s, where)


@register_dataset("ave")
class Ave(DatasetAdapter):
    """Adapter for the native AVE layout (one mp4 per video, official split files)."""

    name = "ave"
    classes = CLASSES
    modalities = ("audio", "visual")
    kinds = {"audio": "spectrogram", "visual": "frames"}
    frames_per_clip = 3  # 3 uniform frames (ARL paper, ReconBoost); TPAMI uses 10

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """Audio of the event span → log-spectrogram [257, 1004] (10 s); frames inside the
        span at ``frame_fps`` → [T, H, W, 3] uint8 (T = span length in seconds at 1 fps)."""
        start, end = _span(clip)
        video = clip.paths["video"]
        fps = float(recipe["frame_fps"])
        frames = read_frames(video, fps=fps, size=recipe["frame_size"])  # [T_all, H, W, 3]
        inside = frames[_frame_range(start, end, fps)]
        if inside.shape[0] == 0:
            raise MediaError(
                f"{video}: no frame inside the event span [{start:g}, {end if end is not None else 'end'}) s "
                f"(the video has {frames.shape[0]} frames at {fps:g} fps)"
            )
        return {"audio": audio_features(video, recipe, start, end), "visual": inside}

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        test_fraction: float = 0.0,
        val_fraction: float = 0.0,
        split_seed: int = 0,
        duplicates: str = "per_split",
    ) -> tuple[list[Clip], list[Skip]]:
        """Read the official split files; return (clips sorted by (clip_id, split), skips).

        The split is fixed by the files: ``split_csv`` must be empty, and the fraction/seed
        options (shared with datasets that have no split) are ignored. duplicates: "per_split"
        keeps the first line of a video id within each split file, as the reference loaders do
        (released files: 3,311 / 401 / 402 clips after 27 + 1 duplicate lines and one empty
        span [0, 0) in trainSet.txt; 18 videos then sit in train and in val or test);
        "global" keeps only its first line over trainSet, valSet, testSet in that order
        (3,311 / 391 / 394). Later lines are skipped, naming the line kept.
        """
        if split_csv not in (None, ""):
            raise ValueError(f"AVE uses its official split files; split_csv={split_csv!r} is not supported")
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
        root = Path(root)
        videos = _list_videos(root)
        kept, skips = _read_splits(root, duplicates)
        skips += _unlisted(root, videos)
        clips: list[Clip] = []
        for split, ann in kept:
            if ann.video_id not in videos:
                expected = root / VIDEO_DIR / f"{ann.video_id}{VIDEO_EXT}"
                skips.append(Skip(ann.video_id, ann.where, f"video missing: expected {expected}"))
                continue
            paths = {"video": videos[ann.video_id]}
            clips.append(EventClip(ann.video_id, ann.label, split, paths, ann.start_s, ann.end_s))
        if not clips:
            raise DatasetLayoutError(f"{root}: no AVE clip has both an annotation and a video ({len(skips)} skipped)")
        clips.sort(key=lambda c: (c.clip_id, c.split))
        return clips, sorted(skips, key=lambda k: (k.clip_id, k.path))


def _span(clip: Clip) -> tuple[float, float | None]:
    """The clip's event span in seconds; a plain Clip (no annotation) means the whole video."""
    if isinstance(clip, EventClip):
        return clip.start_s, clip.end_s
    return 0.0, None


def _frame_range(start: float, end: float | None, fps: float) -> slice:
    """Indices of the sampled frames inside [start, end): sampled frame i is the first frame of
    the interval [i/fps, (i+1)/fps) (``read_frames``; a decodable frame in every interval, as
    in any video of at least ``fps`` frames/s), kept when its interval starts in the span."""
    eps = 1e-6  # an annotation of 2 s at 1 fps starts interval 2, not 3
    return slice(ceil(start * fps - eps), None if end is None else ceil(end * fps - eps))


def _list_videos(root: Path) -> dict[str, Path]:
    """Map video id -> mp4 under ``<root>/AVE``; raise naming the path if the folder is missing."""
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
    folder = root / VIDEO_DIR
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: expected folder of <video_id>{VIDEO_EXT} files is missing")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() == VIDEO_EXT}


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines, header line dropped; BOM and CRLF tolerated."""
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: AVE annotation file is missing")
    rows = []
    for number, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not text.strip():
            continue
        if tuple(f.strip().lower() for f in text.split("&")) == HEADER:
            continue
        rows.append((number, text))
    return rows


def _read_splits(root: Path, duplicates: str) -> tuple[list[tuple[str, Annotation]], list[Skip]]:
    """Parsed (split, annotation) pairs, duplicates removed; bad lines and duplicates as Skips."""
    kept: list[tuple[str, Annotation]] = []
    skips: list[Skip] = []
    first: dict[tuple[str, str], Annotation] = {}  # (scope, video id) -> line kept
    for split, name in SPLIT_FILES.items():
        for number, text in _read_lines(root / name):
            where = f"{root / name}:{number}"
            try:
                ann = parse_line(text, where)
            except ValueError as err:
                skips.append(Skip(_line_id(text), where, str(err)))
                continue
            scope = (split if duplicates == "per_split" else "", ann.video_id)
            if scope in first:
                skips.append(Skip(ann.video_id, where, f"duplicate video id: {first[scope].where} is kept"))
                continue
            first[scope] = ann
            kept.append((split, ann))
    return kept, skips


def _line_id(text: str) -> str:
    """The video id field of an annotation line (the whole line if it has no '&')."""
    fields = text.split("&")
    return (fields[1] if len(fields) > 1 else text).strip()


def _unlisted(root: Path, videos: dict[str, Path]) -> list[Skip]:
    """Skips for videos (and Annotations.txt entries, if that file exists) that no line of any
    split file mentions (a malformed line's video is already skipped with that line)."""
    listed = {_line_id(text) for name in SPLIT_FILES.values() for _, text in _read_lines(root / name)}
    skips = [
        Skip(vid, str(path), "video not listed in any split file")
        for vid, path in videos.items()
        if vid not in listed
    ]
    annotations = root / ANNOTATIONS
    if annotations.is_file():
        for number, text in _read_lines(annotations):
            vid = _line_id(text)
            if vid not in listed and vid not in videos:
                skips.append(Skip(vid, f"{annotations}:{number}", "annotated but listed in no split file"))
    return skips
