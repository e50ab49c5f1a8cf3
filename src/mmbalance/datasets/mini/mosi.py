"""Mini CMU-MOSI: a small synthetic ``mosi_data.pkl`` in the MulT / MultiBench layout.

``{train, valid, test}`` → ``text`` [N, L, 300], ``audio`` [N, L, 5], ``vision`` [N, L, 20]
(float32, word-aligned, zero-padded on the left as MulT's files are), ``labels`` [N, 1, 1]
continuous sentiment in [-3, 3] (multiples of 0.2 like averaged annotator ratings, some exactly
0), ``id`` [N, 3] byte strings (video id, segment, start time). Utterances are grouped in videos
and the videos split 52 / 10 / 31 like MOSI's speaker-independent folds.

Text is the strong modality: a few "sentiment words" per utterance carry the label's sign along
one fixed direction of the 300-d word space, among Gaussian "word" vectors. Audio and vision are
weak: a small per-step shift along a class direction under noise plus a per-video (speaker)
offset, so that joint training leaves their encoders under-trained. A fraction of utterances has
no sentiment words (text uninformative: fused accuracy keeps headroom that the weak modalities
can fill), and a fraction has no audio / vision cue. ``mini_truth.csv`` records the per-utterance
truth; it is not part of the native layout.
"""

from __future__ import annotations

import csv
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmbalance.datasets.mini import register_generator

__all__ = ["PICKLE", "TRUTH_FILE", "generate_mosi"]

PICKLE = "mosi_data.pkl"
TRUTH_FILE = "mini_truth.csv"
SPLIT_VIDEOS = {"train": 52, "valid": 10, "test": 31}  # MOSI's standard folds (93 videos)
_ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))


@dataclass(frozen=True)
class _Recipe:
    """Every knob of one generated file (recorded in the summary)."""

    utterances: int
    seed: int
    seq_len: int
    min_length: int
    text_dim: int
    audio_dim: int
    vision_dim: int
    neutral_fraction: float
    word_std: float
    text_strength: float
    sentiment_words: int
    text_uninformative_fraction: float
    audio_shift: float
    vision_shift: float
    audio_uninformative_fraction: float
    vision_uninformative_fraction: float
    speaker_offset_std: float
    neg_inf_fraction: float


@register_generator("mosi")
def generate_mosi(
    root: Path,
    *,
    utterances: int = 1200,
    seed: int = 0,
    seq_len: int = 50,
    min_length: int = 8,
    text_dim: int = 300,
    audio_dim: int = 5,
    vision_dim: int = 20,
    neutral_fraction: float = 0.04,
    word_std: float = 0.4,
    text_strength: float = 2.0,
    sentiment_words: int = 3,
    text_uninformative_fraction: float = 0.2,
    audio_shift: float = 0.15,
    vision_shift: float = 0.2,
    audio_uninformative_fraction: float = 0.2,
    vision_uninformative_fraction: float = 0.2,
    speaker_offset_std: float = 0.5,
    neg_inf_fraction: float = 0.01,
    show_progress: bool = True,
    workers: int = 1,
) -> dict:
    """Write ``root/mosi_data.pkl`` (+ ``mini_truth.csv``); return a summary dict.

    Each utterance: true length U{min_length..seq_len}, left-padded with zeros to ``seq_len``;
    |label| uniform over {0.2, 0.4, …, 3.0} with a random sign, exactly
    round(neutral_fraction · utterances) labels 0. Intensity c = 0.4 + 0.2·|label| scales every
    cue. Text steps ~ N(0, word_std²); 1..``sentiment_words`` random steps get
    sign·c·text_strength·word_std·√text_dim along a fixed unit direction (none for
    round(text_uninformative_fraction · N) utterances and for label 0). Audio / vision steps ~
    N(0, 1) + a per-video offset N(0, speaker_offset_std²) + sign·c·shift along a fixed unit
    direction (none for their uninformative fractions). round(neg_inf_fraction · N) utterances
    get one ``-inf`` audio value (as COVAREP features in the real file). One generator seeded
    with ``seed`` draws everything in a fixed order and the pickle uses protocol 4, so the file
    is byte-identical for a seed. ``show_progress`` / ``workers`` are accepted for the common
    generator signature; generation is one vectorised pass. A previous mini file (recognised by
    its truth file) is replaced; a real pickle in ``root`` is never overwritten.
    """
    recipe = _Recipe(
        utterances, seed, seq_len, min_length, text_dim, audio_dim, vision_dim, neutral_fraction,
        word_std, text_strength, sentiment_words, text_uninformative_fraction, audio_shift, vision_shift,
        audio_uninformative_fraction, vision_uninformative_fraction, speaker_offset_std, neg_inf_fraction,
    )
    _check(recipe)
    root = Path(root)
    _prepare_root(root)
    rng = np.random.default_rng(seed)
    plan = _plan(rng, recipe)
    arrays = _synthesise(rng, recipe, plan)
    data = _to_splits(plan, arrays)
    tmp = root / f".{PICKLE}.tmp"
    with tmp.open("wb") as fh:
        pickle.dump(data, fh, protocol=4)
    tmp.replace(root / PICKLE)
    _write_truth(root / TRUTH_FILE, plan)
    return _summary(root, recipe, plan)


def _check(r: _Recipe) -> None:
    """Reject settings that cannot produce a valid file (ValueError naming the key)."""
    if r.utterances < 3 * len(SPLIT_VIDEOS):
        raise ValueError(f"utterances must be at least {3 * len(SPLIT_VIDEOS)}, got {r.utterances}")
    if not 1 <= r.min_length <= r.seq_len:
        raise ValueError(f"need 1 <= min_length <= seq_len, got {r.min_length} and {r.seq_len}")
    if not 1 <= r.sentiment_words <= r.min_length:
        raise ValueError(f"sentiment_words must be in [1, min_length={r.min_length}], got {r.sentiment_words}")
    for name in ("neutral_fraction", "text_uninformative_fraction", "audio_uninformative_fraction",
                 "vision_uninformative_fraction", "neg_inf_fraction"):
        if not 0.0 <= getattr(r, name) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(r, name)}")


def _prepare_root(root: Path) -> None:
    """Create ``root``; refuse to replace a pickle that this generator did not write."""
    root.mkdir(parents=True, exist_ok=True)
    if (root / PICKLE).exists() and not (root / TRUTH_FILE).is_file():
        raise FileExistsError(f"{root / PICKLE}: exists but {TRUTH_FILE} does not; not overwriting real data")


def _pick(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Boolean [n] with exactly round(fraction · n) True entries at random positions."""
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, round(fraction * n), replace=False)] = True
    return out


def _plan(rng: np.random.Generator, r: _Recipe) -> dict[str, np.ndarray]:
    """Per-utterance truth: video, split, segment, length, label and which cues it carries."""
    n, videos = r.utterances, sum(SPLIT_VIDEOS.values())
    video = np.sort(np.concatenate([np.arange(videos), rng.integers(0, videos, n - videos)]))  # ≥1 per video
    split_of_video = np.repeat(np.arange(len(SPLIT_VIDEOS)), list(SPLIT_VIDEOS.values()))
    split_of_video = split_of_video[rng.permutation(videos)]
    magnitude = rng.integers(1, 16, n) * 0.2  # {0.2, …, 3.0}
    label = np.where(rng.random(n) < 0.5, -magnitude, magnitude)
    label[_pick(rng, n, r.neutral_fraction)] = 0.0
    return {
        "video": video,
        "split": split_of_video[video],
        "segment": np.concatenate([np.arange(c) for c in np.bincount(video, minlength=videos)]) + 1,
        "length": rng.integers(r.min_length, r.seq_len + 1, n),
        "label": np.round(label, 1),
        "text_informative": ~_pick(rng, n, r.text_uninformative_fraction),
        "audio_informative": ~_pick(rng, n, r.audio_uninformative_fraction),
        "vision_informative": ~_pick(rng, n, r.vision_uninformative_fraction),
        "neg_inf": _pick(rng, n, r.neg_inf_fraction),
        "video_ids": np.array(["".join(rng.choice(_ID_CHARS, 11)) for _ in range(videos)]),
    }


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A random unit vector [dim]."""
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def _synthesise(rng: np.random.Generator, r: _Recipe, plan: dict) -> dict[str, np.ndarray]:
    """text / audio / vision [N, seq_len, D] float32, left zero-padded; every draw in a fixed order."""
    n, L = r.utterances, r.seq_len
    sign = np.sign(plan["label"])  # 0 for neutral: no cue at all
    intensity = 0.4 + 0.2 * np.abs(plan["label"])  # [N]
    real = np.arange(L)[None, :] >= (L - plan["length"])[:, None]  # [N, L] left padding
    # text: Gaussian words; 1..k sentiment words along one direction (scaled to a word's norm)
    text = rng.normal(0.0, r.word_std, (n, L, r.text_dim))
    u_text = _unit(rng, r.text_dim)
    amp = sign * intensity * r.text_strength * r.word_std * np.sqrt(r.text_dim) * plan["text_informative"]
    words = rng.integers(1, r.sentiment_words + 1, n)
    for i in range(n):  # positions among the real (last length) steps
        steps = L - plan["length"][i] + rng.choice(plan["length"][i], words[i], replace=False)
        text[i, steps] += amp[i] * u_text
    out = {"text": text}
    for m, dim, shift in (("audio", r.audio_dim, r.audio_shift), ("vision", r.vision_dim, r.vision_shift)):
        speaker = rng.normal(0.0, r.speaker_offset_std, (len(plan["video_ids"]), dim))[plan["video"]]  # [N, D]
        cue = (sign * intensity * shift * plan[f"{m}_informative"])[:, None] * _unit(rng, dim)  # [N, D]
        out[m] = rng.standard_normal((n, L, dim)) + (speaker + cue)[:, None, :]
    for m in out:
        out[m] = np.where(real[:, :, None], out[m], 0.0).astype(np.float32)
    bad = np.flatnonzero(plan["neg_inf"])
    out["audio"][bad, L - 1, rng.integers(0, r.audio_dim, bad.size)] = -np.inf
    return out


def _to_splits(plan: dict, arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The MulT dict: split → text / audio / vision / labels [N, 1, 1] / id [N, 3] bytes."""
    ids = np.array(
        [[plan["video_ids"][v], str(s), f"{(s - 1) * 7.5:.2f}"] for v, s in zip(plan["video"], plan["segment"])],
        dtype="S16",
    )
    data = {}
    for k, name in enumerate(SPLIT_VIDEOS):
        rows = np.flatnonzero(plan["split"] == k)
        data[name] = {
            **{m: np.ascontiguousarray(arrays[m][rows]) for m in ("text", "audio", "vision")},
            "labels": plan["label"][rows].astype(np.float32).reshape(-1, 1, 1),
            "id": ids[rows],
        }
    return data


def _write_truth(path: Path, plan: dict) -> None:
    """utterance,split,label,length,text/audio/vision_informative (0/1), in file order."""
    names = list(SPLIT_VIDEOS)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["video", "segment", "split", "label", "length",
                         "text_informative", "audio_informative", "vision_informative"])
        for k in range(len(names)):
            for i in np.flatnonzero(plan["split"] == k):
                writer.writerow([plan["video_ids"][plan["video"][i]], int(plan["segment"][i]), names[k],
                                 f"{plan['label'][i]:.1f}", int(plan["length"][i]),
                                 *(int(plan[f"{m}_informative"][i]) for m in ("text", "audio", "vision"))])


def _summary(root: Path, r: _Recipe, plan: dict) -> dict:
    """Counts and settings of the written file (JSON-serialisable)."""
    names = list(SPLIT_VIDEOS)
    split = plan["split"]
    label = plan["label"]
    return {
        "dataset": "mosi",
        "root": str(root),
        "file": PICKLE,
        "split_counts": {names[k]: int((split == k).sum()) for k in range(len(names))},
        "negative": int((label < 0).sum()),
        "positive": int((label > 0).sum()),
        "neutral": int((label == 0).sum()),
        **{f"{m}_uninformative": int((~plan[f"{m}_informative"]).sum()) for m in ("text", "audio", "vision")},
        **asdict(r),
    }
