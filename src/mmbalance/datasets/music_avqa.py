"""MUSIC-AVQA (Li et al., CVPR 2022, "Learning to Answer Questions in Dynamic Audio-Visual
Scenarios"): audio-visual question answering on videos of musical performances.

Layout, as the authors release it (github.com/GeWu-Lab/MUSIC-AVQA; the videos come as archives
of ``<video_id>.mp4`` files that the authors' scripts expect in ``data/video/``)::

    <root>/data/json/avqa-train.json    the official split: one JSON list of question records
    <root>/data/json/avqa-val.json      per file (also read from <root>/json/ or <root> itself)
    <root>/data/json/avqa-test.json
    <root>/**/<video_id>.mp4            60-s clips with their audio track, anywhere below the root

A record holds ``video_id`` ("00000272"), ``question_id`` (an int, unique over the three files),
``type`` (a JSON string list: '["Audio-Visual", "Temporal"]', the modal scenario and the question
kind), ``question_content`` (a template such as "Where is the <FL> sounding instrument?"),
``templ_values`` (a JSON string list filling the template's ``<…>`` placeholders in order:
'["first"]'), ``anser`` (sic: the answer, "left") and ``question_deleted`` (not read, as by the
authors' loader). The paper counts 45,867 questions on 9,288 videos: 32,087 train / 4,595 val /
9,185 test, in 3 scenarios × 9 question types, with 42 possible answers.

**One example = one question**: clip id ``<video_id>_<question_id>``, label = the answer's index
in the answer vocabulary, split = the file that lists it. The vocabulary is built as the authors'
loader builds it (net_grd_avst/dataloader_avst.py, ``ans_vocab``): every answer of
avqa-train.json in order of first appearance, so label indices equal the authors'. It depends on
the files, so ``classes`` is set by ``scan`` on the adapter instance; a val or test question
whose answer is not in it is skipped (the authors' loader would fail on it).

Modalities of a question (its video's arrays are shared by all its questions):

- ``question`` (kind sequence, float [L, D]): the template filled as the authors fill it (the
  question split on spaces, a trailing "?" dropped, each token holding "<" replaced by the next
  template value), then ``mmbalance.media.text.hashed_embeddings`` (words hashed into a fixed
  seeded table: no download; the authors learn a word embedding from scratch over the same
  tokens, ``text_buckets`` / ``text_dim`` / ``text_seed`` / ``max_tokens``).
- ``visual`` (kind frames, uint8 [k, S, S, 3]): the video decoded at one frame per second
  (``read_frames``), then ``clip_frames`` = k of those frames, the first of seconds
  ⌊i·D/k⌋ for i < k (D the video's length in seconds): seconds 0, 6, …, 54 of a 60-s video for
  k = 10, the authors' ``[::6]`` over their 1-fps features.
- ``audio`` (kind spectrogram, float [n_fft/2+1, W]): the one-second snippets of the same k
  seconds (``segment_seconds`` long: VGGish reads 0.96 s per second, of which the authors keep
  every sixth) put end to end, tiled / cropped to k·segment_seconds, then the shared
  log-spectrogram recipe (``prepare.audio``, as AVE): 257 × 1004 for k = 10. Audio and frames
  are aligned in time: column block i of the spectrogram is the second of frame i.

Each question's type ("Audio-Counting", "Audio-Visual-Temporal", …) is kept on its
``QuestionClip`` (``question_type(clip)``) and, without decoding anything, by clip id from
``question_types(root)``: the shard format stores arrays and labels only, so the report can get
per-type accuracies by joining the test predictions' keys with that map.
"""

from __future__ import annotations

import ast
import functools
import json
import re
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
from mmbalance.media.audio import fit_length, load_audio, log_spectrogram
from mmbalance.media.text import hashed_embeddings
from mmbalance.media.video import read_frames

__all__ = [
    "JSON_DIRS",
    "MODALITIES",
    "SPLIT_FILES",
    "MusicAVQA",
    "Question",
    "QuestionClip",
    "answer_vocabulary",
    "fill_template",
    "find_json_dir",
    "parse_record",
    "question_type",
    "question_types",
    "read_questions",
    "sampled_seconds",
]

SPLIT_FILES = {"train": "avqa-train.json", "val": "avqa-val.json", "test": "avqa-test.json"}
# where the three files may sit under the root, in the order they are looked for: the authors'
# repository layout first, then a bare json/ folder, then the root itself
JSON_DIRS = ("data/json", "json", ".")
VIDEO_EXT = ".mp4"
MODALITIES = ("audio", "visual", "question")
RECORD_KEYS = ("video_id", "question_id", "type", "question_content", "templ_values", "anser")
VIDEO_ID_RE = re.compile(r"[A-Za-z0-9_-]+")  # shard keys may not hold '.' or '/'
DEFAULT_CLIP_FRAMES = 10  # the authors' 10 of 60 seconds


@dataclass(frozen=True)
class Question:
    """One parsed question record."""

    video_id: str
    question_id: int
    scenario: str  # "Audio" | "Visual" | "Audio-Visual"
    kind: str  # "Counting", "Location", "Existential", "Comparative", "Temporal"
    text: str  # the filled question
    answer: str
    where: str  # "<file>:<record number>", for skip reasons

    @property
    def clip_id(self) -> str:
        return f"{self.video_id}_{self.question_id}"

    @property
    def question_type(self) -> str:
        """"<scenario>-<kind>", e.g. "Audio-Visual-Temporal" (the authors' test() groups)."""
        return f"{self.scenario}-{self.kind}"


@dataclass(frozen=True)
class QuestionClip(Clip):
    """A Clip that is one question about a video: the filled question text and its type."""

    question: str = ""
    question_type: str = ""


def question_type(clip: Clip) -> str:
    """The question type of a clip ("Audio-Counting", …); "" for a plain Clip."""
    return clip.question_type if isinstance(clip, QuestionClip) else ""


# --- parsing ------------------------------------------------------------------------------------


def fill_template(content: str, values: list[str]) -> str:
    """The question with its placeholders filled, as the authors' loader fills it.

    The text is split on single spaces; a trailing "?" of the last word is dropped (the loader
    drops the last character, which is "?" in every released question); every word containing
    "<" (``<Object>``, ``<LR>``, ``<FL>``, ``<TH>``, …) is replaced, in order, by the next
    template value. Extra values are ignored, as by the loader; too few is a ValueError (the
    loader would fail on it).
    """
    words = content.rstrip().split(" ")
    if words[-1].endswith("?"):
        words[-1] = words[-1][:-1]
    slots = [i for i, w in enumerate(words) if "<" in w]
    if len(slots) > len(values):
        raise ValueError(f"question {content!r} has {len(slots)} placeholders but templ_values holds {len(values)}")
    for i, value in zip(slots, values):
        words[i] = str(value)
    return " ".join(words)


def _literal_list(text, field: str) -> list:
    """A record field holding a list as a string ('["a", "b"]'), parsed as the authors do
    (``ast.literal_eval``); ValueError naming the field otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{field} must be a string holding a list, got {type(text).__name__}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"{field} {text!r} is not a list literal") from None
    if not isinstance(value, list):
        raise ValueError(f"{field} {text!r} is not a list")
    return value


def parse_record(record, where: str) -> Question:
    """One record of an avqa-*.json file → Question; ValueError saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"record is a {type(record).__name__}, not an object")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}")
    video_id = record["video_id"]
    if not isinstance(video_id, str) or not VIDEO_ID_RE.fullmatch(video_id):
        raise ValueError(f"malformed video_id {video_id!r} (letters, digits, '_' and '-' only)")
    qid = record["question_id"]
    if isinstance(qid, str) and qid.isdigit():
        qid = int(qid)
    if isinstance(qid, bool) or not isinstance(qid, int) or qid < 0:
        raise ValueError(f"question_id {record['question_id']!r} is not a non-negative integer")
    kind = _literal_list(record["type"], "type")
    if len(kind) != 2 or not all(isinstance(k, str) and k for k in kind):
        raise ValueError(f"type {record['type']!r} is not [scenario, question kind]")
    values = _literal_list(record["templ_values"], "templ_values")
    content, answer = record["question_content"], record["anser"]
    if not isinstance(content, str) or not content.strip():
        raise ValueError("question_content is empty or not a string")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"anser (the answer) {answer!r} is empty or not a string")
    return Question(video_id, qid, kind[0], kind[1], fill_template(content, values), answer.strip(), where)


def read_questions(path: Path) -> tuple[list[Question], list[Skip]]:
    """The parsed records of one avqa-*.json file, in file order, and a Skip per bad record."""
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: MUSIC-AVQA question file is missing")
    try:
        records = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetLayoutError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(records, list):
        raise DatasetLayoutError(f"{path}: expected a JSON list of question records, got {type(records).__name__}")
    questions, skips = [], []
    for n, record in enumerate(records):
        where = f"{path}:{n}"
        try:
            questions.append(parse_record(record, where))
        except ValueError as err:
            ident = (record.get("video_id"), record.get("question_id")) if isinstance(record, dict) else (None, None)
            clip_id = f"{ident[0]}_{ident[1]}" if None not in ident else f"{path.stem}_record{n:06d}"
            skips.append(Skip(re.sub(r"[^A-Za-z0-9_-]+", "_", clip_id), where, str(err)))
    return questions, skips


def answer_vocabulary(train: list[Question]) -> tuple[str, ...]:
    """The answers of the train questions in order of first appearance (the authors' ``ans_vocab``)."""
    return tuple(dict.fromkeys(q.answer for q in train))


def find_json_dir(root: Path) -> Path:
    """The first of ``JSON_DIRS`` under ``root`` that holds avqa-train.json; DatasetLayoutError
    naming every place looked at otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist or is not a folder")
    for name in JSON_DIRS:
        if (root / name / SPLIT_FILES["train"]).is_file():
            return root if name == "." else root / name
    looked = ", ".join(str(root / n / SPLIT_FILES["train"]) for n in JSON_DIRS)
    raise DatasetLayoutError(f"{root}: no MUSIC-AVQA question files: looked for {looked}")


def _read_splits(json_dir: Path) -> tuple[dict[str, list[Question]], list[Skip]]:
    """Questions per split file, a (video, question) pair listed twice kept at its first record."""
    per_split: dict[str, list[Question]] = {}
    skips: list[Skip] = []
    first: dict[str, Question] = {}
    for split, name in SPLIT_FILES.items():
        questions, bad = read_questions(json_dir / name)
        skips += bad
        per_split[split] = []
        for q in questions:
            if q.clip_id in first:
                skips.append(Skip(q.clip_id, q.where, f"question listed again: {first[q.clip_id].where} is kept"))
                continue
            first[q.clip_id] = q
            per_split[split].append(q)
    return per_split, skips


def question_types(root: Path) -> dict[str, str]:
    """clip id → question type ("Audio-Counting", …) of every parseable question under ``root``
    (no media read): what the report needs for per-type accuracies of the test predictions."""
    per_split, _ = _read_splits(find_json_dir(Path(root)))
    return {q.clip_id: q.question_type for questions in per_split.values() for q in questions}


def _list_videos(root: Path) -> tuple[dict[str, Path], list[Skip]]:
    """video id → the ``<video_id>.mp4`` anywhere below ``root`` (sorted walk: the first of two
    files with one id is used, the other listed)."""
    videos: dict[str, Path] = {}
    skips: list[Skip] = []
    for path in sorted(root.rglob(f"*{VIDEO_EXT}")):
        if not path.is_file():
            continue
        if path.stem in videos:
            skips.append(Skip(path.stem, str(path), f"another file has this video id: {videos[path.stem]} is used"))
            continue
        videos[path.stem] = path
    return videos, skips


@register_dataset("music_avqa")
class MusicAVQA(DatasetAdapter):
    """Adapter for the MUSIC-AVQA release: avqa-{train,val,test}.json + one mp4 per video.

    ``classes`` (the answer vocabulary) is set by ``scan`` from avqa-train.json; the class
    attribute is empty until then.
    """

    name = "music_avqa"
    classes: tuple[str, ...] = ()
    modalities = MODALITIES
    kinds = {"audio": "spectrogram", "visual": "frames", "question": "sequence"}
    frames_per_clip = DEFAULT_CLIP_FRAMES  # every stored frame, in time order (aligned with the audio)

    def scan(
        self,
        root: Path,
        *,
        split_csv: Path | None = None,
        test_fraction: float = 0.0,
        val_fraction: float = 0.0,
        split_seed: int = 0,
    ) -> tuple[list[Clip], list[Skip]]:
        """One QuestionClip per usable question, in its file's split; return (clips sorted by
        clip id, skips). Sets ``self.classes`` to the answer vocabulary of avqa-train.json.

        Skipped and listed: malformed records, a question listed twice, an answer outside the
        vocabulary, a question whose video is missing, and videos no question refers to.
        ``split_csv`` (``clip_id,split``) replaces the files' splits (the vocabulary still comes
        from avqa-train.json); test_fraction / val_fraction / split_seed are unused (the release
        has its split files; accepted so every split block has the same keys).
        """
        root = Path(root)
        json_dir = find_json_dir(root)
        per_split, skips = _read_splits(json_dir)
        self.classes = answer_vocabulary(per_split["train"])
        if not self.classes:
            raise DatasetLayoutError(f"{json_dir / SPLIT_FILES['train']}: no usable question, so no answer vocabulary")
        index = {a: i for i, a in enumerate(self.classes)}
        videos, video_skips = _list_videos(root)
        skips += video_skips
        usable: dict[str, tuple[Question, str]] = {}
        for split, questions in per_split.items():
            for q in questions:
                if q.answer not in index:
                    skips.append(Skip(q.clip_id, q.where, f"answer {q.answer!r} is not in the answer vocabulary of "
                                                          f"{SPLIT_FILES['train']} ({len(self.classes)} answers)"))
                elif q.video_id not in videos:
                    skips.append(Skip(q.clip_id, q.where, f"video missing: no {q.video_id}{VIDEO_EXT} below {root}"))
                else:
                    usable[q.clip_id] = (q, split)
        asked = {q.video_id for questions in per_split.values() for q in questions}
        skips += [Skip(v, str(p), "video not referred to by any question in the avqa-*.json files")
                  for v, p in videos.items() if v not in asked]
        splits = {c: s for c, (_, s) in usable.items()}
        if split_csv not in (None, ""):  # "" = no split file (params.yaml cannot say None)
            where = {c: usable[c][0].where for c in splits}  # the avqa-*.json entry of each question
            splits, csv_skips = splits_from_csv(Path(split_csv), where, "listed in split file but not a usable question",
                                                unlisted=f"not in split file {split_csv}")
            skips += csv_skips
        clips = [QuestionClip(c, index[usable[c][0].answer], s, {"video": videos[usable[c][0].video_id]},
                              question=usable[c][0].text, question_type=usable[c][0].question_type)
                 for c, s in sorted(splits.items())]
        if not clips:
            raise DatasetLayoutError(f"{root}: no MUSIC-AVQA question has a known answer and a video ({len(skips)} skipped)")
        return clips, sorted(skips, key=lambda k: (k.clip_id, k.path))

    def extract(self, clip: Clip, recipe: dict) -> dict[str, np.ndarray]:
        """{"audio": float [n_fft/2+1, W] (``spec_dtype``), "visual": uint8 [k, S, S, 3],
        "question": float32 [L, D]} (see the module docstring).

        Recipe keys: the ``prepare.audio`` recipe, spec_dtype, frame_size, clip_frames (k, 10),
        segment_seconds (1.0); text_buckets / text_dim / text_seed / max_tokens (hashed words).
        A video's arrays are decoded once for all its questions (the clips are sorted by clip id,
        so a video's questions reach a worker together).
        """
        if not isinstance(clip, QuestionClip) or not clip.question:
            raise MediaError(f"{clip.paths.get('video')}: clip {clip.clip_id} carries no question text (not from scan)")
        spec, frames = _video_arrays(*_stamp(clip.paths["video"]), _media_key(recipe))
        question = hashed_embeddings(clip.question, buckets=int(recipe.get("text_buckets", 4096)),
                                     dim=int(recipe.get("text_dim", 32)), seed=int(recipe.get("text_seed", 0)),
                                     max_tokens=recipe.get("max_tokens"))
        # copies: the cached arrays serve the video's next questions and must stay unchanged
        return {"audio": spec.copy(), "visual": frames.copy(), "question": question}


# --- media --------------------------------------------------------------------------------------


def sampled_seconds(duration: int, k: int) -> list[int]:
    """The k seconds a video of ``duration`` whole seconds is read at: ⌊i·duration/k⌋, i < k
    (0, 6, …, 54 for 60 s and k = 10: the authors' ``[::6]``; a video shorter than k seconds
    repeats some of its seconds, so every video gives k)."""
    if duration < 1 or k < 1:
        raise ValueError(f"need a duration and a frame count of at least 1, got {duration} and {k}")
    return [i * duration // k for i in range(k)]


def _stamp(path: Path) -> tuple[str, int, int]:
    """Cache key of a file: its path, modification time and size; MediaError if it is missing."""
    try:
        st = Path(path).stat()
    except OSError as err:
        raise MediaError(f"{path}: video file cannot be read ({err.strerror or err})") from None
    return str(path), st.st_mtime_ns, st.st_size


def _media_key(recipe: dict) -> tuple:
    """The recipe entries the video's arrays depend on, hashable (the cache key's second half)."""
    size = recipe.get("frame_size", 224)
    return (int(recipe["sample_rate"]), int(recipe["n_fft"]), int(recipe["win_length"]), int(recipe["hop_length"]),
            str(recipe["window"]), str(recipe["scaling"]), bool(recipe["normalize"]),
            str(recipe.get("spec_dtype", "float32")), tuple(size) if isinstance(size, (list, tuple)) else size,
            int(recipe.get("clip_frames", DEFAULT_CLIP_FRAMES)), float(recipe.get("segment_seconds", 1.0)))


@functools.lru_cache(maxsize=2)
def _video_arrays(path: str, mtime_ns: int, size: int, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(spectrogram [n_fft/2+1, W], frames [k, S, S, 3]) of one video (see the module docstring).

    Cached per file version and recipe: the ~5 questions of a video follow each other in the
    sorted clip order, so each video is decoded once. A MediaError is not cached (each of the
    video's questions reports it, naming the file).
    """
    sr, n_fft, win, hop, window, scaling, normalize, spec_dtype, frame_size, k, segment_s = key
    video = Path(path)
    frames = read_frames(video, fps=1.0, size=frame_size)  # [D, S, S, 3]: first frame of each second
    seconds = sampled_seconds(frames.shape[0], k)
    wave = load_audio(video, sr)  # [n]
    seg = int(round(segment_s * sr))
    if seg < win:
        raise ValueError(f"segment_seconds {segment_s} is shorter than one STFT window ({win} samples at {sr} Hz)")
    # the snippet of each sampled second, end to end: [k·seg] (a snippet past the track's end is
    # shorter or empty; tiling below fills the clip, as the shared recipe tiles short audio)
    snippets = np.concatenate([wave[s * sr : s * sr + seg] for s in seconds])
    if snippets.size < win:
        raise MediaError(f"{video}: audio track ({wave.size / sr:.2f} s) has fewer than {win} samples at the sampled "
                         f"seconds {seconds}")
    if not np.any(snippets):
        raise MediaError(f"{video}: audio is silent (all samples 0) at the sampled seconds {seconds}")
    spec = log_spectrogram(fit_length(snippets, k * seg), sr, n_fft=n_fft, win_length=win, hop_length=hop,
                           window=window, scaling=scaling, normalize=normalize)
    return spec.astype(spec_dtype), frames[seconds]
