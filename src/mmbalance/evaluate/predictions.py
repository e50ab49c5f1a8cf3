"""Per-sample test predictions of one trained seed: the input of every paired comparison.

One file per seed, ``predictions/seed<k>.npz``, rows sorted by sample key so two runs on the
same split pair up row by row. Arrays:

- ``keys`` [N] str: the shard sample keys (clip ids), or ``<clip>/<segment>`` for the segment
  rows of an event-localisation split (``segment_keys``);
- ``labels`` [N] int64;
- ``logits`` [N, C] float32: the method's test-time prediction (what the accuracy scores);
- ``probe_<modality>`` [N, C] float16: each modality's own logits (the probe columns).

The archive is written with fixed member timestamps, so the same predictions give the same
bytes (DVC hashes stay stable across reruns on one machine).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip's earliest timestamp: no wall-clock time in the bytes
PROBE_PREFIX = "probe_"
SEGMENT_KEY = re.compile(r"^(.+)/\d+$")  # "<clip>/<segment>", as ``segment_keys`` writes it


def segment_keys(keys: list[str], segments: int) -> list[str]:
    """One key per prediction row: the clip keys, or for event localisation (``segments`` S > 0)
    ``<clip>/<segment>`` for each of a clip's S rows, clip-major like the batch's labels."""
    if not segments:
        return keys
    return [f"{k}/{s:02d}" for k in keys for s in range(segments)]


def segments_per_clip(keys) -> int:
    """Rows per clip of sorted prediction keys written by ``segment_keys`` (the same count per
    clip, each clip's rows consecutive); 0 when the rows are clips."""
    found = [SEGMENT_KEY.match(str(k)) for k in keys]
    if not found or not all(found):
        return 0
    clips = [m.group(1) for m in found]
    distinct = list(dict.fromkeys(clips))
    per_clip = len(clips) // len(distinct)
    if per_clip * len(distinct) != len(clips) or clips[::per_clip] != distinct:
        return 0  # not whole, equal, consecutive groups: rows stay the units
    return per_clip


def reference_run(reference: str, runs) -> str:
    """The run a dataset's others are timed (costs) and compared (leaderboard) against:
    ``reference`` (Concat) itself, or on a dataset without it, its first
    ``<reference>__<variant>`` run (AVE localisation: ``concat__avga``)."""
    names = sorted(runs)
    if reference in names:
        return reference
    return next((n for n in names if n.startswith(f"{reference}__")), reference)


@dataclass
class Predictions:
    """One seed's test predictions (rows sorted by key)."""

    keys: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    probes: dict[str, np.ndarray] = field(default_factory=dict)

    def correct(self) -> np.ndarray:
        """[N] bool: the fused prediction equals the label."""
        return self.logits.argmax(axis=1) == self.labels

    def probe_correct(self, modality: str) -> np.ndarray:
        """[N] bool: the modality's own logits predict the label."""
        return self.probes[modality].argmax(axis=1) == self.labels


def from_trainer(preds: dict) -> Predictions:
    """The ``Trainer.predictions[split]`` dict (keys, labels, logits, probes) sorted by key."""
    keys = np.asarray(preds["keys"], dtype=str)
    order = np.argsort(keys, kind="stable")
    return Predictions(keys=keys[order], labels=np.asarray(preds["labels"], dtype=np.int64)[order],
                       logits=np.asarray(preds["logits"], dtype=np.float32)[order],
                       probes={m: np.asarray(v)[order].astype(np.float16) for m, v in preds["probes"].items()})


def save_predictions(path: Path, preds: Predictions) -> None:
    """Write ``preds`` as an uncompressed-member-order, deflated ``.npz`` with fixed timestamps."""
    arrays = {"keys": preds.keys, "labels": preds.labels, "logits": preds.logits,
              **{f"{PROBE_PREFIX}{m}": v for m, v in sorted(preds.probes.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    tmp.replace(path)


def load_predictions(path: Path) -> Predictions:
    """Read a file written by :func:`save_predictions`; a missing array is an error naming the file."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("keys", "labels", "logits") if k not in z.files]
        if missing:
            raise ValueError(f"{path}: not a predictions file (missing {', '.join(missing)})")
        probes = {k[len(PROBE_PREFIX):]: z[k].astype(np.float32) for k in z.files if k.startswith(PROBE_PREFIX)}
        return Predictions(keys=z["keys"].astype(str), labels=z["labels"], logits=z["logits"], probes=probes)


def seed_files(folder: Path) -> dict[int, Path]:
    """``{seed: path}`` of the ``seed<k>.npz`` files in a run's ``predictions`` folder."""
    out = {}
    for p in sorted(Path(folder).glob("seed*.npz")):
        tail = p.stem[len("seed"):]
        if tail.lstrip("-").isdigit():
            out[int(tail)] = p
    return out
