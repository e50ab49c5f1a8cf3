"""Mini Twitter sarcasm: a small synthetic release in the layout of the real one.

``text/train.txt`` (``['<id>', '<text>', <label>]`` per line), ``text/valid2.txt`` and
``text/test2.txt`` (``['<id>', '<text>', <hashtag label>, <annotator label>]``), written with
Python's ``repr`` of the list as the release's lines are, and ``dataset_image/<id>.jpg``;
``mini_truth.csv`` records the per-tweet truth (not part of the native layout).

Text is the strong modality (IPRM Tab. 1: text 81.4 % vs image 71.8 %): a tweet is lower-case
filler words, ``<user>`` mentions, hashtags and ``emoji_<n>`` tokens, and an informative tweet
carries one or more *cue words* of its class (``SARCASTIC_CUES`` / ``LITERAL_CUES``), which a
sequence encoder picks up within an epoch or two. A fraction of tweets has no cue word. The image
is the weak modality: a smooth random texture under pixel noise with a faint grating whose
orientation gives the class (vertical: not sarcastic, horizontal: sarcastic), learnt slowly by a
small CNN; a fraction of images has no grating. The two uninformative fractions are drawn
independently, so a fusion that uses both modalities can beat either alone.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from mmbalance.datasets.mini import register_generator
from mmbalance.datasets.mini._av_synth import prepare_root
from mmbalance.datasets.sarcasm import IMAGE_DIR, IMAGE_EXT, SPLIT_FILES, TEXT_DIR

__all__ = ["LITERAL_CUES", "SARCASTIC_CUES", "TRUTH_FILE", "generate_sarcasm"]

TRUTH_FILE = "mini_truth.csv"
SARCASTIC_CUES = ("yay", "totally", "wonderful", "thanks", "obviously", "fantastic", "brilliant", "sure",
                  "lovely", "genius", "shocking", "perfect")
LITERAL_CUES = ("congrats", "proud", "tonight", "family", "delicious", "sunset", "birthday", "friends",
                "morning", "weekend", "concert", "recipe")
FILLER = ("the", "a", "to", "is", "it 's", "my", "this", "of", "and", "in", "for", "on", "so", "just", "i",
          "you", "we", "day", "time", "work", "people", "going", "like", "when", "what", "get", "now",
          "today", "new", "see", "can 't", "don 't", "all", "one", "at", "with", "be", "that", "how", "again",
          "train", "coffee", "weather", "game", "phone", "traffic", "school", "monday", "city", "bus", ".",
          "!", "?", ",", "...", "<num>")
HASHTAGS = ("life", "mondays", "fail", "funny", "travel", "news", "food", "win", "mood", "lol")
ID_RANGE = (682_000_000_000_000_000, 943_000_000_000_000_000)  # tweet ids of 2016-2017, 18 digits


@dataclass(frozen=True)
class _Recipe:
    """Every knob of one generated release (recorded in the summary)."""

    train_size: int
    val_size: int
    test_size: int
    seed: int
    sarcastic_fraction: float
    min_words: int
    max_words: int
    cue_words: int
    cue_fraction: float
    text_uninformative_fraction: float
    hashtag_disagreement_fraction: float
    image_size: int
    texture_sigma: float
    texture_contrast: float
    grating_amplitude: float
    grating_cycles: float
    noise_std: float
    colour_cast_std: float
    pixel_scale: float
    image_uninformative_fraction: float
    missing_images: int
    jpeg_quality: int


@register_generator("sarcasm")
def generate_sarcasm(
    root: Path,
    *,
    train_size: int = 900,
    val_size: int = 120,
    test_size: int = 480,
    seed: int = 0,
    sarcastic_fraction: float = 0.44,
    min_words: int = 6,
    max_words: int = 20,
    cue_words: int = 3,
    cue_fraction: float = 0.3,
    text_uninformative_fraction: float = 0.4,
    hashtag_disagreement_fraction: float = 0.05,
    image_size: int = 48,
    texture_sigma: float = 3.0,
    texture_contrast: float = 1.0,
    grating_amplitude: float = 0.4,
    grating_cycles: float = 4.0,
    noise_std: float = 1.0,
    colour_cast_std: float = 0.2,
    pixel_scale: float = 30.0,
    image_uninformative_fraction: float = 0.5,
    missing_images: int = 0,
    jpeg_quality: int = 90,
    show_progress: bool = True,
    workers: int = 1,
) -> dict:
    """Write a mini release under ``root``; return a summary dict.

    ``train_size`` / ``val_size`` / ``test_size`` tweets (the real files: 19,816 / 2,410 / 2,409);
    per split exactly round(sarcastic_fraction · n) are sarcastic (the real train set: 43.6 %).
    Text: U{min_words..max_words} tokens drawn from FILLER, mentions, hashtags and emoji tokens;
    an informative tweet (all but round(text_uninformative_fraction · N)) has
    max(1, Binomial(words, cue_fraction)) of them replaced by cue words of its class (the first
    ``cue_words`` of its cue list, 1–12: fewer, more frequent cue words are learnt faster). valid2 /
    test2 lines carry a hashtag label that differs from the annotator label (the truth) on
    round(hashtag_disagreement_fraction · n) tweets per split. Image: image_size² pixels,
    clip(128 + pixel_scale · x), x = texture_contrast · T + amp · sin(2π·cycles·(u·p) + φ) + c +
    N(0, noise_std²) per pixel and channel, T a periodic Gaussian-smoothed noise texture
    (``texture_sigma`` px) of unit std, p = (x, y) / size, u = (1, 0) for label 0 and (0, 1) for
    label 1, φ ~ U(0, 2π), c ~ N(0, colour_cast_std²) per channel; amp = grating_amplitude, 0 for
    round(image_uninformative_fraction · N) tweets. ``missing_images`` train tweets are listed
    without an image. JPEG quality ``jpeg_quality`` (OpenCV's encoder): byte-identical for a seed.
    ``show_progress`` / ``workers`` are accepted for the common generator signature (one pass, a
    few seconds). A previous mini release in ``root`` (recognised by its truth file) is
    replaced; real data is never overwritten.
    """
    knobs = locals()
    recipe = _Recipe(**{f.name: knobs[f.name] for f in fields(_Recipe)})
    _check(recipe)
    root = Path(root)
    prepare_root(root, TRUTH_FILE, [TEXT_DIR, IMAGE_DIR])
    (root / TEXT_DIR).mkdir()
    (root / IMAGE_DIR).mkdir()
    rng = np.random.default_rng(seed)
    plan = _plan(rng, recipe)
    texts = [_tweet_text(rng, recipe, plan, i) for i in range(len(plan["id"]))]
    _write_lists(root / TEXT_DIR, plan, texts)
    for i in range(len(plan["id"])):
        if plan["has_image"][i]:
            _write_image(root / IMAGE_DIR / f"{plan['id'][i]}{IMAGE_EXT}", recipe, plan, i)
    _write_truth(root / TRUTH_FILE, plan)
    return _summary(root, recipe, plan)


def _check(r: _Recipe) -> None:
    """Reject settings that cannot produce a valid release (ValueError naming the key)."""
    if min(r.train_size, r.val_size, r.test_size) < 2:
        raise ValueError(f"train_size, val_size and test_size must be >= 2, got {r.train_size}, {r.val_size}, {r.test_size}")
    if not 1 <= r.cue_words <= min(len(SARCASTIC_CUES), len(LITERAL_CUES)):
        raise ValueError(f"cue_words must be in [1, {min(len(SARCASTIC_CUES), len(LITERAL_CUES))}], got {r.cue_words}")
    if not 1 <= r.min_words <= r.max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {r.min_words}, {r.max_words}")
    for name in ("sarcastic_fraction", "cue_fraction", "text_uninformative_fraction", "hashtag_disagreement_fraction",
                 "image_uninformative_fraction"):
        if not 0.0 <= getattr(r, name) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(r, name)}")
    if not 0 <= r.missing_images <= r.train_size:
        raise ValueError(f"missing_images must be in [0, train_size], got {r.missing_images}")
    if r.image_size < 8 or not 1 <= r.jpeg_quality <= 100:
        raise ValueError(f"need image_size >= 8 and jpeg_quality in [1, 100], got {r.image_size}, {r.jpeg_quality}")


def _pick(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """Boolean [n] with exactly ``count`` True entries at random positions."""
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, count, replace=False)] = True
    return out


def _plan(rng: np.random.Generator, r: _Recipe) -> dict[str, np.ndarray]:
    """Per-tweet truth in file order: id, split, label, hashtag label, informative flags, image."""
    sizes = {"train": r.train_size, "val": r.val_size, "test": r.test_size}
    split = np.concatenate([np.full(n, s) for s, n in sizes.items()])
    label = np.concatenate([rng.permutation(_pick(rng, n, round(r.sarcastic_fraction * n)).astype(int))
                            for n in sizes.values()])
    flip = np.concatenate([np.zeros(r.train_size, bool)] +
                          [_pick(rng, n, round(r.hashtag_disagreement_fraction * n)) for n in (r.val_size, r.test_size)])
    n = len(split)
    ids = np.sort(rng.choice(ID_RANGE[1] - ID_RANGE[0], n, replace=False)) + ID_RANGE[0]
    missing = np.zeros(n, dtype=bool)
    missing[: r.train_size] = _pick(rng, r.train_size, r.missing_images)
    return {
        "id": rng.permutation(ids).astype(str),  # file order is not id order, as in the release
        "split": split,
        "label": label,
        "hashtag_label": np.where(flip, 1 - label, label),
        "text_informative": ~_pick(rng, n, round(r.text_uninformative_fraction * n)),
        "image_informative": ~_pick(rng, n, round(r.image_uninformative_fraction * n)),
        "has_image": ~missing,
    }


def _tweet_text(rng: np.random.Generator, r: _Recipe, plan: dict, i: int) -> str:
    """One tweet: filler / mention / hashtag / emoji tokens, cue words of its class if informative."""
    words = int(rng.integers(r.min_words, r.max_words + 1))
    kind = rng.choice(4, words, p=[0.8, 0.07, 0.08, 0.05])  # filler, mention, hashtag, emoji
    tokens = [FILLER[rng.integers(len(FILLER))] if k == 0 else "<user>" if k == 1
              else f"# {HASHTAGS[rng.integers(len(HASHTAGS))]}" if k == 2 else f"emoji_{rng.integers(1, 5000)}"
              for k in kind]
    cues = max(1, int(rng.binomial(words, r.cue_fraction)))
    positions = rng.choice(words, min(cues, words), replace=False)
    vocabulary = (SARCASTIC_CUES if plan["label"][i] else LITERAL_CUES)[: r.cue_words]
    chosen = rng.integers(len(vocabulary), size=len(positions))  # drawn for every tweet: same stream
    if plan["text_informative"][i]:
        for p, c in zip(positions, chosen, strict=True):
            tokens[p] = vocabulary[c]
    return " ".join(tokens) + " "  # the release's texts often end with a space


def _write_lists(folder: Path, plan: dict, texts: list[str]) -> None:
    """train.txt / valid2.txt / test2.txt: ``repr`` of one list per line, in plan order."""
    for split, name in SPLIT_FILES.items():
        lines = []
        for i in np.flatnonzero(plan["split"] == split):
            row = [str(plan["id"][i]), texts[i], int(plan["label"][i])]
            if split != "train":  # [id, text, hashtag label, annotator label]
                row = [row[0], row[1], int(plan["hashtag_label"][i]), row[2]]
            lines.append(repr(row))
        (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _texture(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Periodic Gaussian-smoothed (``sigma`` px) white noise of unit std, [S, S]."""
    f = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    smooth = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))).real
    return smooth / max(smooth.std(), 1e-12)


def _write_image(path: Path, r: _Recipe, plan: dict, i: int) -> None:
    """Texture + (class grating) + colour cast + pixel noise, as a JPEG; its own generator."""
    rng = np.random.default_rng([r.seed, i])
    s = r.image_size
    y, x = np.mgrid[0:s, 0:s] / s
    along = y if plan["label"][i] else x  # horizontal stripes for sarcastic tweets
    amp = r.grating_amplitude * plan["image_informative"][i]
    grating = amp * np.sin(2 * np.pi * r.grating_cycles * along + rng.uniform(0, 2 * np.pi))  # [S, S]
    base = r.texture_contrast * _texture(rng, s, r.texture_sigma) + grating
    pixels = base[..., None] + rng.normal(0.0, r.colour_cast_std, 3) + rng.normal(0.0, r.noise_std, (s, s, 3))
    rgb = np.clip(np.rint(128 + r.pixel_scale * pixels), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(IMAGE_EXT, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, r.jpeg_quality])
    if not ok:
        raise OSError(f"{path}: OpenCV cannot encode the image")
    path.write_bytes(data.tobytes())


def _write_truth(path: Path, plan: dict) -> None:
    """tweet_id,split,label,hashtag_label,text_informative,image_informative,has_image; sorted by id."""
    names = ["split", "label", "hashtag_label", "text_informative", "image_informative", "has_image"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["tweet_id", *names])
        for i in np.argsort(plan["id"]):
            writer.writerow([plan["id"][i], *(plan[k][i] if k == "split" else int(plan[k][i]) for k in names)])


def _summary(root: Path, r: _Recipe, plan: dict) -> dict:
    """Counts and settings of the written release (JSON-serialisable)."""
    return {
        "dataset": "sarcasm",
        "root": str(root),
        "split_counts": {s: int((plan["split"] == s).sum()) for s in SPLIT_FILES},
        "sarcastic": int(plan["label"].sum()),
        "text_uninformative": int((~plan["text_informative"]).sum()),
        "image_uninformative": int((~plan["image_informative"]).sum()),
        "hashtag_disagreements": int((plan["hashtag_label"] != plan["label"]).sum()),
        **asdict(r),
    }
