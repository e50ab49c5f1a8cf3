"""Dataset records (Clip, Skip), the adapter interface, the registry and split helpers."""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmbalance.registry import Registry

__all__ = [
    "SPLITS",
    "Clip",
    "DatasetAdapter",
    "DatasetLayoutError",
    "Skip",
    "get_dataset",
    "list_datasets",
    "read_split_csv",
    "register_dataset",
    "splits_from_csv",
    "stratified_holdout",
]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Clip:
    """One usable example: a stable id, its label, its split and one file per source."""

    clip_id: str
    label: int
    split: str  # "train" | "val" | "test"
    paths: dict[str, Path]  # source name -> file, e.g. {"audio": ..., "video": ...}


@dataclass(frozen=True)
class Skip:
    """A file or listed id that was not turned into a Clip, and why (never a silent drop)."""

    clip_id: str
    path: str
    reason: str


class DatasetLayoutError(ValueError):
    """The dataset on disk is not usable at all; the message names the offending path."""


# What a modality's stored array is; the training loader batches each kind its own way:
#   "spectrogram": float [F, T]            → [B, 1, F, T]
#   "frames":      uint8 [T, H, W, C]      → n frames picked at load time → [B, n, C, H, W]
#   "sequence":    float [L, D] (L varies) → padded [B, Lmax, D] with a padding mask
KINDS = ("spectrogram", "frames", "sequence")


class DatasetAdapter:
    """Turns a dataset's native layout into sorted Clips plus Skips, and one Clip into arrays.

    ``kinds`` maps each modality to one of ``KINDS``; ``frames_per_clip`` is how many stored
    frames a frames modality feeds the model per clip (the papers' choice for the dataset).
    """

    name: str = ""
    classes: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    kinds: dict[str, str] = {}
    frames_per_clip: int = 1
    # modality -> {offset, scale}: stored uint8 codes map back to values as (code - offset) * scale
    dequantize: dict = {}
    # event localisation: a clip is this many equal segments, each with its own label
    # (``targets``); 0 for clip classification, where the clip's one label is the target
    segments: int = 0

    def targets(self, clip: Clip) -> np.ndarray | None:
        """Per-segment labels [segments] int64 of a localisation dataset (stored beside the
        clip's label in its shard sample); None for clip classification (the default)."""
        return None

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """Decode one clip into ``{modality: array}``; raises ``MediaError`` naming the file.

        ``recipe`` is the ``prepare.audio`` params merged with ``datasets.<name>``.
        """
        raise NotImplementedError

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        test_fraction: float,
        val_fraction: float,
        split_seed: int,
    ) -> tuple[list[Clip], list[Skip]]:
        """Return (clips sorted by clip_id, skips)."""
        raise NotImplementedError


DATASETS: Registry = Registry("dataset")


def register_dataset(name: str) -> Callable[[type[DatasetAdapter]], type[DatasetAdapter]]:
    """Class decorator registering an adapter under ``name`` (duplicates raise ValueError)."""
    return DATASETS.register(name)


def get_dataset(name: str) -> DatasetAdapter:
    """Instantiate the adapter registered as ``name`` (unknown names raise KeyError listing choices)."""
    return DATASETS.get(name)()


def list_datasets() -> list[str]:
    """Sorted names of the registered datasets."""
    return DATASETS.names()


def stratified_holdout(
    ids: Sequence[str], labels: Sequence[int], fraction: float, seed: int
) -> set[str]:
    """Pick round(fraction * len(ids)) ids, stratified by label, deterministic for ``seed``.

    Per-class quotas come from the largest-remainder rule (ties go to the lower label), so the
    total is exact and every class gets its proportional share; within a class the ids are
    sorted and then permuted by a generator seeded with (seed, label). Works for tiny sets
    where sklearn's train_test_split refuses fewer held-out items than classes.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    by_class: dict[int, list[str]] = {}
    for clip_id, label in zip(ids, labels, strict=True):
        by_class.setdefault(int(label), []).append(clip_id)
    classes = sorted(by_class)
    exact = np.array([fraction * len(by_class[c]) for c in classes])
    quota = np.floor(exact).astype(int)
    missing = round(fraction * len(ids)) - int(quota.sum())
    # stable sort: on equal remainders the lower label gets the extra item
    for i in np.argsort(-(exact - quota), kind="stable")[:missing]:
        quota[i] += 1
    held: set[str] = set()
    for c, k in zip(classes, quota, strict=True):
        members = sorted(by_class[c])
        order = np.random.default_rng([seed, c]).permutation(len(members))
        held.update(members[j] for j in order[:k])
    return held


def read_split_csv(path: Path) -> dict[str, str]:
    """Read a ``clip_id,split`` CSV (BOM and CRLF tolerated) -> {clip_id: split}.

    Raises DatasetLayoutError naming the file for a wrong header, an unknown split name or a
    clip id listed twice with different splits.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: split file does not exist")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header != ["clip_id", "split"]:
            raise DatasetLayoutError(f"{path}: header must be 'clip_id,split', got {header}")
        splits: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2 or row[1].strip() not in SPLITS:
                raise DatasetLayoutError(
                    f"{path}: line {line} must be '<clip_id>,<train|val|test>', got {row}"
                )
            clip_id, split = row[0].strip(), row[1].strip()
            if splits.setdefault(clip_id, split) != split:
                raise DatasetLayoutError(
                    f"{path}: line {line}: {clip_id} listed as both {splits[clip_id]} and {split}"
                )
    return splits


def splits_from_csv(
    split_csv: Path, found: Mapping[str, object], missing: str, unlisted: str = "not in split file", already: Collection[str] = ()
) -> tuple[dict[str, str], list[Skip]]:
    """Splits of the usable ids from a ``clip_id,split`` file, and a Skip for each mismatch.

    ``found`` maps each usable id to the file it comes from (in the adapter's order, kept in the
    result). An id the split file lists but ``found`` lacks gets Skip(id, split_csv, ``missing``),
    unless it is in ``already`` (skipped before for a media problem); a usable id the file omits
    gets Skip(id, its file, ``unlisted``). Both skip lists are sorted by id.
    """
    listed = read_split_csv(split_csv)
    skips = [Skip(c, str(split_csv), missing) for c in sorted(listed.keys() - found.keys() - set(already))]
    skips += [Skip(c, str(found[c]), unlisted) for c in sorted(found.keys() - listed.keys())]
    return {c: listed[c] for c in found if c in listed}, skips
