"""Kinetics-Sounds adapter: ``<root>/<split>/<class>/<youtube_id>_<start>_<end>.mp4``.

Kinetics-Sounds is the subset of Kinetics whose classes are audible (Arandjelovic & Zisserman,
Look, Listen and Learn). Splits are the ``train``, ``val`` and ``test`` folders; without a
``val`` folder a stratified, seeded fraction of train is held out. The label is the position of
the class folder's name in a class list (package data ``data/kinetics_sounds_classes.yaml``):
``ks31`` (default, the TPAMI OPM/OGM paper's alphabetical 31), ``arl33`` (the ARL code's file
order) or ``l3_34`` (the original 34 names). Each 10-s mp4 gives a log-spectrogram of its audio
track (257x1004) and its 1-fps frames (the model sees 3 of them).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import yaml

from mmbalance.datasets.base import (
    SPLITS,
    Clip,
    DatasetLayoutError,
    Skip,
    register_dataset,
    stratified_holdout,
)
from mmbalance.datasets.youtube import YoutubeClipAdapter

__all__ = ["CLASS_LISTS", "DEFAULT_CLASS_LIST", "VIDEO_EXT", "KineticsSounds", "folder_class", "get_class_list"]

VIDEO_EXT = ".mp4"
DEFAULT_CLASS_LIST = "ks31"
REQUIRED_SPLITS = ("train", "test")  # val may be absent: then it is held out of train
# <11-char YouTube id>_<start>_<end> (the trimmed-clip names); <id>_<n> also occurs (OGM test ids)
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{11}_\d+(?:_\d+)?$")


def _load_class_lists() -> dict[str, tuple[str, ...]]:
    """{list name: class names} from the package data file."""
    text = resources.files("mmbalance.datasets").joinpath("data", "kinetics_sounds_classes.yaml").read_text()
    return {name: tuple(entry["classes"]) for name, entry in yaml.safe_load(text).items()}


CLASS_LISTS = _load_class_lists()


def get_class_list(name: str) -> tuple[str, ...]:
    """The class names of list ``name``; an unknown name raises KeyError listing the choices."""
    if name not in CLASS_LISTS:
        raise KeyError(f"unknown Kinetics-Sounds class_list {name!r}; choices: {', '.join(sorted(CLASS_LISTS))}")
    return CLASS_LISTS[name]


def folder_class(folder_name: str) -> str:
    """A class folder's name in the lists' spelling (spaces read as underscores)."""
    return folder_name.strip().replace(" ", "_")


@register_dataset("kinetics_sounds")
class KineticsSounds(YoutubeClipAdapter):
    """Adapter for Kinetics-Sounds stored as split/class folders of mp4 clips."""

    name = "kinetics_sounds"
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
        """List the split/class folders; return (clips sorted by clip_id, skips).

        The split is fixed by the folders (``split_csv`` must be empty, ``test_fraction`` is
        ignored); without a ``val`` folder, ``val_fraction`` of train is held out, stratified
        and seeded. Sets ``self.classes`` to the chosen list. Skipped and listed: a class
        folder not in the list, a non-mp4 file, a malformed name, and a clip id met again
        (the first one in train, val, test order and sorted folder order is kept).
        """
        if split_csv not in (None, ""):
            raise ValueError(f"Kinetics-Sounds uses its split folders; split_csv={split_csv!r} is not supported")
        self.classes = get_class_list(class_list)
        root = Path(root)
        _check_root(root)
        found, skips = _list_clips(root, self.classes, class_list)
        if not found:
            raise DatasetLayoutError(f"{root}: no Kinetics-Sounds clip found ({len(skips)} files or folders skipped)")
        clips = _hold_out_val(found, val_fraction, split_seed)
        return sorted(clips, key=lambda c: c.clip_id), sorted(skips, key=lambda k: (k.clip_id, k.path))


def _check_root(root: Path) -> None:
    """Raise DatasetLayoutError naming the missing root or split folder."""
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
    for split in REQUIRED_SPLITS:
        if not (root / split).is_dir():
            raise DatasetLayoutError(f"{root / split}: expected split folder is missing")


def _list_clips(root: Path, classes: tuple[str, ...], list_name: str) -> tuple[list[Clip], list[Skip]]:
    """Every well-formed, first-seen clip under the split folders, plus the Skips."""
    clips: list[Clip] = []
    skips: list[Skip] = []
    seen: dict[str, Path] = {}  # clip id -> file kept
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        for folder in sorted((root / split).iterdir()):
            name = folder_class(folder.name)
            if not folder.is_dir():
                skips.append(Skip(folder.stem, str(folder), "file outside a class folder"))
            elif name not in classes:
                count = sum(1 for _ in folder.iterdir())
                reason = f"class folder not in class list {list_name!r} ({count} entries)"
                skips.append(Skip(folder.name, str(folder), reason))
            else:
                _add_folder(folder, split, classes.index(name), seen, clips, skips)
    return clips, skips


def _add_folder(folder: Path, split: str, label: int, seen: dict[str, Path], clips: list[Clip], skips: list[Skip]) -> None:
    """Append the usable clips of one class folder to ``clips`` and the others to ``skips``."""
    for path in sorted(folder.iterdir()):
        reason = _file_problem(path, seen)
        if reason:
            skips.append(Skip(path.stem, str(path), reason))
            continue
        seen[path.stem] = path
        clips.append(Clip(path.stem, label, split, {"video": path}))


def _file_problem(path: Path, seen: dict[str, Path]) -> str | None:
    """Why ``path`` is not a usable clip (None if it is)."""
    if path.suffix.lower() != VIDEO_EXT or not path.is_file():
        return f"unexpected entry (not a *{VIDEO_EXT} file)"
    if not _NAME_RE.match(path.stem):
        return f"file name {path.stem!r} does not match <youtube_id:11>_<start>_<end>"
    if path.stem in seen:
        return f"duplicate clip id: {seen[path.stem]} is kept"
    return None


def _hold_out_val(clips: list[Clip], fraction: float, seed: int) -> list[Clip]:
    """If no clip is in val, move a stratified, seeded ``fraction`` of train to val."""
    if any(c.split == "val" for c in clips):
        return clips
    train = sorted((c for c in clips if c.split == "train"), key=lambda c: c.clip_id)
    held = stratified_holdout([c.clip_id for c in train], [c.label for c in train], fraction, seed)
    return [Clip(c.clip_id, c.label, "val", c.paths) if c.clip_id in held else c for c in clips]
