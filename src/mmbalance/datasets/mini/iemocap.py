"""Mini IEMOCAP: a small synthetic dataset in the layout of the official release.

Files, as ``IEMOCAP_full_release`` has them (``Session<k>`` from the utterance id)::

    Session<k>/dialog/EmoEvaluation/<dialog>.txt       "[start - end]<TAB><utterance><TAB><code><TAB>[V, A, D]" + evaluator lines
    Session<k>/dialog/transcriptions/<dialog>.txt      "<utterance> [start-end]: <words>", in time order
    Session<k>/dialog/avi/DivX/<dialog>.avi            MPEG-4 part 2 (DivX tag), one video per dialog
    Session<k>/sentences/wav/<dialog>/<utterance>.wav  16-bit PCM mono, one per utterance
    mini_truth.csv                                     per-utterance truth (not part of the release)

Utterance ids are real ones: train and test utterances are drawn from MLA's released train / test
lists (``data/iemocap_mla_split.yaml``), so the adapter's default ``mla`` protocol splits the mini
data as it splits the real release; val utterances (and the ``other_utterances`` with an emotion
outside the four classes, which the adapter lists as skips) get ids of the same dialogs that are
in neither list. Their utterances follow each other in the dialog's time line.

Text is the strong modality, as on the real data (IPRM Tab. 1: text 70.6 %, audio 58.5 %,
video 30.7 %): informative utterances hold one or two of their class's emotion words among
neutral filler words; the others hold filler only. Audio is weaker (a noisy harmonic tone at a
class pitch, another class's tone on an ambiguous share, as the mini CREMA-D), video the weakest
(a faint class grating over the utterance's span of the dialog video on an informative share).
The three informative shares are drawn independently, so fusing them beats any one alone.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from mmbalance.datasets.iemocap import (
    CLASSES,
    EVAL_DIR,
    SESSIONS,
    TEXT_DIR,
    VIDEO_DIR,
    WAV_DIR,
    mla_split,
)
from mmbalance.datasets.mini import register_generator
from mmbalance.datasets.mini._av_synth import PEAK, grating, prepare_root, run_jobs, tone

__all__ = ["TRUTH_FILE", "generate_iemocap"]

TRUTH_FILE = "mini_truth.csv"
SPLITS = ("train", "val", "test")
# emotion code(s) per class; Happy is hap or exc (merged, as MLA's four classes)
CODES = {"Angry": ("ang",), "Happy": ("hap", "exc"), "Neutral": ("neu",), "Sad": ("sad",)}
OTHER_CODES = ("fru", "sur", "xxx", "oth")  # outside the four classes: skipped by the adapter
# MLA's train list: Angry 685, Happy 977, Neutral 1014, Sad 642 (the labels' default mix)
CLASS_COUNTS = (685, 977, 1014, 642)
EMOTION_WORDS = {
    "Angry": ("furious", "hate", "ridiculous", "unacceptable", "damn", "stupid", "enough", "shut"),
    "Happy": ("wonderful", "excited", "love", "awesome", "amazing", "congratulations", "great", "fun"),
    "Neutral": ("okay", "address", "form", "number", "schedule", "office", "paper", "line"),
    "Sad": ("sorry", "miss", "died", "alone", "lost", "cry", "funeral", "hurts"),
}
FILLER = ("i", "you", "the", "a", "it", "that", "is", "was", "we", "to", "and", "know", "just", "well",
          "so", "what", "do", "don't", "yeah", "um", "like", "this", "about", "there", "here", "then",
          "get", "go", "think", "right", "mean", "really", "have", "be", "can", "not", "oh", "now")
TAGS = ("[LAUGHTER]", "[BREATHING]", "[GARBAGE]")


@dataclass(frozen=True)
class _Recipe:
    """Every per-run knob a writer process needs (picklable)."""

    seed: int
    sample_rate: int
    video_fps: int
    frame_size: int
    audio_snr_db: float
    pitches_hz: tuple[float, ...]
    pitch_jitter: float
    harmonic_amplitudes: tuple[float, ...]
    envelope_block_s: float
    envelope_on_prob: float
    visual_grating_amplitude: float
    grating_cycles: tuple[float, ...]
    colour_cast_std: float
    pixel_scale: float
    num_classes: int = len(CLASSES)


@dataclass(frozen=True)
class _Utterance:
    """One utterance to write."""

    utterance: str
    dialog: str
    split: str  # the split it was drawn for ("other": outside the four classes)
    code: str
    label: int  # -1 for an "other" utterance
    start_s: float
    end_s: float
    words: str
    tone_class: int  # class whose pitch the audio carries (-1: none, an "other" utterance)
    audio_informative: bool
    video_informative: bool
    text_informative: bool


@register_generator("iemocap")
def generate_iemocap(
    root: Path,
    *,
    seed: int = 0,
    split_counts: tuple[int, int, int] | list[int] = (900, 150, 480),
    other_utterances: int = 40,
    class_counts: tuple[int, ...] | list[int] = CLASS_COUNTS,
    min_duration_s: float = 1.5,
    max_duration_s: float = 3.0,
    sample_rate: int = 16000,
    video_fps: int = 4,
    frame_size: int = 32,
    text_uninformative_fraction: float = 0.3,
    min_words: int = 3,
    max_words: int = 10,
    audio_snr_db: float = -10.0,
    audio_ambiguous_fraction: float = 0.45,
    pitch_min_hz: float = 180.0,
    pitch_max_hz: float = 1050.0,
    pitch_jitter: float = 0.06,
    harmonic_amplitudes: tuple[float, ...] | list[float] = (1.0, 0.5, 0.25),
    envelope_block_s: float = 0.1,
    envelope_on_prob: float = 0.6,
    visual_grating_amplitude: float = 0.3,
    visual_uninformative_fraction: float = 0.5,
    grating_cycles: tuple[float, ...] | list[float] = (2.5, 3.5, 4.5),
    colour_cast_std: float = 0.5,
    pixel_scale: float = 40.0,
    workers: int = 1,
    show_progress: bool = True,
) -> dict:
    """Write a mini IEMOCAP under ``root``; return a summary dict.

    ``split_counts``: four-class utterances drawn for train / val / test (train and test ids from
    MLA's lists); ``other_utterances`` more carry fru / sur / xxx / oth. Labels follow
    ``class_counts`` (Angry, Happy, Neutral, Sad proportions; Happy written as hap or exc at
    random). Each utterance lasts U(min_duration_s, max_duration_s), 0.2-0.6 s after the previous
    one of its dialog (ordered by utterance number, F before M). Text: U{min_words..max_words}
    words of ``FILLER`` (a bracketed tag now and then), one or two replaced by the class's
    ``EMOTION_WORDS`` except on round(text_uninformative_fraction · n) utterances. Audio: the tone
    of pitch ``geomspace(pitch_min_hz, pitch_max_hz, 4)[class]`` under white noise at
    ``audio_snr_db`` (the mini CREMA-D's tone), another uniformly drawn class's on
    round(audio_ambiguous_fraction · n). Video: ``video_fps`` frames/s of frame_size² N(0, 1)
    pixel noise + a per-dialog colour cast; inside each utterance's span a grating of amplitude
    ``visual_grating_amplitude`` (angle π·class/4) unless the utterance is among
    round(visual_uninformative_fraction · n); pixels = clip(128 + pixel_scale·x). The plan comes
    from one generator seeded with ``seed``, each dialog's media from one seeded with (seed,
    dialog index), so the bytes do not depend on ``workers``. A previous mini dataset (recognised
    by its truth file) is replaced; real data is never touched.
    """
    recipe = _Recipe(seed, sample_rate, video_fps, frame_size, audio_snr_db,
                     tuple(np.geomspace(pitch_min_hz, pitch_max_hz, len(CLASSES)).tolist()), pitch_jitter,
                     tuple(harmonic_amplitudes), envelope_block_s, envelope_on_prob, visual_grating_amplitude,
                     tuple(grating_cycles), colour_cast_std, pixel_scale)
    counts = tuple(int(c) for c in split_counts)
    _check(recipe, counts, other_utterances, class_counts, min_duration_s, max_duration_s, min_words, max_words)
    fractions = {"text": text_uninformative_fraction, "audio": audio_ambiguous_fraction, "video": visual_uninformative_fraction}
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"the {name} fraction must be in [0, 1], got {value}")
    rng = np.random.default_rng(seed)
    plan = _plan(rng, counts, other_utterances, class_counts, fractions, (min_duration_s, max_duration_s), (min_words, max_words))
    root = Path(root)
    prepare_root(root, TRUTH_FILE, SESSIONS)
    dialogs = sorted({u.dialog for u in plan})
    jobs = [(root, recipe, i, d, [u for u in plan if u.dialog == d]) for i, d in enumerate(dialogs)]
    run_jobs(_write_dialog, jobs, workers, "mini iemocap", show_progress, chunksize=8)
    _write_truth(root / TRUTH_FILE, plan)
    return _summary(root, recipe, plan, counts, fractions)


def _check(recipe: _Recipe, counts: tuple[int, ...], others: int, class_counts, lo: float, hi: float,
           min_words: int, max_words: int) -> None:
    """Reject settings that cannot produce a valid dataset (ValueError naming the key)."""
    listed = mla_split()
    available = {s: sum(v == s for v in listed.values()) for s in ("train", "test")}
    if len(counts) != 3 or min(counts) < 0 or sum(counts) == 0:
        raise ValueError(f"split_counts must be three counts >= 0 (train, val, test), got {list(counts)}")
    if counts[0] > available["train"] or counts[2] > available["test"]:
        raise ValueError(f"split_counts train / test must be at most MLA's {available['train']} / {available['test']}, "
                         f"got {counts[0]} / {counts[2]}")
    if others < 0:
        raise ValueError(f"other_utterances must be >= 0, got {others}")
    if len(class_counts) != len(CLASSES) or min(class_counts) < 0 or sum(class_counts) <= 0:
        raise ValueError(f"class_counts must be {len(CLASSES)} weights >= 0 ({', '.join(CLASSES)}), got {list(class_counts)}")
    if not 0 < lo <= hi:
        raise ValueError(f"need 0 < min_duration_s <= max_duration_s, got {lo}, {hi}")
    if not 2 <= min_words <= max_words:
        raise ValueError(f"need 2 <= min_words <= max_words, got {min_words}, {max_words}")
    top = recipe.pitches_hz[-1] * (1 + recipe.pitch_jitter) * len(recipe.harmonic_amplitudes)
    if top >= recipe.sample_rate / 2:
        raise ValueError(f"highest harmonic {top:.0f} Hz exceeds Nyquist at {recipe.sample_rate}")
    if recipe.frame_size <= 0 or recipe.frame_size % 2:
        raise ValueError(f"frame_size must be even and positive (yuv420p video), got {recipe.frame_size}")


# --- the plan ----------------------------------------------------------------------------------


def _unlisted_ids(listed: dict[str, str]) -> list[str]:
    """Ids of the listed dialogs, numbered within each speaker's listed range, in neither list."""
    top: dict[tuple[str, str], int] = {}
    for u in listed:
        dialog, turn = u.rsplit("_", 1)
        key = (dialog, turn[0])
        top[key] = max(top.get(key, 0), int(turn[1:]))
    return sorted(f"{d}_{s}{k:03d}" for (d, s), n in top.items() for k in range(n + 1) if f"{d}_{s}{k:03d}" not in listed)


def _pick(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """Boolean [n] with exactly ``count`` True entries at random positions."""
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, count, replace=False)] = True
    return out


def _plan(rng: np.random.Generator, counts: tuple[int, ...], others: int, class_counts, fractions: dict,
          durations: tuple[float, float], words: tuple[int, int]) -> list[_Utterance]:
    """Ids, labels, cues, words and time spans of every utterance; sorted by utterance id."""
    listed = mla_split()
    pools = {s: sorted(u for u, v in listed.items() if v == s) for s in ("train", "test")}
    spare = _unlisted_ids(listed)
    extra = rng.choice(len(spare), counts[1] + others, replace=False)
    ids = {"train": [pools["train"][i] for i in rng.choice(len(pools["train"]), counts[0], replace=False)],
           "test": [pools["test"][i] for i in rng.choice(len(pools["test"]), counts[2], replace=False)],
           "val": [spare[i] for i in extra[: counts[1]]], "other": [spare[i] for i in extra[counts[1]:]]}
    rows = [(u, s) for s in ("train", "val", "test", "other") for u in ids[s]]
    n = sum(counts)  # four-class utterances come first in ``rows``
    p = np.asarray(class_counts, dtype=float) / float(np.sum(class_counts))
    labels = np.concatenate([rng.choice(len(CLASSES), n, p=p), np.full(others, -1)])
    flags = {m: _pick(rng, n, round(f * n)) for m, f in fractions.items()}  # text / video: no cue; audio: ambiguous
    tones = np.where(flags["audio"], rng.integers(0, len(CLASSES), n), labels[:n])
    codes = [_code(rng, int(lab)) for lab in labels]
    texts = [_words(rng, int(lab), i < n and not flags["text"][i], words) for i, lab in enumerate(labels)]
    utterances = []
    for i, (u, split) in enumerate(rows):
        four = i < n
        utterances.append(_Utterance(
            u, u.rsplit("_", 1)[0], split, codes[i], int(labels[i]), 0.0, 0.0, texts[i],
            int(tones[i]) if four else -1, four and not flags["audio"][i], four and not flags["video"][i],
            four and not flags["text"][i]))
    return _timeline(rng, utterances, durations)


def _code(rng: np.random.Generator, label: int) -> str:
    """The emotion code written for a label (-1: one outside the four classes)."""
    choices = OTHER_CODES if label < 0 else CODES[CLASSES[label]]
    return str(choices[rng.integers(len(choices))])


def _words(rng: np.random.Generator, label: int, informative: bool, bounds: tuple[int, int]) -> str:
    """A transcribed line: filler words (a tag now and then), one or two emotion words if informative."""
    n = int(rng.integers(bounds[0], bounds[1] + 1))
    tokens = [FILLER[k] for k in rng.integers(0, len(FILLER), n)]
    if rng.random() < 0.1:
        tokens[int(rng.integers(n))] = TAGS[int(rng.integers(len(TAGS)))]
    if informative:
        vocabulary = EMOTION_WORDS[CLASSES[label]]
        for pos in rng.choice(n, int(rng.integers(1, 3)), replace=False):
            tokens[int(pos)] = vocabulary[int(rng.integers(len(vocabulary)))]
    line = " ".join(tokens)
    return line[0].upper() + line[1:] + "."


def _turn_order(utterance: str) -> tuple[int, str]:
    """(number, speaker): a dialog's turns F000, M000, F001, …"""
    turn = utterance.rsplit("_", 1)[1]
    return int(turn[1:]), turn[0]


def _timeline(rng: np.random.Generator, utterances: list[_Utterance], durations: tuple[float, float]) -> list[_Utterance]:
    """Consecutive spans within each dialog (times rounded to 0.1 ms, as the release's)."""
    out = []
    for dialog in sorted({u.dialog for u in utterances}):
        t = 0.5
        for u in sorted((u for u in utterances if u.dialog == dialog), key=lambda u: _turn_order(u.utterance)):
            start = round(t + float(rng.uniform(0.2, 0.6)), 4)
            end = round(start + float(rng.uniform(*durations)), 4)
            out.append(_Utterance(**{**asdict(u), "start_s": start, "end_s": end}))
            t = end
    return sorted(out, key=lambda u: u.utterance)


# --- writing -----------------------------------------------------------------------------------


def _write_dialog(job: tuple[Path, _Recipe, int, str, list[_Utterance]]) -> None:
    """Write one dialog's evaluation, transcription, video and wavs (runs in a worker process)."""
    root, recipe, index, dialog, utterances = job
    session = root / SESSIONS[int(dialog[4]) - 1]
    rng = np.random.default_rng([recipe.seed, index])
    timeline = sorted(utterances, key=lambda u: u.start_s)
    for folder in (EVAL_DIR, TEXT_DIR, VIDEO_DIR, f"{WAV_DIR}/{dialog}"):
        (session / folder).mkdir(parents=True, exist_ok=True)
    _write_lines(session / EVAL_DIR / f"{dialog}.txt", _evaluation_lines(timeline))
    _write_lines(session / TEXT_DIR / f"{dialog}.txt",
                 [f"{u.utterance} [{u.start_s:08.4f}-{u.end_s:08.4f}]: {u.words}" for u in timeline])
    _write_avi(session / VIDEO_DIR / f"{dialog}.avi", _frames(rng, recipe, timeline), recipe)
    for u in timeline:
        sf.write(session / WAV_DIR / dialog / f"{u.utterance}.wav", _wave(rng, recipe, u), recipe.sample_rate, "PCM_16")


def _write_lines(path: Path, lines: list[str]) -> None:
    with path.open("w", newline="") as fh:
        fh.write("".join(line + "\n" for line in lines))


def _evaluation_lines(timeline: list[_Utterance]) -> list[str]:
    """The release's EmoEvaluation form: header, then per utterance its line and evaluator lines."""
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for u in timeline:
        name = CLASSES[u.label] if u.label >= 0 else "Other"
        lines += [f"[{u.start_s:.4f} - {u.end_s:.4f}]\t{u.utterance}\t{u.code}\t[2.5000, 2.5000, 2.5000]",
                  f"C-E1:\t{name};\t()", f"C-E2:\t{name};\t()", "A-E1:\tval 3; act 3; dom  3;\t()", ""]
    return lines


def _wave(rng: np.random.Generator, recipe: _Recipe, u: _Utterance) -> np.ndarray:
    """The utterance's tone (none for an "other" utterance) under white noise; float32, peak 0.9."""
    n = round((u.end_s - u.start_s) * recipe.sample_rate)
    cls = u.tone_class if u.tone_class >= 0 else int(rng.integers(len(CLASSES)))
    wave = tone(rng, recipe, cls, n)
    wave = wave + rng.normal(0.0, np.sqrt(np.mean(wave**2) / 10 ** (recipe.audio_snr_db / 10)), n)
    return (PEAK * wave / np.abs(wave).max()).astype(np.float32)


def _frames(rng: np.random.Generator, recipe: _Recipe, timeline: list[_Utterance]) -> np.ndarray:
    """The dialog video: noise + colour cast, each informative utterance's grating over its span;
    uint8 [T, S, S, 3], T covering the last utterance's end + 0.5 s."""
    count = math.ceil((timeline[-1].end_s + 0.5) * recipe.video_fps)
    s = recipe.frame_size
    x = rng.standard_normal((count, s, s, 3), dtype=np.float32)
    x += rng.normal(0.0, recipe.colour_cast_std, 3).astype(np.float32)
    t = np.arange(count) / recipe.video_fps  # frame times [T]
    for u in timeline:
        phase = rng.uniform(0, 2 * np.pi)  # drawn for every utterance: the same stream whatever the cues
        if u.video_informative:
            inside = (t >= u.start_s - 1e-9) & (t < u.end_s - 1e-9)
            x[inside] += recipe.visual_grating_amplitude * grating(recipe, u.label, phase)[None, :, :, None]
    return np.clip(128 + recipe.pixel_scale * x, 0, 255).astype(np.uint8)


def _write_avi(path: Path, frames: np.ndarray, recipe: _Recipe) -> None:
    """MPEG-4 part 2 AVI with the DivX tag, every frame a key frame, bit-exact (same bytes per input)."""
    with av.open(str(path), "w", format="avi", container_options={"fflags": "+bitexact"}) as container:
        video = container.add_stream("mpeg4", rate=recipe.video_fps)
        video.width = video.height = recipe.frame_size
        video.pix_fmt = "yuv420p"
        video.gop_size = 1
        video.thread_count = 1
        video.codec_context.qscale = 3
        video.codec_tag = "DIVX"
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))


def _write_truth(path: Path, plan: list[_Utterance]) -> None:
    """One row per utterance (every field but the words), sorted by utterance id."""
    names = [k for k in asdict(plan[0]) if k != "words"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        for u in plan:
            row = asdict(u)
            writer.writerow([int(row[k]) if isinstance(row[k], bool) else row[k] for k in names])


def _summary(root: Path, recipe: _Recipe, plan: list[_Utterance], counts: tuple[int, ...], fractions: dict) -> dict:
    """Counts and settings of the written dataset (JSON-serialisable)."""
    four = [u for u in plan if u.label >= 0]
    return {
        "dataset": "iemocap",
        "root": str(root),
        "utterances": len(plan),
        "dialogs": len({u.dialog for u in plan}),
        "split_counts": dict(zip(SPLITS, counts, strict=True)),
        "other_utterances": len(plan) - len(four),
        "class_counts": {c: sum(u.label == i for u in four) for i, c in enumerate(CLASSES)},
        "text_uninformative": sum(not u.text_informative for u in four),
        "audio_ambiguous": sum(not u.audio_informative for u in four),
        "video_uninformative": sum(not u.video_informative for u in four),
        "fractions": fractions,
        **{k: v for k, v in asdict(recipe).items() if k != "pitches_hz"},
        "pitches_hz": [round(p, 3) for p in recipe.pitches_hz],
    }
