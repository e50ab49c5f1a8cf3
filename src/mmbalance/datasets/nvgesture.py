"""NVGesture adapter (Molchanov et al., CVPR 2016): the NVIDIA release ``nvGesture_v1``.

Native layout (root = the folder holding ``Video_data``):

- ``nvgesture_train_correct_cvpr2016_v2.lst`` (1,050 lines) and
  ``nvgesture_test_correct_cvpr2016_v2.lst`` (482 lines), one gesture per line::

      path:./Video_data/class_01/subject13_r0 depth:sk_depth:138:218 color:sk_color:138:218 duo_left:duo_left:161:254 label:1

  ``<sensor>:<file stem>:<start>:<end>`` names a video of the gesture's folder and the gesture's
  frames ``start … end-1`` (0-based), ``label`` is 1-based (1–25);
- ``Video_data/class_XX/subjectY_rZ/{sk_color.avi, sk_depth.avi, duo_left.avi}``.

Sources: the list format, the 0-based label (``label - 1``), the frame range ``range(start, end)``
read from the ``color`` (3-channel) and ``depth`` (first channel only) videos are those of the
IPRM code's loader (njustkmg/IJCAI25-IPRM ``dataset/nvGesture_dataset.py``, which keeps the
NVIDIA release's ``load_split_nvgesture`` / ``load_data_from_file``); its encoders take RGB 3,
optical flow 2 and depth 1 input channels (``models/RODModel.py``). The IPRM paper follows Wu et
al. 2022 (Greedy) for this dataset, but the Greedy code (nyukat/greedy_multimodal_learning) holds
only its ModelNet40 experiment. The optical flow the IPRM code reads is precomputed
(``flow_data/<mode>/<index>.npy``) by a script neither repository publishes, so its algorithm is
not known: here it is computed from ``sk_color.avi`` with ``flow_algorithm`` (farneback | tvl1,
``mmbalance.media.flow``), stored like UCF-101's flow (uint8 u, v over ±FLOW_BOUND px). The 25
class names (in label order) are those of open-mmlab/mmpose
``configs/_base_/datasets/nvgesture.py``; the folders are ``class_01`` … ``class_25``.

Splits: the two official lists give train / test; a stratified, seeded ``val_fraction`` of train
is held out for validation (the papers select on test). ``classes`` are the official names up to
the highest label the lists use (the mini data uses the first eight).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mmbalance.datasets.base import (
    Clip,
    DatasetAdapter,
    DatasetLayoutError,
    Skip,
    register_dataset,
    splits_from_csv,
    stratified_holdout,
)
from mmbalance.media import MediaError
from mmbalance.media.flow import FLOW_ALGORITHMS, optical_flow, quantization, quantize, read_frame_pairs, resize_field
from mmbalance.media.video import read_frames

__all__ = [
    "CLASSES",
    "FLOW_BOUND",
    "LIST_FILES",
    "MODALITIES",
    "SENSOR_FILES",
    "VIDEO_DIR",
    "ListEntry",
    "NVGesture",
    "clip_id_of",
    "parse_line",
    "read_list",
    "span_indices",
]

VIDEO_DIR = "Video_data"
LIST_FILES = {"train": "nvgesture_train_correct_cvpr2016_v2.lst", "test": "nvgesture_test_correct_cvpr2016_v2.lst"}
SENSORS = ("depth", "color", "duo_left")  # the sensors a list line names
SENSOR_FILES = {"depth": "sk_depth", "color": "sk_color", "duo_left": "duo_left"}  # file stems in the release
VIDEO_EXT = ".avi"
CLASSES = (
    "five fingers move right", "five fingers move left", "five fingers move up", "five fingers move down",
    "two fingers move right", "two fingers move left", "two fingers move up", "two fingers move down",
    "click", "beckoned", "stretch hand", "shake hand", "one", "two", "three", "lift up", "press down", "push",
    "shrink", "levorotation", "dextrorotation", "two fingers prod", "grab", "thumbs up", "OK",
)  # fmt: skip
MODALITIES = ("rgb", "depth", "flow")
FLOW_BOUND = 20.0  # px: flow stored as uint8 over [-20, 20) px, as the UCF-101 flow
# frames are chosen by their number in the file (the lists give frame numbers, not times):
# with an interval this short every decoded frame starts its own interval and is kept
_EVERY_FRAME_FPS = 1000.0
_PATH_RE = re.compile(r"^(?:\./)?Video_data/(class_(\d{2}))/([A-Za-z0-9_]+)$")


@dataclass(frozen=True)
class ListEntry:
    """One list line: the gesture's folder (relative to the root), label (0-based) and per-sensor
    (file stem, start, end) frame ranges."""

    folder: str  # e.g. Video_data/class_01/subject13_r0
    label: int
    sensors: dict[str, tuple[str, int, int]]
    line: int


def clip_id_of(folder: str) -> str:
    """``Video_data/class_01/subject13_r0`` → ``class_01_subject13_r0`` (a shard key: no '/' or '.')."""
    parts = folder.split("/")
    return f"{parts[-2]}_{parts[-1]}"


def parse_line(text: str, line: int = 0) -> ListEntry:
    """Parse one list line; ValueError saying what is wrong (missing field, bad range, label
    outside 1–25, folder class differing from the label)."""
    fields = dict(_field(token) for token in text.split())
    if "path" not in fields or "label" not in fields:
        raise ValueError(f"line must have 'path:' and 'label:' fields, got {text!r}")
    match = _PATH_RE.match(fields["path"][0])
    if match is None:
        raise ValueError(f"path {fields['path'][0]!r} is not ./{VIDEO_DIR}/class_<2 digits>/<gesture folder>")
    label = _integer(fields["label"][0], "label")
    if not 1 <= label <= len(CLASSES):
        raise ValueError(f"label {label} outside 1-{len(CLASSES)}")
    if int(match.group(2)) != label:
        raise ValueError(f"label {label} disagrees with folder {match.group(1)}")
    sensors = {}
    for sensor in SENSORS:
        if sensor in fields:
            sensors[sensor] = _sensor_range(sensor, fields[sensor])
    for needed in ("color", "depth"):
        if needed not in sensors:
            raise ValueError(f"no '{needed}:<file>:<start>:<end>' field")
    folder = f"{VIDEO_DIR}/{match.group(1)}/{match.group(3)}"
    return ListEntry(folder, label - 1, sensors, line)


def _field(token: str) -> tuple[str, list[str]]:
    key, _, rest = token.partition(":")
    return key, rest.split(":")


def _integer(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a non-negative integer")
    return int(text)


def _sensor_range(sensor: str, values: list[str]) -> tuple[str, int, int]:
    """(file stem, start, end) of a ``<sensor>:<file>:<start>:<end>`` field."""
    if len(values) != 3:
        raise ValueError(f"field {sensor!r} must be '{sensor}:<file>:<start>:<end>', got {':'.join([sensor, *values])!r}")
    stem, start, end = values[0], _integer(values[1], f"{sensor} start"), _integer(values[2], f"{sensor} end")
    if end - start < 2:  # the flow of a kept frame needs its successor inside the gesture
        raise ValueError(f"{sensor} range {start}:{end} holds fewer than 2 frames")
    return stem, start, end


def read_list(path: Path) -> tuple[dict[str, ListEntry], list[Skip]]:
    """A list file → ({clip_id: entry}, skips); malformed and repeated lines are skips naming
    ``file:line`` and the problem. A missing file is a DatasetLayoutError."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: list file is missing from the NVGesture root")
    entries, skips = _read_list(*_stamp(path))
    return dict(entries), list(skips)  # copies: the cached ones stay as read


def _stamp(path: Path) -> tuple[str, int, int]:
    """Cache key of a file: path, modification time and size (a rewritten list is re-read)."""
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=4)
def _read_list(path: str, _mtime: int, _size: int) -> tuple[dict[str, ListEntry], list[Skip]]:
    entries: dict[str, ListEntry] = {}
    skips: list[Skip] = []
    text = Path(path).read_text(encoding="utf-8-sig")
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            entry = parse_line(line, n)
        except ValueError as err:
            skips.append(Skip(_id_guess(line), where, str(err)))
            continue
        clip_id = clip_id_of(entry.folder)
        if clip_id in entries:
            skips.append(Skip(clip_id, where, f"listed again (first at line {entries[clip_id].line}); later line ignored"))
            continue
        entries[clip_id] = entry
    return entries, skips


def _id_guess(line: str) -> str:
    """The clip id a malformed line seems to name (for the skip record)."""
    path = next((t[5:] for t in line.split() if t.startswith("path:")), "")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return clip_id_of("/".join(parts)) if len(parts) >= 2 else (path or line.strip()[:40])


def span_indices(start: int, end: int, count: int | None) -> np.ndarray:
    """``count`` frame numbers evenly spaced over ``start … end-2`` (the gesture's frames whose
    successor, for the flow, is in the gesture too); None = every one of them."""
    last = end - 2
    if count is None or count >= last - start + 1:
        return np.arange(start, last + 1)
    return np.rint(np.linspace(start, last, int(count))).astype(int)


@register_dataset("nvgesture")
class NVGesture(DatasetAdapter):
    """Adapter for the native NVGesture layout (videos per gesture folder, the two official lists).

    ``extract`` returns ``rgb`` (sk_color frames), ``depth`` (sk_depth, 1 channel) and ``flow``
    (from sk_color) at ``clip_frames`` frame numbers evenly spaced over the gesture.
    """

    name = "nvgesture"
    classes: tuple[str, ...] = CLASSES
    modalities = MODALITIES
    kinds = {"rgb": "frames", "depth": "frames", "flow": "frames"}
    frames_per_clip = 8  # frames of each stream the model reads (the papers' I3D reads 64 of the 80 gesture frames)
    dequantize = {"flow": quantization(FLOW_BOUND)}

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        test_fraction: float = 0.0,
        val_fraction: float,
        split_seed: int,
    ) -> tuple[list[Clip], list[Skip]]:
        """List the gestures of both official lists that have their videos; return (clips, skips).

        ``split_csv`` (``clip_id,split``) replaces the lists' split; ``test_fraction`` is unused
        (the test list is official; accepted so every dataset's split block has the same keys).
        """
        root = Path(root)
        if not root.is_dir():
            raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
        if not (root / VIDEO_DIR).is_dir():
            raise DatasetLayoutError(f"{root / VIDEO_DIR}: expected folder is missing from the NVGesture root")
        listed, splits, skips = self._listed(root)
        skips += _unlisted(root, {e.folder for e, _ in listed.values()})
        if split_csv not in (None, ""):
            # a listed gesture missing from the split file is reported against the split file itself
            splits, csv_skips = splits_from_csv(Path(split_csv), dict.fromkeys(splits, split_csv),
                                                "in the split file but not a usable listed gesture")
            skips += csv_skips
        self.classes = CLASSES[: 1 + max((e.label for e, _ in listed.values()), default=0)]
        labels = {c: listed[c][0].label for c in splits}
        splits = _hold_out_val(splits, labels, val_fraction, split_seed)
        clips = [Clip(c, labels[c], splits[c], _paths(root, *listed[c])) for c in sorted(splits)]
        if not clips:
            raise DatasetLayoutError(f"{root}: no NVGesture gesture is both listed and on disk ({len(skips)} skipped)")
        return clips, sorted(skips, key=lambda k: (k.clip_id, k.path))

    def _listed(self, root: Path) -> tuple[dict[str, tuple[ListEntry, Path]], dict[str, str], list[Skip]]:
        """Entries of both lists whose color and depth videos exist, with their list file."""
        listed: dict[str, tuple[ListEntry, Path]] = {}
        splits: dict[str, str] = {}
        skips: list[Skip] = []
        for split, name in LIST_FILES.items():
            entries, list_skips = read_list(root / name)
            skips += list_skips
            for clip_id, entry in sorted(entries.items()):
                where = f"{root / name}:{entry.line}"
                missing = [str(p) for p in _videos(root, entry).values() if not p.is_file()]
                if missing:
                    skips.append(Skip(clip_id, where, f"listed but missing: {', '.join(missing)}"))
                elif clip_id in splits:
                    skips.append(Skip(clip_id, where, f"listed in both {LIST_FILES['train']} and {LIST_FILES['test']}; kept as train"))
                else:
                    listed[clip_id], splits[clip_id] = (entry, root / name), split
        return listed, splits, skips

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """``rgb`` [T, H, W, 3], ``depth`` [T, H, W, 1] and ``flow`` [T, H, W, 2] uint8 (those named
        by ``recipe['modalities']``), T = ``clip_frames`` (null: every gesture frame).

        The frames are read by number from the list's range of each sensor; flow at frame i is
        the flow from frame i to i+1 of sk_color at the native size (``flow_algorithm``), resized
        to ``frame_size`` without rescaling the vectors and quantised over ±FLOW_BOUND px. The
        depth video's first channel is the depth (as the IPRM loader reads it).
        """
        wanted = _requested(recipe)
        entry = _entry(clip)
        size, count = recipe.get("frame_size"), recipe.get("clip_frames")
        out: dict[str, np.ndarray] = {}
        if "rgb" in wanted or "flow" in wanted:
            _, start, end = entry.sensors["color"]
            path = clip.paths["color"]
            frames, pairs = read_frame_pairs(path, _EVERY_FRAME_FPS)  # [N, H, W, 3], [N, 2, H, W, 3]
            idx = _checked(path, span_indices(start, end, count), end, len(frames))
            if "rgb" in wanted:
                out["rgb"] = np.stack([resize_field(frames[i], size) for i in idx])
            if "flow" in wanted:
                out["flow"] = _flow(path, pairs[idx], recipe.get("flow_algorithm", "farneback"), size)
        if "depth" in wanted:
            _, start, end = entry.sensors["depth"]
            path = clip.paths["depth"]
            frames = read_frames(path, _EVERY_FRAME_FPS, size)  # [N, H, W, 3], grey in every channel
            idx = _checked(path, span_indices(start, end, count), end, len(frames))
            out["depth"] = np.ascontiguousarray(frames[idx][..., :1])
        return {m: out[m] for m in MODALITIES if m in out}


def _requested(recipe: dict) -> tuple[str, ...]:
    """The recipe's ``modalities`` (default all three), checked, and the flow algorithm."""
    wanted = tuple(recipe.get("modalities", MODALITIES))
    unknown = [m for m in wanted if m not in MODALITIES]
    if unknown or not wanted:
        raise ValueError(f"datasets.nvgesture.modalities must be a non-empty subset of {MODALITIES}, got {list(wanted)}")
    algorithm = recipe.get("flow_algorithm", "farneback")
    if "flow" in wanted and algorithm not in FLOW_ALGORITHMS:
        raise ValueError(f"datasets.nvgesture.flow_algorithm must be one of {FLOW_ALGORITHMS}, got {algorithm!r}")
    return wanted


def _entry(clip: Clip) -> ListEntry:
    """The clip's line of its list file (read once per process)."""
    path = Path(clip.paths["list"])
    try:
        entries, _ = read_list(path)
    except DatasetLayoutError as err:
        raise MediaError(str(err)) from None
    if clip.clip_id not in entries:
        raise MediaError(f"{path}: gesture {clip.clip_id!r} is not in the list (changed since scan?)")
    return entries[clip.clip_id]


def _checked(path: Path, idx: np.ndarray, end: int, decoded: int) -> np.ndarray:
    """``idx``, or MediaError naming the file when the gesture ends after its last frame."""
    if end > decoded:
        raise MediaError(f"{path}: gesture frames end at {end} but the video decodes {decoded} frames")
    return idx


def _flow(path: Path, pairs: np.ndarray, algorithm: str, size) -> np.ndarray:
    """Quantised flow of each pair: uint8 [T, H, W, 2]; a failing OpenCV call names the file."""
    try:
        fields = [resize_field(optical_flow(a, b, algorithm), size) for a, b in pairs]
    except cv2.error as err:
        raise MediaError(f"{path}: optical flow failed ({err})") from None
    return quantize(np.stack(fields), FLOW_BOUND)[0]


def _videos(root: Path, entry: ListEntry) -> dict[str, Path]:
    """The color and depth video files of a list entry."""
    return {s: root / entry.folder / f"{entry.sensors[s][0]}{VIDEO_EXT}" for s in ("color", "depth")}


def _paths(root: Path, entry: ListEntry, list_file: Path) -> dict[str, Path]:
    """A Clip's files: its two videos and the list holding its frame ranges."""
    return {**_videos(root, entry), "list": list_file}


def _unlisted(root: Path, listed_folders: set[str]) -> list[Skip]:
    """Gesture folders on disk that neither list names."""
    skips = []
    for class_dir in sorted((root / VIDEO_DIR).iterdir()):
        if not class_dir.is_dir():
            continue
        for folder in sorted(p for p in class_dir.iterdir() if p.is_dir()):
            rel = f"{VIDEO_DIR}/{class_dir.name}/{folder.name}"
            if rel not in listed_folders:
                skips.append(Skip(clip_id_of(rel), str(folder), f"not in {LIST_FILES['train']} or {LIST_FILES['test']}"))
    return skips


def _hold_out_val(splits: dict[str, str], labels: dict[str, int], val_fraction: float, seed: int) -> dict[str, str]:
    """If no clip is in val, move a stratified, seeded val_fraction of train to val."""
    if "val" in splits.values():
        return splits
    train = sorted(c for c, s in splits.items() if s == "train")
    val = stratified_holdout(train, [labels[c] for c in train], val_fraction, seed)
    return {c: ("val" if c in val else s) for c, s in splits.items()}
