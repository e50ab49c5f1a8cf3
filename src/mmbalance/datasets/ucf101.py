"""UCF-101 adapter: ``<root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` + ``<root>/ucfTrainTestlist/``.

Lists (as distributed): ``classInd.txt`` (``idx Class``, 1-based), ``trainlist0{1,2,3}.txt``
(``Class/v_Class_gXX_cYY.avi idx``) and ``testlist0{1,2,3}.txt`` (``Class/v_Class_gXX_cYY.avi``).
Labels follow classInd order, 0-based. Clip id = the file stem, e.g. ``v_ApplyEyeMakeup_g08_c01``.
The class inside a file name is compared with its folder case-insensitively: the real data has
``HandstandPushups/v_HandStandPushups_g01_c01.avi``. The official split (1 by default) gives
train/test; a stratified, seeded ``val_fraction`` of train is held out for validation.

Modalities (TPAMI OPM/OGM §4.1: UCF-101 = RGB + optical flow; UCF-101-Three adds RGB
difference, which no source defines: here the difference of the sampled frame and its next
decoded frame). The recipe key ``modalities`` picks which are extracted; ``ucf101_three``
is the same adapter with all three by default (the UCF-101-Three rows of TPAMI Tab. 11).
"""

from __future__ import annotations

import re
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
from mmbalance.media.flow import (
    FLOW_ALGORITHMS,
    optical_flow,
    quantization,
    quantize,
    read_frame_pairs,
    resize_field,
    rgb_difference,
)

__all__ = [
    "CLASS_INDEX",
    "FLOW_BOUND",
    "LIST_DIR",
    "MODALITIES",
    "RGB_DIFF_BOUND",
    "VIDEO_DIR",
    "UCF101",
    "UCF101Three",
    "official_split_groups",
    "parse_video_name",
    "read_class_index",
    "read_list",
]

VIDEO_DIR, LIST_DIR, CLASS_INDEX = "UCF-101", "ucfTrainTestlist", "classInd.txt"
VIDEO_EXT = ".avi"
MODALITIES = ("rgb", "flow", "rgb_diff")
DEFAULT_MODALITIES = ("rgb", "flow")
FLOW_BOUND = 20.0  # px: flow stored as uint8 over [-20, 20) px (the usual TV-L1 dump bound)
RGB_DIFF_BOUND = 128.0 / 255.0  # stored code = 128 + difference in grey levels (exact for |d| ≤ 127)
_NAME_RE = re.compile(r"^v_([A-Za-z0-9]+)_g(\d{2})_c(\d{2})$")


def parse_video_name(stem: str) -> tuple[str, int, int]:
    """``v_<Class>_gXX_cYY`` → (class as written in the name, group, clip); ValueError if malformed."""
    match = _NAME_RE.match(stem)
    if match is None:
        raise ValueError(f"file name {stem!r} does not match v_<Class>_g<2 digits>_c<2 digits>")
    name, group, clip = match.groups()
    return name, int(group), int(clip)


def official_split_groups(split: int) -> range:
    """The groups in the official test list of ``split`` (1: g01–g07, 2: g08–g14, 3: g15–g21)."""
    if split not in (1, 2, 3):
        raise ValueError(f"UCF-101 official split must be 1, 2 or 3, got {split!r}")
    return range(7 * (split - 1) + 1, 7 * split + 1)


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines (BOM and CRLF tolerated)."""
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: list file is missing from the UCF-101 root")
    text = path.read_text(encoding="utf-8-sig")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_class_index(path: Path) -> tuple[str, ...]:
    """Class names of ``classInd.txt`` in index order; the indices must run 1, 2, … N.

    Raises DatasetLayoutError naming the file and line for a malformed line, an index out of
    order or a class listed twice.
    """
    path = Path(path)
    names: list[str] = []
    for n, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetLayoutError(f"{path}: line {n} must be '<index> <Class>', got {line!r}")
        if int(parts[0]) != len(names) + 1:
            raise DatasetLayoutError(f"{path}: line {n}: index {parts[0]} out of order (expected {len(names) + 1})")
        if parts[1] in names:
            raise DatasetLayoutError(f"{path}: line {n}: class {parts[1]!r} listed twice")
        names.append(parts[1])
    if not names:
        raise DatasetLayoutError(f"{path}: no class listed")
    return tuple(names)


def read_list(path: Path, classes: tuple[str, ...]) -> tuple[dict[str, tuple[str, int]], list[Skip]]:
    """A train/test list → ({clip_id: (``Class/file.avi``, line)}, skips).

    Lines are ``Class/v_Class_gXX_cYY.avi`` with an optional 1-based label column (train lists
    have one); a line with a malformed path, a class missing from classInd, a file name whose
    class differs from its folder, a label column that disagrees with classInd or a repeated
    entry is skipped with its reason.
    """
    path = Path(path)
    entries: dict[str, tuple[str, int]] = {}
    skips: list[Skip] = []
    for n, line in _lines(path):
        where = f"{path}:{n}"
        parts = line.split()
        rel = parts[0]
        stem = Path(rel).stem
        try:
            _check_entry(rel, parts[1:], classes)
        except ValueError as err:
            skips.append(Skip(stem, where, str(err)))
            continue
        if stem in entries:
            skips.append(Skip(stem, where, f"listed again (first at line {entries[stem][1]}); later line ignored"))
            continue
        entries[stem] = (rel, n)
    return entries, skips


def _check_entry(rel: str, rest: list[str], classes: tuple[str, ...]) -> None:
    """ValueError saying what is wrong with one list entry (path + optional label column)."""
    folder, _, file = rel.partition("/")
    if not file or "/" in file or not file.endswith(VIDEO_EXT):
        raise ValueError(f"entry {rel!r} is not <Class>/<name>{VIDEO_EXT}")
    if folder not in classes:
        raise ValueError(f"class folder {folder!r} is not in {CLASS_INDEX}")
    name_class, _, _ = parse_video_name(file[: -len(VIDEO_EXT)])
    if name_class.lower() != folder.lower():
        raise ValueError(f"file {file!r} names class {name_class!r} but sits in folder {folder!r}")
    if len(rest) > 1 or (rest and not rest[0].isdigit()):
        raise ValueError(f"expected '<Class>/<file> [label]', got extra columns {rest}")
    if rest and int(rest[0]) != classes.index(folder) + 1:
        raise ValueError(f"label {rest[0]} disagrees with {CLASS_INDEX} ({folder} = {classes.index(folder) + 1})")


@register_dataset("ucf101")
class UCF101(DatasetAdapter):
    """Adapter for the native UCF-101 layout (one .avi per clip, official split lists).

    ``classes`` is read from ``classInd.txt`` by ``scan`` (the mini data lists a subset).
    ``kinds`` covers all three modalities; ``extract`` returns those named by the recipe's
    ``modalities``. ``dequantize``: how the uint8 flow / RGB-difference frames map back to
    values, x = (q - offset) * scale (flow in pixels, RGB difference in [-0.5, 0.5]).
    """

    name = "ucf101"
    classes: tuple[str, ...] = ()
    modalities = MODALITIES
    kinds = {"rgb": "frames", "flow": "frames", "rgb_diff": "frames"}
    frames_per_clip = 3  # TPAMI §4.2: 1 fps, three frames uniformly sampled
    official_split = 1  # the split of the official lists used when params give none
    dequantize = {"flow": quantization(FLOW_BOUND), "rgb_diff": quantization(RGB_DIFF_BOUND)}
    default_modalities = DEFAULT_MODALITIES  # extracted when the recipe names none

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """Decode the video once; per 1-fps time t: ``rgb`` [T, H, W, 3] uint8, ``flow``
        [T, H, W, 2] uint8 (u, v) and ``rgb_diff`` [T, H, W, 3] uint8.

        Flow "at the sampled time" = the flow from the frame kept at t to the next decoded frame,
        computed at the video's native size with ``recipe['flow_algorithm']`` (farneback | tvl1),
        then resized to ``frame_size`` without rescaling the vectors (pixels of the native video,
        as a loader resizing a stored flow dump sees them), quantised over ±FLOW_BOUND px.
        ``rgb_diff`` = next frame − kept frame, resized, stored as 128 + difference.
        """
        wanted = _requested(recipe, self.name, self.default_modalities)
        path = clip.paths["video"]
        frames, pairs = read_frame_pairs(path, float(recipe.get("frame_fps", 1)))  # [T,H,W,3], [T,2,H,W,3]
        size = recipe.get("frame_size")
        out: dict[str, np.ndarray] = {}
        if "rgb" in wanted:
            out["rgb"] = np.stack([resize_field(f, size) for f in frames])
        if "flow" in wanted:
            out["flow"] = _flow(path, pairs, recipe.get("flow_algorithm", "farneback"), size)
        if "rgb_diff" in wanted:
            diffs = np.stack([resize_field(rgb_difference(a, b), size) for a, b in pairs])
            out["rgb_diff"] = quantize(diffs, RGB_DIFF_BOUND)[0]
        return out

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        test_fraction: float = 0.0,
        val_fraction: float,
        split_seed: int,
        official_split: int | None = None,
    ) -> tuple[list[Clip], list[Skip]]:
        """List the videos, label them from classInd, assign the official split; return (clips, skips).

        official_split: 1, 2 or 3 (None = the class default, 1). split_csv: a ``clip_id,split``
        file replacing the official lists. test_fraction is unused (UCF-101 has official test
        lists; accepted so every dataset's split block has the same keys).
        """
        root = Path(root)
        classes = read_class_index(_layout(root) / CLASS_INDEX)
        self.classes = classes
        videos, skips = _list_videos(root / VIDEO_DIR, classes)
        if split_csv not in (None, ""):
            splits, split_skips = splits_from_csv(Path(split_csv), videos, "listed in split file but no video found")
        else:
            number = self.official_split if official_split is None else official_split
            splits, split_skips = _official_splits(root / LIST_DIR, number, videos, classes)
        skips += split_skips
        labels = {s: classes.index(videos[s].parent.name) for s in splits}
        splits = _hold_out_val(splits, labels, val_fraction, split_seed)
        clips = [Clip(s, labels[s], splits[s], {"video": videos[s]}) for s in sorted(splits)]
        if not clips:
            raise DatasetLayoutError(f"{root}: no UCF-101 video is both on disk and in the split lists "
                                     f"({len(skips)} skipped)")
        return clips, sorted(skips, key=lambda k: (k.clip_id, k.path))


def _requested(recipe: dict, name: str = "ucf101", default: tuple[str, ...] = DEFAULT_MODALITIES) -> tuple[str, ...]:
    """The recipe's ``modalities`` (else ``default``), checked against MODALITIES; ``name`` is the
    dataset's params block, named in errors."""
    wanted = tuple(recipe.get("modalities", default))
    unknown = [m for m in wanted if m not in MODALITIES]
    if unknown or not wanted:
        raise ValueError(f"datasets.{name}.modalities must be a non-empty subset of {MODALITIES}, got {list(wanted)}")
    algorithm = recipe.get("flow_algorithm", "farneback")
    if "flow" in wanted and algorithm not in FLOW_ALGORITHMS:
        raise ValueError(f"datasets.{name}.flow_algorithm must be one of {FLOW_ALGORITHMS}, got {algorithm!r}")
    return wanted


@register_dataset("ucf101_three")
class UCF101Three(UCF101):
    """UCF-101-Three (TPAMI 2024 OPM/OGM §4.1, Tab. 11): the UCF-101 videos, lists and splits
    with RGB, optical flow and RGB difference (read from the same raw root as ``ucf101``)."""

    name = "ucf101_three"
    default_modalities = MODALITIES


def _flow(path: Path, pairs: np.ndarray, algorithm: str, size) -> np.ndarray:
    """Quantised flow of each pair: uint8 [T, H, W, 2]; a failing OpenCV call names the file."""
    try:
        fields = [resize_field(optical_flow(a, b, algorithm), size) for a, b in pairs]
    except cv2.error as err:
        raise MediaError(f"{path}: optical flow failed ({err})") from None
    return quantize(np.stack(fields), FLOW_BOUND)[0]


def _layout(root: Path) -> Path:
    """Check the two top folders exist; return the list folder."""
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
    for folder in (root / VIDEO_DIR, root / LIST_DIR):
        if not folder.is_dir():
            raise DatasetLayoutError(f"{folder}: expected folder is missing from the UCF-101 root")
    return root / LIST_DIR


def _list_videos(folder: Path, classes: tuple[str, ...]) -> tuple[dict[str, Path], list[Skip]]:
    """Map clip id → file for the well-named videos in the classInd folders; Skip the others."""
    videos: dict[str, Path] = {}
    skips: list[Skip] = []
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir() or sub.name not in classes:
            reason = "not a class folder" if not sub.is_dir() else f"class folder {sub.name!r} is not in {CLASS_INDEX}"
            skips.append(Skip(sub.stem, str(sub), reason))
            continue
        for path in sorted(sub.iterdir()):
            try:
                _check_entry(f"{sub.name}/{path.name}", [], classes)
            except ValueError as err:
                skips.append(Skip(path.stem, str(path), str(err)))
                continue
            videos[path.stem] = path
    return videos, skips


def _official_splits(lists: Path, split: int, videos: dict[str, Path], classes: tuple[str, ...]) -> tuple[dict[str, str], list[Skip]]:
    """train/test from ``trainlist0<k>.txt`` / ``testlist0<k>.txt``; Skip listed-but-missing,
    listed-twice and on-disk-but-unlisted videos."""
    official_split_groups(split)  # validates the number
    names = {"train": f"trainlist{split:02d}.txt", "test": f"testlist{split:02d}.txt"}
    listed: dict[str, dict[str, tuple[str, int]]] = {}
    skips: list[Skip] = []
    for part, name in names.items():
        listed[part], part_skips = read_list(lists / name, classes)
        skips += part_skips
    splits: dict[str, str] = {}
    for part, entries in listed.items():
        for stem, (rel, line) in sorted(entries.items()):
            where = f"{lists / names[part]}:{line}"
            if stem not in videos:
                skips.append(Skip(stem, where, f"listed but missing: expected {lists.parent / VIDEO_DIR / rel}"))
            elif stem in splits:
                skips.append(Skip(stem, where, f"listed in both {names['train']} and {names['test']}; kept as train"))
            else:
                splits[stem] = part
    skips += [Skip(s, str(videos[s]), f"not in {names['train']} or {names['test']}")
              for s in sorted(videos.keys() - listed["train"].keys() - listed["test"].keys())]
    return splits, skips


def _hold_out_val(splits: dict[str, str], labels: dict[str, int], val_fraction: float, seed: int) -> dict[str, str]:
    """If no clip is in val, move a stratified, seeded val_fraction of train to val."""
    if "val" in splits.values():
        return splits
    train = sorted(s for s, split in splits.items() if split == "train")
    val = stratified_holdout(train, [labels[s] for s in train], val_fraction, seed)
    return {s: ("val" if s in val else split) for s, split in splits.items()}
