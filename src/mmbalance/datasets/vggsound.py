"""VGGSound adapter: ``<root>/vggsound.csv`` plus the downloaded ``<youtube_id>_<start:06d>.mp4`` clips.

Layout (as the dataset is distributed)::

    <root>/vggsound.csv                       youtube_id,start_seconds,label,split (no header)
    <root>/video/<youtube_id>_<start:06d>.mp4 10-s YouTube clips, audio track inside

VGGSound (Chen, Xie, Vedaldi, Zisserman, ICASSP 2020) is an audio-visual event dataset of 10-s
clips over 309 sound classes; its split is the ``train`` / ``test`` column of ``vggsound.csv``.
Where each fact comes from:

- ``vggsound.csv``: rows ``YouTube ID, start seconds, label, train/test split``
  (hche11/VGGSound README.md; example row ``---g-f_I2yQ,1,people marching,test``); labels with
  commas are quoted fields (``"bird chirping, tweeting"``). The released csv has 199,467 rows
  (183,971 train / 15,496 test), 291 more than the authors' data/train.csv + data/test.csv
  (183,730 + 15,446) and the clips of their video archive (hche11/VGGSound issue #19).
- Clip names ``<youtube_id>_<start:06d>.mp4`` (hche11/VGGSound data/test.csv rows such as
  ``glLQrEijrKg_000300.mp4,playing hammond organ``; example_audio/FwVYUHKoLtQ_000034.wav). The
  OGM-GE code names them ``<youtube_id>_<start>.mp4`` with the csv's unpadded start
  (GeWu-Lab/OGM-GE_CVPR2022 dataset/VGGSoundDataset.py: ``item[0]+'_'+item[1]+'.mp4'``); both
  spellings are read, and the clip id is always the padded one.
- Classes: the 309 names of hche11/VGGSound data/stat.csv, label = position in the sorted list as
  that repository's datasets/dataloader.py numbers them (package data
  ``data/vggsound_classes.yaml``, list ``vgg309``, the default). ``class_list: csv`` instead uses
  the sorted labels present in the given vggsound.csv, as the OGM-GE loader does (it numbers the
  csv's train labels by first appearance; a permutation changes no metric).
- Audio: the OPM/OGM paper (TPAMI, §4.2) resamples to 16 kHz and computes a 257x1004 spectrogram
  (window 512, overlap 353) over the 10-s clip, the recipe of hche11/VGGSound
  datasets/dataloader.py (tile to 160,000 samples, clip to ±1, scipy spectrogram, log, per-clip
  z-score) and of the ``prepare.audio`` defaults here. The OGM-GE code differs: 16-kHz WAVs
  from ffmpeg (data/VGGSound/mp4_to_wav.py), a random 5-s crop (at test time too) and
  librosa.stft(n_fft=256, hop_length=128) → log|S| 129x626, no normalisation
  (dataset/VGGSoundDataset.py).
- Frames: the paper extracts frames at 1 fps and samples 3 uniformly (TPAMI §4.2); the OGM-GE
  code stores the first frame of every second (data/VGGSound/video_preprocessing.py,
  ``Image-01-FPS/<clip>/<index:05d>.jpg``) and reads ``use_video_frames`` of them from an
  unsorted listing, keeping only clips with more than 3 frames.
- Size: 309 classes, 168,618 train+val / 13,954 test clips of the paper's download (TPAMI §4.1);
  YouTube removals make every copy smaller than the csv, so rows without a clip are skipped and
  listed. Facts sheet (../shared/reference/facts.md): SGD lr 1e-3, batch 32 for VGGSound in the
  paper; the OGM-GE README's α = 0.1 for VGGSound.

The csv has no validation split: a stratified, seeded ``val_fraction`` of train is held out.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from mmbalance.datasets.base import (
    Clip,
    DatasetLayoutError,
    Skip,
    register_dataset,
    stratified_holdout,
)
from mmbalance.datasets.youtube import YoutubeClipAdapter

__all__ = [
    "CLASS_LISTS",
    "CSV_CLASS_LIST",
    "CSV_FILE",
    "DEFAULT_CLASS_LIST",
    "VIDEO_DIR",
    "VIDEO_EXT",
    "CsvRow",
    "VggSound",
    "clip_id",
    "get_class_list",
    "parse_row",
]

CSV_FILE = "vggsound.csv"
VIDEO_DIR = "video"  # where the distributed clips sit; the scan looks at every mp4 under the root
VIDEO_EXT = ".mp4"
DEFAULT_CLASS_LIST = "vgg309"
CSV_CLASS_LIST = "csv"  # the sorted labels present in the csv itself
CSV_SPLITS = ("train", "test")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
# <11-char YouTube id>_<start seconds>, padded to 6 digits (release) or not (OGM-GE code)
_NAME_RE = re.compile(r"^(?P<id>[A-Za-z0-9_-]{11})_(?P<start>\d+)$")
_HEADER = {"youtube_id", "start_seconds", "label", "split"}


def _load_class_lists() -> dict[str, tuple[str, ...]]:
    """{list name: class names} from the package data file."""
    text = resources.files("mmbalance.datasets").joinpath("data", "vggsound_classes.yaml").read_text()
    return {name: tuple(entry["classes"]) for name, entry in yaml.safe_load(text).items()}


CLASS_LISTS = _load_class_lists()


def get_class_list(name: str) -> tuple[str, ...]:
    """The class names of a stored list; an unknown name raises KeyError listing the choices."""
    if name not in CLASS_LISTS:
        choices = ", ".join([*sorted(CLASS_LISTS), CSV_CLASS_LIST])
        raise KeyError(f"unknown VGGSound class_list {name!r}; choices: {choices}")
    return CLASS_LISTS[name]


def clip_id(youtube_id: str, start: int) -> str:
    """The release's clip name without extension: ``<youtube_id>_<start:06d>``."""
    return f"{youtube_id}_{start:06d}"


@dataclass(frozen=True)
class CsvRow:
    """One parsed vggsound.csv row."""

    clip_id: str
    label_name: str
    split: str
    where: str  # "<file>:<line>", for skip reasons


def parse_row(row: list[str], where: str) -> CsvRow:
    """Parse ``youtube_id,start_seconds,label,split``; ValueError says what is wrong with the row."""
    if len(row) != 4:
        raise ValueError(f"expected 4 fields (youtube_id,start_seconds,label,split), got {len(row)}: {row}")
    youtube_id, start, label, split = (f.strip() for f in row)
    if not _ID_RE.match(youtube_id):
        raise ValueError(f"malformed YouTube id {youtube_id!r} (expected 11 characters of [A-Za-z0-9_-])")
    if not start.isdigit():
        raise ValueError(f"start seconds {start!r} is not a non-negative integer")
    if split not in CSV_SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(CSV_SPLITS)}")
    if not label:
        raise ValueError("empty label")
    return CsvRow(clip_id(youtube_id, int(start)), label, split, where)


@register_dataset("vggsound")
class VggSound(YoutubeClipAdapter):
    """Adapter for VGGSound: the metadata csv plus the downloaded mp4 clips."""

    name = "vggsound"
    classes = CLASS_LISTS[DEFAULT_CLASS_LIST]  # replaced per instance by scan(class_list=...)

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        test_fraction: float = 0.0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        class_list: str = DEFAULT_CLASS_LIST,
    ) -> tuple[list[Clip], list[Skip]]:
        """Read ``vggsound.csv`` and match its rows to the mp4 files under ``root``.

        The split is the csv's (``split_csv`` must be empty, ``test_fraction`` is ignored);
        ``val_fraction`` of train is held out as val, stratified and seeded. Sets
        ``self.classes`` to the chosen list. Skipped and listed: a malformed csv row, a label
        outside the class list, a repeated row (the first is kept), a row whose clip is missing,
        an mp4 with a malformed name, the same clip found twice, and an mp4 the csv does not list.
        """
        if split_csv not in (None, ""):
            raise ValueError(f"VGGSound uses the split column of {CSV_FILE}; split_csv={split_csv!r} is not supported")
        root = Path(root)
        parsed, skips = _read_csv(_csv_path(root))
        self.classes = _classes(parsed, class_list)
        rows, skips = _known_labels(parsed, skips, self.classes, class_list)
        files, file_skips = _list_files(root)
        clips, missing = _match(rows, files, self.classes, root)
        listed = {row.clip_id for row in parsed}  # a row skipped for its label covers its file too
        unlisted = [Skip(cid, str(p), f"not listed in {CSV_FILE}") for cid, p in files.items() if cid not in listed]
        skips += missing + file_skips + unlisted
        if not clips:
            raise DatasetLayoutError(
                f"{root}: no VGGSound clip has both a {CSV_FILE} row and a video ({len(skips)} skipped)"
            )
        clips = _hold_out_val(clips, val_fraction, split_seed)
        return sorted(clips, key=lambda c: c.clip_id), sorted(skips, key=lambda k: (k.clip_id, k.path))


def _match(
    rows: list[CsvRow], files: dict[str, Path], classes: tuple[str, ...], root: Path
) -> tuple[list[Clip], list[Skip]]:
    """A Clip for each row with a video; a Skip naming the expected file for each row without."""
    label = {name: i for i, name in enumerate(classes)}
    clips: list[Clip] = []
    missing: list[Skip] = []
    for row in rows:
        path = files.get(row.clip_id)
        if path is None:
            expected = root / VIDEO_DIR / f"{row.clip_id}{VIDEO_EXT}"
            reason = f"video missing: expected {expected} (or another folder under {root})"
            missing.append(Skip(row.clip_id, row.where, reason))
        else:
            clips.append(Clip(row.clip_id, label[row.label_name], row.split, {"video": path}))
    return clips, missing


def _csv_path(root: Path) -> Path:
    """``<root>/vggsound.csv``; raise DatasetLayoutError naming the missing root or file."""
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
    path = root / CSV_FILE
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: VGGSound metadata file is missing")
    return path


def _is_header(row: list[str]) -> bool:
    """A header or comment line some copies of the csv carry (the release has none)."""
    fields = {f.strip().lower() for f in row}
    return bool(row) and (row[0].lstrip().startswith("#") or fields == _HEADER)


def _read_csv(path: Path) -> tuple[list[CsvRow], list[Skip]]:
    """Parsed rows, first occurrence of each clip only; bad and repeated rows as Skips."""
    rows: list[CsvRow] = []
    skips: list[Skip] = []
    first: dict[str, CsvRow] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for number, raw in enumerate(csv.reader(fh), start=1):
            if not "".join(raw).strip() or (number == 1 and _is_header(raw)):
                continue
            where = f"{path}:{number}"
            try:
                row = parse_row(raw, where)
            except ValueError as err:
                skips.append(Skip(_row_id(raw), where, str(err)))
                continue
            if row.clip_id in first:
                skips.append(Skip(row.clip_id, where, f"duplicate clip: {first[row.clip_id].where} is kept"))
                continue
            first[row.clip_id] = row
            rows.append(row)
    return rows, skips


def _row_id(raw: list[str]) -> str:
    """The best clip id a malformed row allows (its padded id where the start parses)."""
    if len(raw) >= 2 and raw[1].strip().isdigit():
        return clip_id(raw[0].strip(), int(raw[1].strip()))
    return raw[0].strip() if raw else ""


def _classes(rows: list[CsvRow], class_list: str) -> tuple[str, ...]:
    """The stored list ``class_list``, or (``csv``) the sorted labels of the parsed rows."""
    if class_list == CSV_CLASS_LIST:
        return tuple(sorted({r.label_name for r in rows}))
    return get_class_list(class_list)


def _known_labels(
    rows: list[CsvRow], skips: list[Skip], classes: tuple[str, ...], list_name: str
) -> tuple[list[CsvRow], list[Skip]]:
    """Rows whose label is in ``classes``; the others become Skips."""
    known = set(classes)
    kept = [r for r in rows if r.label_name in known]
    skips = skips + [Skip(r.clip_id, r.where, f"label {r.label_name!r} not in class list {list_name!r}")
                     for r in rows if r.label_name not in known]
    return kept, skips


def _list_files(root: Path) -> tuple[dict[str, Path], list[Skip]]:
    """{clip id: mp4} for every well-named mp4 under ``root`` (sorted paths; the first copy of a
    clip is kept), plus Skips for malformed names and further copies."""
    files: dict[str, Path] = {}
    skips: list[Skip] = []
    for path in sorted(p for p in root.rglob(f"*{VIDEO_EXT}") if p.is_file()):
        match = _NAME_RE.match(path.stem)
        if not match:
            reason = f"file name {path.stem!r} does not match <youtube_id:11>_<start:06d>"
            skips.append(Skip(path.stem, str(path), reason))
            continue
        cid = clip_id(match["id"], int(match["start"]))
        if cid in files:
            skips.append(Skip(cid, str(path), f"duplicate clip: {files[cid]} is kept"))
            continue
        files[cid] = path
    return files, skips


def _hold_out_val(clips: list[Clip], fraction: float, seed: int) -> list[Clip]:
    """Move a stratified, seeded ``fraction`` of train to val (the csv has no validation split)."""
    train = sorted((c for c in clips if c.split == "train"), key=lambda c: c.clip_id)
    held = stratified_holdout([c.clip_id for c in train], [c.label for c in train], fraction, seed)
    return [Clip(c.clip_id, c.label, "val", c.paths) if c.clip_id in held else c for c in clips]
