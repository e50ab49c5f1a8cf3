"""Twitter multimodal sarcasm detection (Cai, Cai & Wan, ACL 2019): one image + one tweet text.

Native layout, as released in github.com/headacheboy/data-of-multimodal-sarcasm-detection:

- ``<root>/text/train.txt``, ``text/valid2.txt``, ``text/test2.txt``: one Python list literal per
  line. train: ``['<tweet id>', '<text>', <label>]``; valid2 / test2:
  ``['<tweet id>', '<text>', <hashtag label>, <annotator label>]`` (text/Readme.MD: "the last but
  one element ... is labeled by hashtags (original posts). The last element ... is labeled by
  another human annotator"). Labels: 1 sarcastic, 0 not. The authors' loader (codes/loadData.py)
  reads each line with ``eval`` and takes the *last* element as the label (``label: annotator``,
  the default; ``label: hashtag`` takes the hashtag label of valid2 / test2 instead).
- ``<root>/dataset_image/<tweet id>.jpg``: the tweet's image (the folder the release's image
  archive unpacks to; e.g. Farabi-shafkat/MultiViewClip README: ``Image/dataset_image/<id>.jpg``).

Official splits: train.txt / valid2.txt / test2.txt = 19,816 / 2,410 / 2,409 tweets (IPRM §5.1;
Cai et al. Tab. 1), kept as train / val / test. The authors' loader also drops tweets whose
whitespace tokens include one of ``FILTER_WORDS`` (codes/loadData.py ``readData``);
``keyword_filter: true`` does the same, listing each as a skip (default off: the IPRM / LFM
counts above are the full files).

Modalities: ``image`` (kind frames, one RGB frame per tweet, resized to ``frame_size``) and
``text`` (kind sequence, float [L, D]). The papers encode the text with BERT (IPRM §5.1, as LFM;
njustkmg/IJCAI25-BSS Sarcasm/train-CL.py: bert-base-uncased, max_length 30). ``text_features``
names the featurizer: ``hashed`` (default) = ``mmbalance.media.text.hashed_embeddings`` (words
hashed into a fixed seeded table; no download), ``npy`` = pre-extracted token features
``<root>/<text_feature_folder>/<tweet id>.npy`` (float [L, D], e.g. BERT's last hidden states
computed offline).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmbalance.datasets.base import (
    Clip,
    DatasetAdapter,
    DatasetLayoutError,
    Skip,
    register_dataset,
    splits_from_csv,
)
from mmbalance.media import MediaError
from mmbalance.media.image import read_image
from mmbalance.media.text import hashed_embeddings

__all__ = [
    "CLASSES",
    "FILTER_WORDS",
    "IMAGE_DIR",
    "MODALITIES",
    "SPLIT_FILES",
    "TEXT_DIR",
    "Sarcasm",
    "Tweet",
    "parse_line",
    "read_tweets",
]

TEXT_DIR, IMAGE_DIR, IMAGE_EXT = "text", "dataset_image", ".jpg"
SPLIT_FILES = {"train": "train.txt", "val": "valid2.txt", "test": "test2.txt"}
CLASSES = ("not_sarcastic", "sarcastic")
MODALITIES = ("image", "text")
LABELS = ("annotator", "hashtag")
TEXT_FEATURES = ("hashed", "npy")
# words whose tweets codes/loadData.py drops (compared with the whitespace tokens of the text)
FILTER_WORDS = ("sarcasm", "sarcastic", "reposting", "<url>", "joke", "humour", "humor", "jokes", "irony",
                "ironic", "exgag")


@dataclass(frozen=True)
class Tweet:
    """One parsed line of a split file."""

    tweet_id: str
    text: str
    label: int
    split: str  # the file's split: train | val | test
    line: int


def parse_line(text: str, split: str, label: str = "annotator") -> tuple[str, str, int]:
    """(tweet id, text, label) of one line; ValueError saying what is wrong.

    train lines hold 3 elements, valid2 / test2 lines 4 (``label`` picks the annotator = last or
    the hashtag = last but one).
    """
    try:
        row = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError("not a Python list literal") from None
    fields = "[id, text, label]" if split == "train" else "[id, text, hashtag_label, annotator_label]"
    if not isinstance(row, list) or len(row) != (3 if split == "train" else 4):
        raise ValueError(f"expected a list {fields}, got {type(row).__name__} of {len(row) if isinstance(row, (list, tuple)) else 1}")
    tweet_id, words = str(row[0]).strip(), row[1]
    if not tweet_id.isdigit():
        raise ValueError(f"tweet id {row[0]!r} is not a number")
    if not isinstance(words, str):
        raise ValueError(f"text is a {type(words).__name__}, not a string")
    value = row[-2] if (split != "train" and label == "hashtag") else row[-1]
    if isinstance(value, bool) or value not in (0, 1):
        raise ValueError(f"label {value!r} is not 0 or 1")
    return tweet_id, words, int(value)


def read_tweets(path: Path, split: str, label: str = "annotator") -> tuple[dict[str, Tweet], list[Skip]]:
    """Tweets of one split file by id, and a Skip for each malformed or repeated line."""
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: split file is missing from the Sarcasm root")
    tweets: dict[str, Tweet] = {}
    skips: list[Skip] = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            tweet_id, text, value = parse_line(line, split, label)
        except ValueError as err:
            skips.append(Skip(f"{path.stem}_line{n:05d}", f"{path}:{n}", str(err)))
            continue
        if tweet_id in tweets:
            skips.append(Skip(tweet_id, f"{path}:{n}", f"listed again (first at line {tweets[tweet_id].line}); later line ignored"))
            continue
        tweets[tweet_id] = Tweet(tweet_id, text, value, split, n)
    return tweets, skips


@register_dataset("sarcasm")
class Sarcasm(DatasetAdapter):
    """Adapter for the Twitter multimodal sarcasm release (split list files + one .jpg per tweet)."""

    name = "sarcasm"
    classes = CLASSES
    modalities = MODALITIES
    kinds = {"image": "frames", "text": "sequence"}
    frames_per_clip = 1  # one image per tweet

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        label: str = "annotator",
        keyword_filter: bool = False,
        test_fraction: float = 0.0,
        val_fraction: float = 0.0,
        split_seed: int = 0,
    ) -> tuple[list[Clip], list[Skip]]:
        """One Clip per listed tweet with an image, in its file's split; return (clips, skips).

        ``label``: annotator (default) or hashtag, for valid2 / test2. ``keyword_filter``: drop
        (and list) the tweets the authors' loader drops. ``split_csv`` (``clip_id,split``)
        replaces the files' splits. test_fraction / val_fraction / split_seed are unused (the
        release has official val and test files; accepted so every split block has the same keys).
        """
        if label not in LABELS:
            raise ValueError(f"datasets.sarcasm label must be one of {LABELS}, got {label!r}")
        root = Path(root)
        _check_root(root)
        tweets, splits, skips = _read_splits(root / TEXT_DIR, label)
        if keyword_filter:
            dropped = _filtered(tweets, splits, root / TEXT_DIR)
            skips += dropped
            splits = {t: s for t, s in splits.items() if t not in {k.clip_id for k in dropped}}
        images, image_skips = _list_images(root / IMAGE_DIR, tweets.keys())
        skips += image_skips
        for tweet_id in sorted(splits.keys() - images.keys()):
            expected = root / IMAGE_DIR / f"{tweet_id}{IMAGE_EXT}"
            skips.append(Skip(tweet_id, _where(root, tweets[tweet_id]), f"image missing: expected {expected}"))
            del splits[tweet_id]
        if split_csv not in (None, ""):  # "" = no split file (params.yaml cannot say None)
            splits, csv_skips = splits_from_csv(Path(split_csv), {t: images[t] for t in splits}, "listed in split file but not a usable tweet")
            skips += csv_skips
        clips = [Clip(t, tweets[t].label, s, {"image": images[t], "text": root / TEXT_DIR / SPLIT_FILES[tweets[t].split]})
                 for t, s in sorted(splits.items())]
        if not clips:
            raise DatasetLayoutError(f"{root}: no listed tweet has an image ({len(skips)} skipped)")
        return clips, sorted(skips, key=lambda k: (k.clip_id, k.path))

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """{"image": uint8 [1, S, S, 3] RGB, "text": float32 [L, D]} (see the module docstring).

        Recipe keys: frame_size, truncated_images (skip | keep, see media.image.TRUNCATED),
        text_features (hashed | npy), text_buckets / text_dim / text_seed / max_tokens (hashed),
        text_feature_folder (npy, relative to the dataset root).
        """
        image = read_image(clip.paths["image"], recipe.get("frame_size", 224), recipe.get("truncated_images", "skip"))
        return {"image": image[None], "text": _text_features(clip, recipe)}


# --- layout -------------------------------------------------------------------------------


def _check_root(root: Path) -> None:
    """The root and its two folders exist (DatasetLayoutError naming what is missing)."""
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
    for folder in (root / TEXT_DIR, root / IMAGE_DIR):
        if not folder.is_dir():
            raise DatasetLayoutError(f"{folder}: expected folder is missing from the Sarcasm root")


def _read_splits(text_dir: Path, label: str) -> tuple[dict[str, Tweet], dict[str, str], list[Skip]]:
    """Tweets of the three files, their split, and the skips (a tweet id in two files: first kept)."""
    tweets: dict[str, Tweet] = {}
    splits: dict[str, str] = {}
    skips: list[Skip] = []
    for split, name in SPLIT_FILES.items():
        listed, file_skips = read_tweets(text_dir / name, split, label)
        skips += file_skips
        for tweet_id, tweet in listed.items():
            if tweet_id in splits:
                first = SPLIT_FILES[splits[tweet_id]]
                skips.append(Skip(tweet_id, f"{text_dir / name}:{tweet.line}", f"already listed in {first}; kept there"))
                continue
            tweets[tweet_id], splits[tweet_id] = tweet, split
    return tweets, splits, skips


def _filtered(tweets: dict[str, Tweet], splits: dict[str, str], text_dir: Path) -> list[Skip]:
    """Skips for the tweets codes/loadData.py drops (a FILTER_WORDS token in the text)."""
    out = []
    for tweet_id in sorted(splits):
        tokens = set(tweets[tweet_id].text.split())
        hit = next((w for w in FILTER_WORDS if w in tokens), None)
        if hit is not None:
            where = f"{text_dir / SPLIT_FILES[tweets[tweet_id].split]}:{tweets[tweet_id].line}"
            out.append(Skip(tweet_id, where, f"text contains {hit!r}: dropped by keyword_filter (as the authors' loader)"))
    return out


def _list_images(folder: Path, listed) -> tuple[dict[str, Path], list[Skip]]:
    """tweet id → image for the ``<id>.jpg`` files; Skip other files and unlisted images."""
    listed = set(listed)
    images: dict[str, Path] = {}
    skips: list[Skip] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() != IMAGE_EXT or not path.stem.isdigit() or not path.is_file():
            skips.append(Skip(path.stem, str(path), f"not a <tweet id>{IMAGE_EXT} image file"))
        elif path.stem not in listed:
            skips.append(Skip(path.stem, str(path), f"not listed in {', '.join(SPLIT_FILES.values())}"))
        else:
            images[path.stem] = path
    return images, skips


def _where(root: Path, tweet: Tweet) -> str:
    """``<split file>:<line>`` of a tweet, for a skip."""
    return f"{root / TEXT_DIR / SPLIT_FILES[tweet.split]}:{tweet.line}"


# --- text features ------------------------------------------------------------------------


def _stamp(path: Path) -> tuple[str, int, int]:
    """Cache key of a file: its path, modification time and size (a rewritten file is re-read)."""
    st = Path(path).stat()
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=3)
def _texts(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """tweet id → text of one split file (lines that do not parse are left out: scan listed them)."""
    split = next((s for s, name in SPLIT_FILES.items() if Path(path).name == name), "train")
    tweets, _ = read_tweets(Path(path), split)
    return {t: tweet.text for t, tweet in tweets.items()}


def _text_features(clip: Clip, recipe: dict) -> np.ndarray:
    """The clip's text as float32 [L, D] with the recipe's featurizer."""
    kind = recipe.get("text_features", "hashed")
    path = Path(clip.paths["text"])
    if kind == "hashed":
        try:
            text = _texts(*_stamp(path))[clip.clip_id]
        except OSError as err:
            raise MediaError(f"{path}: cannot be read ({err.strerror or err})") from None
        except KeyError:
            raise MediaError(f"{path}: tweet {clip.clip_id} is not in the file (changed since scan?)") from None
        return hashed_embeddings(text, buckets=int(recipe.get("text_buckets", 4096)), dim=int(recipe.get("text_dim", 32)),
                                 seed=int(recipe.get("text_seed", 0)), max_tokens=recipe.get("max_tokens"))
    if kind == "npy":
        return _stored_features(path.parents[1] / recipe.get("text_feature_folder", "text_features") / f"{clip.clip_id}.npy")
    raise ValueError(f"datasets.sarcasm.text_features must be one of {TEXT_FEATURES}, got {kind!r}")


def _stored_features(path: Path) -> np.ndarray:
    """A pre-extracted float [L, D] token-feature file, checked; MediaError naming it otherwise."""
    if not path.is_file():
        raise MediaError(f"{path}: text feature file does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MediaError(f"{path}: cannot be read as a .npy array ({err})") from None
    if x.ndim != 2 or x.shape[0] < 1:
        raise MediaError(f"{path}: text features must be [L, D] with L >= 1, got shape {x.shape}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise MediaError(f"{path}: text features hold non-finite values")
    return x
