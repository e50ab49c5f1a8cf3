"""CMU-MOSI adapter: one pickled feature file ``<root>/<pickle>`` with the official splits.

Two widely used pickle layouts are read, detected by their keys:

- MulT / MultiBench ``mosi_data.pkl`` (word-aligned) or ``mosi_data_noalign.pkl``:
  ``{train, valid, test}`` → ``text`` [N, L, 300] GloVe, ``audio`` [N, L, 5 | 74] COVAREP,
  ``vision`` [N, L, 20 | 35] Facet, ``labels`` [N, 1, 1] in [-3, 3], ``id`` (optional);
- MMSA ``aligned_50.pkl`` / ``unaligned_50.pkl``: the same modality keys plus
  ``regression_labels`` [N] and ``id``, with ``audio_lengths`` / ``vision_lengths`` in the
  unaligned file (and ``text_bert`` [N, 3, L] token ids / mask / segments with BERT text).

Labels: binary sentiment, negative (< 0) = 0, positive (> 0) = 1. Utterances labelled exactly 0
are dropped by default (the MulT / MultiBench "non-0" accuracy) and listed as skips;
``zero_label: positive`` counts them as positive instead (MMSA's "Has0" convention, >= 0).

Sequences are stored zero-padded to a fixed length (MulT pads on the left, MMSA on the right):
all-zero steps at both ends are removed, or the ``*_lengths`` field gives the true length. A
sequence that is zero everywhere keeps one zero step. ``-inf`` audio values become 0 (as the
MulT and MMSA loaders do); any other non-finite value makes the clip a listed skip.
"""

from __future__ import annotations

import functools
import pickle as pickle_module  # `pickle` is also the params key naming the file
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
from mmbalance.media import MediaError

__all__ = ["CLASSES", "MODALITIES", "Mosi", "binary_label", "clip_ids", "load_pickle", "true_length"]

CLASSES = ("negative", "positive")
MODALITIES = ("text", "audio", "vision")
SPLIT_KEYS = {"train": "train", "valid": "val", "test": "test"}  # pickle key → mmbalance split
ZERO_LABEL = ("drop", "positive")
NEUTRAL_REASON = "neutral label (0) dropped"
LABEL_RANGE = 3.0  # sentiment is annotated on [-3, 3]; a value outside is a broken label
# label key and optional per-modality length keys of each layout
LAYOUTS = {
    "mult": {"labels": "labels", "lengths": {}},
    "mmsa": {"labels": "regression_labels", "lengths": {"audio": "audio_lengths", "vision": "vision_lengths"}},
}
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")  # a shard key may not hold '.', '/' or spaces


@register_dataset("mosi")
class Mosi(DatasetAdapter):
    """Adapter for the pickled CMU-MOSI features (MulT or MMSA layout)."""

    name = "mosi"
    classes = CLASSES
    modalities = MODALITIES
    kinds = {m: "sequence" for m in MODALITIES}
    frames_per_clip = 1  # unused: no frames modality

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        test_fraction: float = 0.0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        pickle: str = "mosi_data.pkl",
        zero_label: str = "drop",
    ) -> tuple[list[Clip], list[Skip]]:
        """Read ``root/<pickle>``: one Clip per utterance with a usable label, in its file split.

        ``zero_label``: ``drop`` (default, listed as skips) or ``positive``. ``split_csv``
        (``clip_id,split``) overrides the file's splits. ``test_fraction`` is unused (the file
        holds the official test split); ``val_fraction`` / ``split_seed`` hold out a stratified
        val set from train only when the file has no ``valid`` split.
        """
        if zero_label not in ZERO_LABEL:
            raise ValueError(f"datasets.mosi zero_label must be one of {ZERO_LABEL}, got {zero_label!r}")
        path = _pickle_path(root, pickle)
        data = load_pickle(path)
        ids, labels = clip_ids(data, path), {}
        splits, skips = {}, []
        for key, split in SPLIT_KEYS.items():
            values = _labels(data, key, path) if key in data else []
            for row, value in enumerate(values):
                clip_id = ids[key][row]
                label = binary_label(value, zero_label)
                if label is None or abs(value) > LABEL_RANGE:
                    skips.append(Skip(clip_id, str(path), _label_problem(value)))
                    continue
                labels[clip_id], splits[clip_id] = label, split
        if split_csv not in (None, ""):  # "" = no split file (params.yaml cannot say None)
            splits, csv_skips = splits_from_csv(Path(split_csv), dict.fromkeys(splits, path),
                                                f"listed in split file but not an utterance of {path.name}",
                                                already={k.clip_id for k in skips})
            skips += csv_skips
        splits = _hold_out_val(splits, labels, val_fraction, split_seed)
        clips = [Clip(c, labels[c], splits[c], {"features": path}) for c in sorted(splits)]
        if not clips:
            raise DatasetLayoutError(f"{path}: no utterance with a usable label ({len(skips)} skipped)")
        return clips, sorted(skips, key=lambda k: (k.clip_id, k.path))

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """{"text": [L_t, 300], "audio": [L_a, D_a], "vision": [L_v, D_v]} float32, padding removed."""
        path = Path(clip.paths["features"])
        try:
            data, key, row = load_pickle(path), *_row_index(path)[clip.clip_id]
        except OSError as err:
            raise MediaError(f"{path}: cannot be read ({err.strerror or err})") from None
        except KeyError:
            raise MediaError(f"{path}: utterance {clip.clip_id!r} is not in the file (changed since scan?)") from None
        split = data[key]
        out = {}
        for m in MODALITIES:
            x = np.asarray(split[m][row], dtype=np.float32)
            if m == "audio":  # COVAREP gives -inf for some frames; the MulT and MMSA loaders zero them
                x = np.where(x == -np.inf, np.float32(0.0), x)
            if not np.isfinite(x).all():
                raise MediaError(f"{path}: {key}[{row}] ({clip.clip_id}) has non-finite {m} features")
            out[m] = _trim(x, _given_length(split, m, row, x.shape[0]))
        return out


# --- the file -----------------------------------------------------------------------------


def _pickle_path(root: Path, name: str) -> Path:
    """``root/name``, with errors naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
    path = root / name
    if not path.is_file():
        found = sorted(p.name for p in root.glob("*.pkl"))
        raise DatasetLayoutError(f"{path}: MOSI feature pickle not found (pickles in {root}: {found or 'none'})")
    return path


def _stamp(path: Path) -> tuple[str, int, int]:
    """Cache key of a file: its path, modification time and size (a rewritten file is re-read)."""
    st = Path(path).stat()
    return str(path), st.st_mtime_ns, st.st_size


def load_pickle(path: Path) -> dict:
    """The unpickled feature file, checked against the known layouts; read once per process
    (the cache is keyed by path, modification time and size).

    Raises DatasetLayoutError naming the file and the missing keys.
    """
    return _load(*_stamp(path))


@functools.lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int, size: int) -> dict:
    """``load_pickle`` behind the cache (the stamp arguments only key it)."""
    try:
        with open(path, "rb") as fh:
            data = pickle_module.load(fh)
    except Exception as err:  # unpickling can fail in many ways; name the file instead
        raise DatasetLayoutError(f"{path}: cannot be read as a pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise DatasetLayoutError(f"{path}: expected a dict of splits, got {type(data).__name__}")
    missing = [k for k in ("train", "test") if k not in data]
    if missing:
        raise DatasetLayoutError(f"{path}: missing split keys {missing} (has {sorted(map(str, data))})")
    for key in SPLIT_KEYS:
        if key in data:
            _check_split(data[key], key, path)
    return data


def detect_layout(split: dict) -> str | None:
    """"mult" or "mmsa" from a split's keys (None: neither)."""
    keys = set(split)
    if not set(MODALITIES) <= keys:
        return None
    if "regression_labels" in keys:
        return "mmsa"
    if "labels" in keys:
        return "mult"
    return None


def _check_split(split, key: str, path: Path) -> None:
    """Known layout, equal utterance counts per array; DatasetLayoutError otherwise."""
    if not isinstance(split, dict):
        raise DatasetLayoutError(f"{path}: split {key!r} is a {type(split).__name__}, not a dict")
    layout = detect_layout(split)
    if layout is None:
        has_label = "labels" in split or "regression_labels" in split
        missing = [k for k in MODALITIES if k not in split] + ([] if has_label else ["labels | regression_labels"])
        raise DatasetLayoutError(
            f"{path}: split {key!r} is neither the MulT nor the MMSA MOSI layout: missing keys {missing}"
            f" (has {sorted(map(str, split))})"
        )
    counts = {k: len(split[k]) for k in (*MODALITIES, LAYOUTS[layout]["labels"], "id") if k in split}
    for m in MODALITIES:
        if np.ndim(split[m]) != 3:
            raise DatasetLayoutError(f"{path}: {key}/{m} must be [N, L, D], got shape {np.shape(split[m])}")
    if len(set(counts.values())) != 1:
        raise DatasetLayoutError(f"{path}: split {key!r} arrays disagree on the utterance count: {counts}")


def _labels(data: dict, key: str, path: Path) -> list[float]:
    """Continuous sentiment per utterance of one split ([N, 1, 1] or [N] → [N] floats)."""
    split = data[key]
    values = np.asarray(split[LAYOUTS[detect_layout(split)]["labels"]], dtype=np.float64)
    if values.size != len(split["text"]):
        raise DatasetLayoutError(f"{path}: {key} labels have shape {values.shape}; expected one value per utterance")
    return values.reshape(-1).tolist()


def _label_problem(value: float) -> str:
    """Skip reason for a label ``binary_label`` refuses or that lies outside [-3, 3]."""
    if value == 0:
        return NEUTRAL_REASON
    if not np.isfinite(value):
        return f"label {value!r} is not a finite number"
    return f"label {value!r} is outside the sentiment range [-{LABEL_RANGE:g}, {LABEL_RANGE:g}]"


def binary_label(value: float, zero_label: str = "drop") -> int | None:
    """0 for negative (< 0), 1 for positive (> 0); 0.0 → None ("drop") or 1 ("positive"); NaN → None."""
    if not np.isfinite(value):
        return None
    if value == 0:
        return 1 if zero_label == "positive" else None
    return int(value > 0)


# --- clip ids -----------------------------------------------------------------------------


def _id_text(raw) -> str:
    """One ``id`` entry as text: bytes decoded, a MulT row (video, segment, …) joined with '_'."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    if isinstance(raw, (list, tuple, np.ndarray)):
        return "_".join(_id_text(r) for r in np.asarray(raw, dtype=object).reshape(-1))
    return str(raw)


def clip_ids(data: dict, source: Path | str = "MOSI file") -> dict[str, list[str]]:
    """Unique, stable clip ids per pickle split key.

    The file's ``id`` entry, made safe for a shard key: every run of characters other than
    letters, digits and '-' (underscores included) becomes one '_' (MMSA's ``vid$_$3`` → ``vid_3``,
    MulT's ``[b'vid', b'3', b'1.5']`` → ``vid_3_1_5``), so a cleaned id never holds '__'. An id
    that occurs more than once in the file, or a split without ``id``, is made unique by its split
    and row: ``<id>__<split>_<row:05d>`` (``<split>_<row:05d>`` without an id); the '__' keeps
    these apart from every cleaned id. The result depends only on the file's content.
    """
    base = {}
    for key in SPLIT_KEYS:
        if key not in data:
            continue
        n = len(data[key]["text"])
        raw = data[key].get("id")
        base[key] = [(_UNSAFE.sub("_", _id_text(raw[i])).strip("_") if raw is not None else "") for i in range(n)]
    seen: dict[str, int] = {}
    for names in base.values():
        for name in names:
            seen[name] = seen.get(name, 0) + 1
    out = {
        key: [
            name if name and seen[name] == 1 else f"{name}__{key}_{row:05d}".lstrip("_")
            for row, name in enumerate(names)
        ]
        for key, names in base.items()
    }
    flat = [c for names in out.values() for c in names]
    if len(set(flat)) != len(flat):  # only if a file id already looks like '<id>__<split>_<row>'
        raise DatasetLayoutError(f"{source}: ids cannot be made unique by split and row; rename the file's ids")
    return out


def _row_index(path: Path) -> dict[str, tuple[str, int]]:
    """clip id → (pickle split key, row), for ``extract`` (once per process and file version)."""
    return _rows(*_stamp(path))


@functools.lru_cache(maxsize=2)
def _rows(path: str, mtime_ns: int, size: int) -> dict[str, tuple[str, int]]:
    ids = clip_ids(_load(path, mtime_ns, size), path)
    return {c: (key, row) for key, names in ids.items() for row, c in enumerate(names)}


# --- sequences ----------------------------------------------------------------------------


def _given_length(split: dict, modality: str, row: int, full: int) -> int | None:
    """The layout's stored length of one sequence (MMSA ``*_lengths``; ``text_bert`` mask), or None."""
    key = LAYOUTS[detect_layout(split)]["lengths"].get(modality)
    if key is not None and key in split:
        return int(np.clip(int(split[key][row]), 1, full))
    bert = split.get("text_bert")
    if modality == "text" and bert is not None and np.shape(bert)[1:] == (3, full):
        return int(np.clip(int(np.asarray(bert[row][1]).sum()), 1, full))  # row 1 = attention mask
    return None


def true_length(x: np.ndarray) -> tuple[int, int]:
    """(start, stop) of x [L, D] without all-zero steps at either end; (0, 1) if all zero."""
    real = np.flatnonzero(np.any(x != 0, axis=1))
    if real.size == 0:
        return 0, 1
    return int(real[0]), int(real[-1]) + 1


def _trim(x: np.ndarray, length: int | None) -> np.ndarray:
    """x without its padding. A given ``length`` is taken at the end when the steps before it
    are all zero (left padding), else at the start; otherwise zero steps at both ends go."""
    if length is None:
        start, stop = true_length(x)
        return np.ascontiguousarray(x[start:stop])
    head = x.shape[0] - length
    if head > 0 and not np.any(x[:head]):
        return np.ascontiguousarray(x[head:])
    return np.ascontiguousarray(x[:length])


# --- splits -------------------------------------------------------------------------------


def _hold_out_val(splits: dict[str, str], labels: dict[str, int], fraction: float, seed: int) -> dict[str, str]:
    """If no utterance is in val (a file without ``valid``), move a stratified share of train there."""
    if "val" in splits.values() or fraction <= 0:
        return splits
    train = sorted(c for c, s in splits.items() if s == "train")
    val = stratified_holdout(train, [labels[c] for c in train], fraction, seed)
    return {c: ("val" if c in val else s) for c, s in splits.items()}
