"""IEMOCAP adapter: the official release ``IEMOCAP_full_release/Session{1..5}/…``, four classes.

Layout read (as the release unpacks; ``root`` is the folder holding ``Session1`` … ``Session5``)::

    Session<k>/dialog/EmoEvaluation/<dialog>.txt     "[start - end]<TAB><utterance><TAB><code><TAB>[V, A, D]"
    Session<k>/dialog/transcriptions/<dialog>.txt    "<utterance> [start-end]: <words>"
    Session<k>/dialog/avi/DivX/<dialog>.avi          the dialog's video (both actors, one file)
    Session<k>/sentences/wav/<dialog>/<utterance>.wav one file per utterance

Sources of the facts (the IPRM paper, IJCAI 2025 §5.1, follows MLA for IEMOCAP; IPRM's released
code, njustkmg/IJCAI25-IPRM@0bb457f, reads NVGesture only and has no IEMOCAP loader):

- classes: MLA (Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation@ab6c184)
  ``data/stat_iemo.txt`` lists Neutral, Angry, Sad, Happy and ``dataset/dataset.py``
  (``Modal3Dataset``) numbers them in sorted order: Angry 0, Happy 1, Neutral 2, Sad 3. Its split
  lists hold 5,531 × 80 % utterances with 4,425 = 80 % of neu 1,708 + ang 1,103 + sad 1,084 +
  hap 595 + exc 1,041, so Happy is ``hap`` and ``exc`` merged (the usual four-class IEMOCAP).
  Every other code (fru, sur, fea, dis, oth, xxx) is a listed skip.
- split: MLA ``data/gen_iemo_txt.py`` shuffles the four-class utterances and cuts 60 / 20 / 20 %;
  ``data/my_train_iemo.txt`` (3,318) and ``data/my_test_iemo.txt`` (1,107) are in the repository
  (the IPRM paper's 3,318 / 1,107), the dev list (1,106) is not. ``protocol: mla`` (default)
  uses the two lists, stored as package data ``data/iemocap_mla_split.yaml``; a four-class
  utterance in neither list is that dev fifth and goes to val. ``protocol: session`` is the
  speaker-independent alternative: Session ``test_session`` is the test split and a seeded,
  stratified ``val_fraction`` of the rest is val. A ``split_csv`` (``clip_id,split``) replaces both.
- files: MLA reads features it derived from this release (``data/preprocess_iemo.py``): per-
  utterance wav → 128-bin Kaldi fbank; the transcription → BERT tokens (max 256); per-utterance
  mp4 cut from the dialog video → face crops (the face detector is not released) → the middle
  crop (``Modal3Dataset.__getitem__``). None of those intermediate files is distributed, so this
  adapter reads the release itself: audio = the utterance wav through the shared log-spectrogram
  recipe; video = frames of the dialog video inside the utterance's EmoEvaluation time span
  (whole frames, no face crop; ``frames_per_clip`` 1, the middle one at evaluation, as MLA);
  text = the transcription line through ``text_featurizer``.

Text featurizers (``datasets.iemocap.text_featurizer``): ``hashed`` = each lower-cased word or
bracketed non-speech tag (``[laughter]``) → a fixed N(0, 1) vector of ``text_dim`` values seeded
by the token's BLAKE2b hash: deterministic, no download (MLA's BERT tokens need a pretrained
encoder that cannot be fetched here). The dialog video is decoded once per process and dialog
(the clips arrive sorted by utterance id, so a dialog's utterances follow each other).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

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
from mmbalance.media.audio import audio_features
from mmbalance.media.video import read_frames

__all__ = [
    "CLASSES",
    "EMOTION_CODES",
    "Iemocap",
    "UtteranceClip",
    "hashed_embedding",
    "mla_split",
    "parse_evaluation",
    "parse_transcription",
    "tokenize",
]

CLASSES = ("Angry", "Happy", "Neutral", "Sad")  # MLA: sorted(stat_iemo.txt)
EMOTION_CODES = {"ang": "Angry", "hap": "Happy", "exc": "Happy", "neu": "Neutral", "sad": "Sad"}
SESSIONS = tuple(f"Session{k}" for k in range(1, 6))
EVAL_DIR, TEXT_DIR, VIDEO_DIR, WAV_DIR = "dialog/EmoEvaluation", "dialog/transcriptions", "dialog/avi/DivX", "sentences/wav"
VIDEO_EXT, TEXT_EXT, WAV_EXT = ".avi", ".txt", ".wav"
PROTOCOLS = ("mla", "session")
FEATURIZERS = ("hashed",)
MLA_SPLIT = "iemocap_mla_split.yaml"

# "[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]"
_EVAL_RE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\w+)\s+\[[^\]]*\]\s*$")
# "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
_TEXT_RE = re.compile(r"^(\S+)\s+\[[\d.]+-[\d.]+\]:\s?(.*)$")
_UTTERANCE_RE = re.compile(r"^(Ses0[1-5][FM]_\w+)_[FM][A-Z0-9]{3}$")
_TOKEN_RE = re.compile(r"\[[a-z]+\]|[a-z0-9]+(?:'[a-z]+)?")
_FRAME_EPS = 1e-6  # a span starting at 1.9999999 s still holds the frame of second 2


@dataclass(frozen=True)
class UtteranceClip(Clip):
    """A Clip with the utterance's time span in its dialog video, [start_s, end_s)."""

    start_s: float = 0.0
    end_s: float = 0.0


@dataclass(frozen=True)
class _Turn:
    """One EmoEvaluation line: the utterance, its span and emotion code, and where it was read."""

    utterance: str
    start_s: float
    end_s: float
    code: str
    where: str  # "<file>:<line>"


@register_dataset("iemocap")
class Iemocap(DatasetAdapter):
    """Adapter for the official IEMOCAP release (four classes, MLA's split by default)."""

    name = "iemocap"
    classes = CLASSES
    modalities = ("audio", "video", "text")
    kinds = {"audio": "spectrogram", "video": "frames", "text": "sequence"}
    frames_per_clip = 1  # MLA: the middle face crop of the utterance

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """Audio → log-spectrogram [257, T] (``clip_seconds``); video → the dialog's frames at
        ``frame_fps`` inside the utterance span, uint8 [T, H, W, 3]; text → [L, text_dim] float32."""
        return {
            "audio": audio_features(clip.paths["audio"], recipe),
            "video": utterance_frames(clip, float(recipe["frame_fps"]), recipe.get("frame_size")),
            "text": utterance_text(clip, recipe.get("text_featurizer", "hashed"), int(recipe.get("text_dim", 64))),
        }

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        test_fraction: float = 0.0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        protocol: str = "mla",
        test_session: int = 5,
    ) -> tuple[list[Clip], list[Skip]]:
        """Every four-class utterance with its wav, transcription line and dialog video; return
        (clips sorted by utterance id, skips).

        protocol: ``mla`` (MLA's released train / test lists; the rest val) or ``session``
        (Session ``test_session`` test, stratified ``val_fraction`` of the rest val, seeded by
        ``split_seed``). ``split_csv`` (``clip_id,split``) replaces the protocol. test_fraction
        is unused (accepted so every dataset's split block has the same keys).
        """
        if protocol not in PROTOCOLS:
            raise ValueError(f"datasets.iemocap protocol must be one of {PROTOCOLS}, got {protocol!r}")
        root = Path(root)
        found, skips = _scan_sessions(root)
        labels = {u: c.label for u, c in found.items()}
        if split_csv not in (None, ""):  # "" = no split file (params.yaml cannot say None)
            splits, split_skips = splits_from_csv(Path(split_csv), {u: c.paths["audio"] for u, c in found.items()},
                                                  "listed in split file but not a usable utterance")
            skips += split_skips
        elif protocol == "mla":
            splits = _mla_splits(found)
        else:
            splits = _session_splits(labels, test_session, val_fraction, split_seed)
        clips = [_with_split(found[u], splits[u]) for u in sorted(splits)]
        if not clips:
            raise DatasetLayoutError(f"{root}: no usable four-class IEMOCAP utterance ({len(skips)} skipped)")
        return clips, sorted(skips, key=lambda k: (k.clip_id, k.path))


# --- parsing ---------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text without line end) of every line (BOM, CRLF and stray bytes tolerated)."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    return list(enumerate(text.splitlines(), start=1))


def parse_evaluation(path: Path) -> tuple[list[_Turn], list[Skip]]:
    """The utterance lines of one EmoEvaluation file; a ``[...]`` line that is not one is a skip.

    Evaluator lines (``C-E2: …``, ``A-E3: …``), the ``%`` header and blank lines are ignored.
    """
    turns, skips = [], []
    for n, line in _read_lines(path):
        if not line.startswith("["):
            continue
        where = f"{path}:{n}"
        match = _EVAL_RE.match(line.strip())
        if match is None:
            skips.append(Skip(f"{path.stem}:{n}", where, f"not '[start - end] <utterance> <code> [V, A, D]': {line!r}"))
            continue
        start, end, utterance, code = match.groups()
        try:
            start_s, end_s = float(start), float(end)
        except ValueError:
            skips.append(Skip(utterance, where, f"times {start!r} / {end!r} are not numbers"))
            continue
        turns.append(_Turn(utterance, start_s, end_s, code, where))
    return turns, skips


def parse_transcription(path: Path) -> dict[str, str]:
    """utterance id → transcribed words of one transcription file (other lines are ignored)."""
    out: dict[str, str] = {}
    for _, line in _read_lines(path):
        match = _TEXT_RE.match(line.strip())
        if match is not None:
            out.setdefault(match.group(1), match.group(2).strip())
    return out


def tokenize(text: str) -> list[str]:
    """Lower-cased words (with an apostrophe suffix: ``don't``) and bracketed tags (``[laughter]``)."""
    return _TOKEN_RE.findall(text.lower())


# --- the scan --------------------------------------------------------------------------------


def _scan_sessions(root: Path) -> tuple[dict[str, UtteranceClip], list[Skip]]:
    """Split-less clips (split "train") of every usable utterance in the five sessions, and skips."""
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
    present = [s for s in SESSIONS if (root / s).is_dir()]
    if not present:
        raise DatasetLayoutError(f"{root}: none of {', '.join(SESSIONS)} is here (expected the IEMOCAP_full_release folder)")
    found: dict[str, UtteranceClip] = {}
    skips = [Skip(s, str(root / s), "session folder missing") for s in SESSIONS if s not in present]
    for session in present:
        evals = root / session / EVAL_DIR
        if not evals.is_dir():
            raise DatasetLayoutError(f"{evals}: EmoEvaluation folder is missing from {session}")
        for path in sorted(evals.glob(f"*{TEXT_EXT}")):
            _scan_dialog(root / session, path, found, skips)
    return found, skips


def _scan_dialog(session: Path, eval_path: Path, found: dict, skips: list[Skip]) -> None:
    """Add the usable utterances of one dialog to ``found`` and the others to ``skips``."""
    dialog = eval_path.stem
    turns, bad = parse_evaluation(eval_path)
    skips += bad
    text_path = session / TEXT_DIR / f"{dialog}{TEXT_EXT}"
    video = session / VIDEO_DIR / f"{dialog}{VIDEO_EXT}"
    texts = parse_transcription(text_path) if text_path.is_file() else None
    for t in turns:
        problem = _turn_problem(t, dialog, found, texts, text_path, video)
        wav = session / WAV_DIR / dialog / f"{t.utterance}{WAV_EXT}"
        if problem is None and not wav.is_file():
            problem = f"audio missing: expected {wav}"
        if problem is not None:
            skips.append(Skip(t.utterance, t.where, problem))
            continue
        label = CLASSES.index(EMOTION_CODES[t.code])
        paths = {"audio": wav, "video": video, "text": text_path}
        found[t.utterance] = UtteranceClip(t.utterance, label, "train", paths, t.start_s, t.end_s)


def _turn_problem(t: _Turn, dialog: str, found: dict, texts: dict | None, text_path: Path, video: Path) -> str | None:
    """Why one EmoEvaluation line gives no clip (checked in this order), or None."""
    match = _UTTERANCE_RE.match(t.utterance)
    if match is None or match.group(1) != dialog:
        return f"utterance id {t.utterance!r} is not <dialog {dialog}>_<F|M><3 characters>"
    if t.code not in EMOTION_CODES:
        return f"emotion {t.code!r} is not one of the four classes ({', '.join(sorted(EMOTION_CODES))})"
    if t.utterance in found:
        return "listed again; the first line is kept"
    if not 0 <= t.start_s < t.end_s:
        return f"time span [{t.start_s}, {t.end_s}) is empty or negative"
    if texts is None:
        return f"transcription missing: expected {text_path}"
    if t.utterance not in texts:
        return f"no line for the utterance in {text_path}"
    if not video.is_file():
        return f"video missing: expected {video}"
    return None


# --- splits ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def mla_split() -> dict[str, str]:
    """utterance id → "train" | "test" of MLA's released lists (package data)."""
    text = resources.files("mmbalance.datasets").joinpath("data", MLA_SPLIT).read_text(encoding="utf-8")
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return {u: split for split in ("train", "test") for u in data[split]}


def _mla_splits(found: dict[str, UtteranceClip]) -> dict[str, str]:
    """MLA's train / test lists; an utterance in neither is its unreleased dev fifth (val)."""
    listed = mla_split()
    return {u: listed.get(u, "val") for u in found}


def _session_splits(labels: dict[str, int], test_session: int, val_fraction: float, seed: int) -> dict[str, str]:
    """Session ``test_session`` → test; a stratified, seeded ``val_fraction`` of the rest → val."""
    if test_session not in range(1, 6):
        raise ValueError(f"datasets.iemocap test_session must be 1 … 5, got {test_session!r}")
    test = {u for u in labels if u.startswith(f"Ses0{test_session}")}
    rest = sorted(labels.keys() - test)
    val = stratified_holdout(rest, [labels[u] for u in rest], val_fraction, seed)
    return {u: "test" if u in test else "val" if u in val else "train" for u in labels}


def _with_split(clip: UtteranceClip, split: str) -> UtteranceClip:
    return UtteranceClip(clip.clip_id, clip.label, split, clip.paths, clip.start_s, clip.end_s)


# --- decoding --------------------------------------------------------------------------------


def _stamp(path: Path) -> tuple[str, int, int]:
    """Cache key of a file: its path, modification time and size (a rewritten file is re-read)."""
    try:
        st = Path(path).stat()
    except OSError as err:
        raise MediaError(f"{path}: cannot be read ({err.strerror or err})") from None
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=1)
def _dialog_frames(path: str, mtime_ns: int, size: int, fps: float, frame_size) -> np.ndarray:
    """The whole dialog video at ``fps`` (frame i = interval [i/fps, (i+1)/fps)): [T, H, W, 3]."""
    return read_frames(Path(path), fps=fps, size=frame_size)


def span_indices(start_s: float, end_s: float, fps: float) -> range:
    """Stored frames of the span [start_s, end_s): those whose interval starts inside it; a span
    shorter than one interval that holds no interval start gets the frame covering its middle."""
    first = math.ceil(start_s * fps - _FRAME_EPS)
    stop = math.ceil(end_s * fps - _FRAME_EPS)
    if stop <= first:
        middle = math.floor((start_s + end_s) / 2 * fps + _FRAME_EPS)
        return range(middle, middle + 1)
    return range(first, stop)


def utterance_frames(clip: UtteranceClip, fps: float, frame_size) -> np.ndarray:
    """The frames of the clip's span in its dialog video, uint8 [T, H, W, 3]; MediaError naming
    the video when the span lies beyond the frames that decode."""
    video = Path(clip.paths["video"])
    size = tuple(frame_size) if isinstance(frame_size, list) else frame_size
    frames = _dialog_frames(*_stamp(video), fps, size)
    span = span_indices(clip.start_s, clip.end_s, fps)
    if span.start >= frames.shape[0]:
        raise MediaError(f"{video}: utterance {clip.clip_id} at [{clip.start_s:g}, {clip.end_s:g}) s lies beyond "
                         f"the video's {frames.shape[0] / fps:g} s")
    return frames[span.start : min(span.stop, frames.shape[0])]


def hashed_embedding(token: str, dim: int) -> np.ndarray:
    """The fixed N(0, 1) vector [dim] of a token, seeded by its 8-byte BLAKE2b digest (any platform)."""
    seed = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _transcription(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    return parse_transcription(Path(path))


def utterance_text(clip: Clip, featurizer: str, dim: int) -> np.ndarray:
    """The utterance's transcription as [L, dim] float32 (one row per token); MediaError naming
    the transcription file when its line is gone or holds no word."""
    if featurizer not in FEATURIZERS:
        raise ValueError(f"datasets.iemocap text_featurizer must be one of {FEATURIZERS}, got {featurizer!r}")
    path = Path(clip.paths["text"])
    text = _transcription(*_stamp(path)).get(clip.clip_id)
    if text is None:
        raise MediaError(f"{path}: no line for utterance {clip.clip_id} (changed since scan?)")
    tokens = tokenize(text)
    if not tokens:
        raise MediaError(f"{path}: the line of utterance {clip.clip_id} holds no word ({text!r})")
    return np.stack([hashed_embedding(t, dim) for t in tokens])
