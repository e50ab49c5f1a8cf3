"""Mini CMU-MOSI: a small synthetic ``mosi_data.pkl`` in the MulT / MultiBench layout.

``{train, valid, test}`` → ``text`` [N, L, 300], ``audio`` [N, L, 5], ``vision`` [N, L, 20]
(float32, word-aligned, zero-padded on the left as MulT's files are), ``labels`` [N, 1, 1]
continuous sentiment in [-3, 3] (multiples of 0.2 like averaged annotator ratings, some exactly
0), ``id`` [N, 3] byte strings (video id, segment, start time). Utterances are grouped in videos
and the videos split 52 / 10 / 31 like MOSI's speaker-independent folds (``split_videos``).

Text is the strong modality: about a third of the words of an utterance are "sentiment words"
that carry the label's sign along one fixed direction of the 300-d word space; a Transformer
picks this up within an epoch or two. Audio and vision are weak modalities that are learnt
slowly: beside a small mean shift (learnt quickly, worth a few points), their label sits in
the *co-variation* of two feature directions across time steps, which only a non-linear encoder
sees, after many epochs of SGD. Trained alone they reach what their informative fractions allow
(the mini params: audio ≈ 71 %, vision ≈ 63 %, text ≈ 83 %); trained jointly the text fits the
training set first and their encoders stay far below that, as on the real data where text
dominates. A fraction of utterances has no sentiment words (text uninformative: the
fused accuracy keeps headroom that better-trained weak encoders can fill), and a fraction has
no audio / vision cue. ``mini_truth.csv`` records the per-utterance truth; it is not part of
the native layout.
"""

from __future__ import annotations

import csv
import pickle
from dataclasses import asdict, dataclass, fields
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
    max_length: int
    text_dim: int
    audio_dim: int
    vision_dim: int
    neutral_fraction: float
    word_std: float
    text_strength: float
    sentiment_word_fraction: float
    text_uninformative_fraction: float
    audio_shift: float
    vision_shift: float
    audio_covary: float
    vision_covary: float
    audio_uninformative_fraction: float
    vision_uninformative_fraction: float
    speaker_offset_std: float
    neg_inf_fraction: float
    split_videos: tuple[int, int, int]  # videos in train / valid / test


@register_generator("mosi")
def generate_mosi(
    root: Path,
    *,
    utterances: int = 1200,
    seed: int = 0,
    seq_len: int = 50,
    min_length: int = 5,
    max_length: int = 30,
    text_dim: int = 300,
    audio_dim: int = 5,
    vision_dim: int = 20,
    neutral_fraction: float = 0.04,
    word_std: float = 0.4,
    text_strength: float = 2.0,
    sentiment_word_fraction: float = 0.3,
    text_uninformative_fraction: float = 0.15,
    audio_shift: float = 0.25,
    vision_shift: float = 0.25,
    audio_covary: float = 3.0,
    vision_covary: float = 4.0,
    audio_uninformative_fraction: float = 0.4,
    vision_uninformative_fraction: float = 0.3,
    speaker_offset_std: float = 0.3,
    neg_inf_fraction: float = 0.01,
    split_videos: tuple[int, int, int] | list[int] = tuple(SPLIT_VIDEOS.values()),
    show_progress: bool = True,
    workers: int = 1,
) -> dict:
    """Write ``root/mosi_data.pkl`` (+ ``mini_truth.csv``); return a summary dict.

    Each utterance: true length U{min_length..max_length} (words), left-padded with zeros to
    ``seq_len``; |label| uniform over {0.2, 0.4, …, 3.0} with a random sign, exactly
    round(neutral_fraction · utterances) labels 0 (no cue in any modality). Intensity
    c = 0.4 + 0.2·|label| scales every cue; s = sign(label), 0 where a modality carries no cue.
    Text steps ~ N(0, word_std²); Binomial(length, sentiment_word_fraction) (≥ 1) random steps
    add s·c·text_strength·word_std·√text_dim along a fixed unit direction u (s = 0 for
    round(text_uninformative_fraction · N) utterances). Audio / vision steps: N(0, I) noise + a
    per-video offset N(0, speaker_offset_std²) + s·c·shift·b + z_t·covary·√c·(a + s·b), with
    a ⟂ b fixed unit directions and z_t ~ N(0, 1) per step, so the a- and b-components of a
    step correlate with the sign of the label (their uninformative fractions have s = 0).
    round(neg_inf_fraction · N) utterances get one ``-inf`` audio value (as COVAREP features in
    the real file). ``split_videos``: the videos in train / valid / test (MOSI's folds 52 / 10 /
    31 by default; more test videos give a larger test split from the same utterances). One generator seeded with ``seed`` draws everything in a fixed order and
    the pickle uses protocol 4, so the file is byte-identical for a seed. ``show_progress`` /
    ``workers`` are accepted for the common generator signature; generation is one vectorised
    pass (about a second). A previous mini file (recognised by its truth file) is replaced; a
    real pickle in ``root`` is never overwritten.
    """
    knobs = locals()  # every keyword argument above, by name
    knobs["split_videos"] = tuple(int(v) for v in split_videos)
    recipe = _Recipe(**{f.name: knobs[f.name] for f in fields(_Recipe)})
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
    if len(r.split_videos) != len(SPLIT_VIDEOS) or min(r.split_videos) < 1:
        raise ValueError(f"split_videos must be {len(SPLIT_VIDEOS)} counts >= 1 ({', '.join(SPLIT_VIDEOS)}), "
                         f"got {list(r.split_videos)}")
    if r.utterances < sum(r.split_videos):
        raise ValueError(f"utterances must be at least sum(split_videos) = {sum(r.split_videos)}, got {r.utterances}")
    if not 1 <= r.min_length <= r.max_length <= r.seq_len:
        raise ValueError(f"need 1 <= min_length <= max_length <= seq_len, got {r.min_length}, {r.max_length}, {r.seq_len}")
    for name in ("neutral_fraction", "sentiment_word_fraction", "text_uninformative_fraction", "audio_uninformative_fraction",
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
    n, videos = r.utterances, sum(r.split_videos)
    video = np.sort(np.concatenate([np.arange(videos), rng.integers(0, videos, n - videos)]))  # ≥1 per video
    split_of_video = np.repeat(np.arange(len(SPLIT_VIDEOS)), list(r.split_videos))
    split_of_video = split_of_video[rng.permutation(videos)]
    magnitude = rng.integers(1, 16, n) * 0.2  # {0.2, …, 3.0}
    label = np.where(rng.random(n) < 0.5, -magnitude, magnitude)
    label[_pick(rng, n, r.neutral_fraction)] = 0.0
    return {
        "video": video,
        "split": split_of_video[video],
        "segment": np.concatenate([np.arange(c) for c in np.bincount(video, minlength=videos)]) + 1,
        "length": rng.integers(r.min_length, r.max_length + 1, n),
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
    words = np.maximum(1, rng.binomial(plan["length"], r.sentiment_word_fraction))  # ≥ 1 per utterance
    for i in range(n):  # positions among the real (last length) steps
        steps = L - plan["length"][i] + rng.choice(plan["length"][i], words[i], replace=False)
        text[i, steps] += amp[i] * u_text
    out = {"text": text}
    weak = (("audio", r.audio_dim, r.audio_shift, r.audio_covary), ("vision", r.vision_dim, r.vision_shift, r.vision_covary))
    for m, dim, shift, covary in weak:
        s = sign * plan[f"{m}_informative"]  # [N] ±1, or 0 without a cue
        a, b = _unit(rng, dim), rng.standard_normal(dim)
        b = (b - (b @ a) * a) / np.linalg.norm(b - (b @ a) * a)  # orthonormal to a [D]
        speaker = rng.normal(0.0, r.speaker_offset_std, (len(plan["video_ids"]), dim))[plan["video"]]  # [N, D]
        mean_cue = (s * intensity * shift)[:, None] * b  # [N, D]: a small shift along b (learnt quickly)
        # co-variation cue: one shared N(0, 1) drive z_t along a + s·b, so steps' a- and b-components
        # correlate with the label's sign (corr s·γ²/(1 + γ²), γ² = covary²·c); visible to a
        # non-linear encoder only, hence learnt slowly. Without a cue (s = 0) only a moves.
        gamma = covary * np.sqrt(intensity)  # [N]
        drive = rng.standard_normal((n, L, 1)) * gamma[:, None, None]  # [N, L, 1]
        pattern = a[None, :] + s[:, None] * b[None, :]  # [N, D]
        out[m] = rng.standard_normal((n, L, dim)) + drive * pattern[:, None, :] + (speaker + mean_cue)[:, None, :]
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
