"""CREMA-D adapter: ``<root>/AudioWAV/<id>.wav`` + ``<root>/VideoFlash/<id>.flv``.

Clip id = ``<actor>_<sentence>_<EMO>_<level>``, e.g. ``1001_DFA_ANG_XX``. Labels follow the
OGM-GE code (NEU0 HAP1 SAD2 FEA3 DIS4 ANG5).
"""

from __future__ import annotations

import re
from pathlib import Path

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
from mmbalance.media.audio import audio_features
from mmbalance.media.video import read_frames

__all__ = ["CLASSES", "LEVELS", "SENTENCES", "CremaD", "parse_clip_id"]

CLASSES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = ("LO", "MD", "HI", "XX")
AUDIO_DIR, VIDEO_DIR = "AudioWAV", "VideoFlash"
AUDIO_EXT, VIDEO_EXT = ".wav", ".flv"

_ID_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def parse_clip_id(stem: str) -> tuple[str, str, str, str]:
    """Split a CREMA-D stem into (actor, sentence, emotion, level).

    Raises ValueError with the reason for a malformed stem, an unknown sentence code, an
    unknown emotion code or an unknown intensity level.
    """
    match = _ID_RE.match(stem)
    if match is None:
        raise ValueError(
            f"file name {stem!r} does not match <actor:4 digits>_<SENTENCE>_<EMO>_<LEVEL>"
        )
    actor, sentence, emotion, level = match.groups()
    if sentence not in SENTENCES:
        raise ValueError(f"unknown sentence code {sentence!r} in {stem!r} (expected {SENTENCES})")
    if emotion not in CLASSES:
        raise ValueError(f"unknown emotion code {emotion!r} in {stem!r} (expected {CLASSES})")
    if level not in LEVELS:
        raise ValueError(f"unknown intensity level {level!r} in {stem!r} (expected {LEVELS})")
    return actor, sentence, emotion, level


@register_dataset("cremad")
class CremaD(DatasetAdapter):
    """Adapter for the native CREMA-D layout (audio .wav + video .flv per clip)."""

    name = "cremad"
    classes = CLASSES
    modalities = ("audio", "visual")
    kinds = {"audio": "spectrogram", "visual": "frames"}
    frames_per_clip = 1  # one random frame per clip (OGM-GE, ARL, GMM-AL)

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """Audio → 3-s log-spectrogram [257, 299]; video → 1-fps frames [T, H, W, 3] uint8."""
        return {
            "audio": audio_features(clip.paths["audio"], recipe),
            "visual": read_frames(clip.paths["video"], fps=recipe["frame_fps"], size=recipe["frame_size"]),
        }

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        test_fraction: float,
        val_fraction: float,
        split_seed: int,
    ) -> tuple[list[Clip], list[Skip]]:
        """Pair audio and video files, label them, assign splits; return (clips, skips).

        split_csv: ``clip_id,split`` file (None or "" = seeded stratified split instead).
        """
        root = Path(root)
        audio, video, skips = _pair_media(root)
        stems = sorted(audio.keys() & video.keys())
        labels = {s: CLASSES.index(parse_clip_id(s)[2]) for s in stems}
        if split_csv not in (None, ""):  # "" = no split file (params.yaml cannot say None)
            splits, split_skips = splits_from_csv(Path(split_csv), {s: audio[s] for s in labels}, "listed in split file but no media found",
                                                  already={k.clip_id for k in skips})
            skips += split_skips
        else:
            splits = _random_splits(labels, test_fraction, split_seed)
        splits = _hold_out_val(splits, labels, val_fraction, split_seed)
        clips = [
            Clip(s, labels[s], splits[s], {"audio": audio[s], "video": video[s]})
            for s in stems
            if s in splits
        ]
        return clips, sorted(skips, key=lambda k: (k.clip_id, k.path))


def _pair_media(root: Path) -> tuple[dict[str, Path], dict[str, Path], list[Skip]]:
    """List both media folders; Skip files without a partner; raise if no clip is complete."""
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
    audio, skips = _list_media(root / AUDIO_DIR, AUDIO_EXT)
    video, video_skips = _list_media(root / VIDEO_DIR, VIDEO_EXT)
    skips += video_skips
    for stem in sorted(audio.keys() - video.keys()):
        expected = root / VIDEO_DIR / f"{stem}{VIDEO_EXT}"
        skips.append(Skip(stem, str(audio[stem]), f"video missing: expected {expected}"))
    for stem in sorted(video.keys() - audio.keys()):
        expected = root / AUDIO_DIR / f"{stem}{AUDIO_EXT}"
        skips.append(Skip(stem, str(video[stem]), f"audio missing: expected {expected}"))
    if not audio.keys() & video.keys():
        raise DatasetLayoutError(
            f"{root}: no CREMA-D clip with both {AUDIO_DIR}/<id>{AUDIO_EXT} and "
            f"{VIDEO_DIR}/<id>{VIDEO_EXT} ({len(skips)} files skipped)"
        )
    return audio, video, skips


def _list_media(folder: Path, ext: str) -> tuple[dict[str, Path], list[Skip]]:
    """Map stem -> file for the well-named ``ext`` files in ``folder``; Skip the others."""
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: expected folder is missing from the CREMA-D root")
    found: dict[str, Path] = {}
    skips: list[Skip] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() != ext:
            skips.append(Skip(path.stem, str(path), f"unexpected file (not *{ext})"))
            continue
        try:
            parse_clip_id(path.stem)
        except ValueError as err:
            skips.append(Skip(path.stem, str(path), str(err)))
            continue
        if path.stem in found:  # e.g. X.wav and X.WAV: same clip id twice
            skips.append(Skip(path.stem, str(path), f"duplicate clip id: {found[path.stem]} is kept"))
            continue
        found[path.stem] = path
    return found, skips


def _random_splits(labels: dict[str, int], test_fraction: float, seed: int) -> dict[str, str]:
    """Stratified, seeded test hold-out; everything else is train."""
    test = stratified_holdout(list(labels), list(labels.values()), test_fraction, seed)
    return {s: ("test" if s in test else "train") for s in labels}


def _hold_out_val(
    splits: dict[str, str], labels: dict[str, int], val_fraction: float, seed: int
) -> dict[str, str]:
    """If no clip is in val, move a stratified, seeded val_fraction of train to val."""
    if "val" in splits.values():
        return splits
    train = sorted(s for s, split in splits.items() if split == "train")
    val = stratified_holdout(train, [labels[s] for s in train], val_fraction, seed)
    return {s: ("val" if s in val else split) for s, split in splits.items()}
