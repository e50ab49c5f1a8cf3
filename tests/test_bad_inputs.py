"""Bad raw inputs, per adapter: each gives a clear error naming the path or a skip listed with its
reason in index.json, and every other clip still reaches the shards (nothing is dropped silently).

One tiny generated root per dataset (module fixtures); each case copies it, breaks one thing, runs
``validate`` and ``prepare`` in-process; ``validate`` must list exactly the problems ``prepare``
records (or fail with the same error). Combinations that do not apply to a dataset are listed as
skipped parameters with the reason (UCF-101 has no audio; MOSI has no media files).
"""

from __future__ import annotations

import pickle
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest
import soundfile as sf

from mmbalance.datasets import DatasetLayoutError, get_dataset
from mmbalance.datasets.mini import get_generator
from mmbalance.prepare import prepare
from mmbalance.shards import iter_samples, shard_urls
from mmbalance.validate import check_root, validate

# 3-s spectrograms and 16-px frames keep every prepare run well under a second
RECIPE = dict(sample_rate=16000, clip_seconds=3, n_fft=512, win_length=512, hop_length=159, window="tukey",
              scaling="density", normalize=True, frame_fps=1, frame_size=16, spec_dtype="float16",
              modalities=["rgb", "flow"], flow_algorithm="farneback")
SPLITS = {
    "cremad": {"split_csv": None, "test_fraction": 0.0, "val_fraction": 0.0, "split_seed": 0},
    "ave": {"split_csv": None},
    "kinetics_sounds": {"split_csv": None, "val_fraction": 0.0, "split_seed": 0},
    "ucf101": {"split_csv": None, "val_fraction": 0.0, "split_seed": 0},
    "mosi": {"split_csv": None, "pickle": "mosi_data.pkl", "zero_label": "drop", "val_fraction": 0.0},
}
AV = {"cremad": ("flv", "flv"), "ave": ("mp4", "libx264"), "kinetics_sounds": ("mp4", "libx264")}  # format, video codec


# --- tiny roots, one per dataset and module -----------------------------------------------------


def _ucf_root(root: Path) -> None:
    """Mini UCF-101 cut down to 3 clips per class (g01 test, g08-g09 train)."""
    get_generator("ucf101")(root, clips_per_class=21, groups=21, duration_s=2.0, seed=0,
                            classes=["ApplyEyeMakeup", "Basketball"], show_progress=False)
    keep = {"g01", "g08", "g09"}
    for path in (root / "UCF-101").rglob("*.avi"):
        if path.stem.split("_")[-2] not in keep:
            path.unlink()
    lists = root / "ucfTrainTestlist"
    for name in ("trainlist01.txt", "testlist01.txt"):
        lines = (lists / name).read_text().splitlines(keepends=True)
        (lists / name).write_text("".join(x for x in lines if Path(x.split()[0]).stem.split("_")[-2] in keep))


BUILD: dict[str, Callable[[Path], object]] = {
    "cremad": lambda r: get_generator("cremad")(r, clips_per_class=1, seed=0, show_progress=False),
    "ave": lambda r: get_generator("ave")(r, seed=0, num_classes=2, clips_per_class=3, duplicate_lines=0,
                                          frame_size=16, show_progress=False),
    "kinetics_sounds": lambda r: get_generator("kinetics_sounds")(r, seed=0, num_classes=2, clips_per_class=4,
                                                                  val_fraction=0.0, no_audio_clips=0,
                                                                  frame_size=16, show_progress=False),
    "ucf101": _ucf_root,
    "mosi": lambda r: get_generator("mosi")(r, utterances=100, seed=0, show_progress=False),
}


@dataclass(frozen=True)
class Pristine:
    root: Path
    clips: dict[tuple[str, str], object]  # (split, clip id) -> Clip
    skips: list  # what the generated root already skips (MOSI's neutral labels)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Callable[[str], Pristine]:
    """Build each dataset's tiny root on first use; scan it once."""
    cache: dict[str, Pristine] = {}

    def get(ds: str) -> Pristine:
        if ds not in cache:
            root = tmp_path_factory.mktemp("pristine") / ds
            BUILD[ds](root)
            clips, skips = get_dataset(ds).scan(root, **SPLITS[ds])
            assert all(s.reason == "neutral label (0) dropped" for s in skips), skips
            cache[ds] = Pristine(root, {(c.split, c.clip_id): c for c in clips}, skips)
        return cache[ds]

    return get


# --- media writers and breakers -----------------------------------------------------------------


def _write_av(path: Path, ds: str, frames: np.ndarray | None, wave: np.ndarray | None, rate: int = 16000,
              codec: str = "aac") -> None:
    """Write ``path`` in the dataset's container: video [T, 16, 16, 3] (None: no video stream) and a
    mono track (None: no audio stream). ``codec`` 'alac' stores exactly ``len(wave)`` samples at any
    rate (AAC pads to 1024-sample frames and needs a standard rate)."""
    fmt, vcodec = AV[ds]
    with av.open(str(path), "w", format=fmt) as out:
        video = None
        if frames is not None:
            video = out.add_stream(vcodec, rate=4)
            video.width = video.height = 16
            video.pix_fmt = "yuv420p"
        audio = out.add_stream(codec, rate=rate, layout="mono") if wave is not None else None
        for frame in frames if frames is not None else []:
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        if video is not None:
            out.mux(video.encode(None))
        if audio is not None:
            pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)[None, :]  # [1, n]
            samples = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            samples.sample_rate = rate
            out.mux(audio.encode(samples))
            out.mux(audio.encode(None))


def _frames(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)


def _noise(n: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(1).standard_normal(n)).astype(np.float32)


def _zero_video_packets(path: Path) -> None:
    """Overwrite every video packet's payload with zeros: the stream is there, no frame decodes."""
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.pos is not None and packet.pos >= 0 and packet.size:
                data[packet.pos : packet.pos + packet.size] = bytes(packet.size)
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 4 // 10])


# --- cases ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """``error``: validate refuses the root and prepare raises DatasetLayoutError, both matching.
    ``skip``: index.json lists the victim's id with a reason matching (and naming ``name`` when given).
    ``dropped``: whether the victim leaves the shards (False: the skip is an extra file)."""

    error: str | None = None
    skip: str | None = None
    dropped: bool = True
    listed_by_id: bool = True  # the skip carries the victim's id (False: e.g. its whole folder is listed)
    names_file: bool = True


@dataclass
class Ctx:
    root: Path
    ds: str
    clip: object  # the victim Clip
    pristine: dict  # (split, clip id) -> Clip of the unbroken root

    @property
    def media(self) -> Path:
        return Path(self.clip.paths.get("video") or self.clip.paths.get("features"))


def _sed(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _ave_line(ctx: Ctx) -> tuple[Path, str]:
    name = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}[ctx.clip.split]
    line = next(x for x in (ctx.root / name).read_text().splitlines() if f"&{ctx.clip.clip_id}&" in x)
    return ctx.root / name, line


def _mosi_edit(ctx: Ctx, edit: Callable[[dict, int], None]) -> None:
    """Rewrite the pickle with ``edit(data, row)``, row = the victim's row in ``train``."""
    data = pickle.loads(ctx.media.read_bytes())
    edit(data, _mosi_row(data, "train", ctx.clip.clip_id))
    ctx.media.write_bytes(pickle.dumps(data, protocol=4))


def _mosi_row(data: dict, key: str, clip_id: str) -> int:
    from mmbalance.datasets.mosi import clip_ids

    return clip_ids(data)[key].index(clip_id)


# the victim is the first clip (sorted by split, then id) of the train split
CORRUPT = Expect(skip=r"cannot (decode|read)")
TRUNCATED = Expect(skip=r"truncated video|cannot decode|fewer than 2")
ZERO_FRAMES = Expect(skip=r"no video stream|cannot decode video|no decodable video frame|fewer than 2")
NO_AUDIO = Expect(skip=r"no audio stream")
SILENT = Expect(skip=r"audio is silent")
SHORT = Expect(skip=r"shorter than one STFT window")
KEPT = Expect(dropped=False)
LOW_RATE = Expect(skip=r"sample rate 100 Hz is below")
NA_NO_AUDIO = "UCF-101 is video-only (RGB + flow): there is no audio to miss, be silent, short or at a wrong rate"
NA_MEDIA = "CMU-MOSI ships pickled feature sequences, no media files"


def _cremad_cases():
    def wav(ctx):
        return ctx.root / "AudioWAV" / f"{ctx.clip.clip_id}.wav"

    def flv(ctx):
        return ctx.clip.paths["video"]

    return {
        "corrupt video": (lambda c: flv(c).write_bytes(b"\x00garbage" * 64), CORRUPT),
        "truncated video": (lambda c: _truncate(flv(c)), Expect(skip="truncated video")),
        # CREMA-D's audio is AudioWAV/<id>.wav: a video without a track is a valid clip
        "video without audio stream (audio comes from the wav)": (
            lambda c: _write_av(flv(c), "cremad", _frames(), None), KEPT),
        "silent audio": (lambda c: sf.write(wav(c), np.zeros(16000), 16000), SILENT),
        "audio shorter than one STFT window": (lambda c: sf.write(wav(c), _noise(200), 16000), SHORT),
        "empty audio": (lambda c: sf.write(wav(c), np.zeros(0), 16000), Expect(skip="zero samples")),
        "zero decodable frames": (lambda c: _zero_video_packets(flv(c)), ZERO_FRAMES),
        "8 kHz audio is resampled": (lambda c: sf.write(wav(c), _noise(24000), 8000), KEPT),
        "implausible sample rate": (lambda c: sf.write(wav(c), _noise(300), 100), LOW_RATE),
        "unknown emotion code": (lambda c: [shutil.copy(p, p.with_name(p.name.replace(p.stem.split("_")[2], "XYZ")))
                                            for p in (wav(c), flv(c))],
                                 Expect(skip="unknown emotion code", dropped=False, names_file=False)),
        "duplicate clip id (.wav and .WAV)": (lambda c: shutil.copy(wav(c), wav(c).with_suffix(".WAV")),
                                              Expect(skip="duplicate clip id", dropped=False)),
        "empty folders": (lambda c: [p.unlink() for d in ("AudioWAV", "VideoFlash") for p in (c.root / d).iterdir()],
                          Expect(error="no CREMA-D clip")),
    }


def _mp4_cases(ds: str):
    def mp4(ctx):
        return ctx.clip.paths["video"]

    cases = {
        "corrupt video": (lambda c: mp4(c).write_bytes(b"\x00garbage" * 64), CORRUPT),
        "truncated video": (lambda c: _truncate(mp4(c)), TRUNCATED),
        "video without audio stream": (lambda c: _write_av(mp4(c), ds, _frames(40), None), NO_AUDIO),
        "silent audio": (lambda c: _write_av(mp4(c), ds, _frames(40), np.zeros(160000, np.float32)), SILENT),
        # AVE cuts the event span first: a 200-sample track leaves a short or an empty span
        "audio shorter than one STFT window": (lambda c: _write_av(mp4(c), ds, _frames(40), _noise(200), codec="alac"),
                                               Expect(skip="shorter than one STFT window|no audio in the span")),
        "zero decodable frames": (lambda c: _zero_video_packets(mp4(c)), ZERO_FRAMES),
        "8 kHz audio is resampled": (lambda c: _write_av(mp4(c), ds, _frames(40), _noise(80000), rate=8000), KEPT),
        "implausible sample rate": (lambda c: _write_av(mp4(c), ds, _frames(40), _noise(1000), rate=100, codec="alac"),
                                    LOW_RATE),
    }
    if ds == "ave":
        def short_span(c):  # a 0.02-s event span: 320 samples of audio
            path, line = _ave_line(c)
            _sed(path, line, "&".join(line.split("&")[:3] + ["0", "0.02"]))

        def unknown(c):
            path, line = _ave_line(c)
            _sed(path, line, "Dragon&" + line.split("&", 1)[1])

        def duplicate(c):
            path, line = _ave_line(c)
            other = "Bark" if not line.startswith("Bark&") else "Cat"
            path.write_text(path.read_text() + other + "&" + line.split("&", 1)[1] + "\n")

        cases["event span shorter than one STFT window"] = (short_span, SHORT)
        cases["unknown category"] = (unknown, Expect(skip="unknown category", names_file=False))
        cases["duplicate video id"] = (duplicate, Expect(skip="duplicate video id", dropped=False,
                                                         names_file=False))
        cases["empty video folder"] = (lambda c: [p.unlink() for p in (c.root / "AVE").iterdir()],
                                       Expect(error="no AVE clip"))
    else:
        def unknown(c):
            (c.root / "train" / "not_a_class").mkdir()
            shutil.move(mp4(c), c.root / "train" / "not_a_class" / mp4(c).name)

        def duplicate(c):
            other = next(d for d in sorted((c.root / "train").iterdir()) if d != mp4(c).parent)
            shutil.copy(mp4(c), other / mp4(c).name)

        cases["unknown class folder"] = (unknown, Expect(skip="not in class list", listed_by_id=False,
                                                         names_file=False))
        cases["duplicate clip id"] = (duplicate, Expect(skip="duplicate clip id", dropped=False))
        cases["empty class folders"] = (lambda c: [p.unlink() for p in c.root.rglob("*.mp4")],
                                        Expect(error="no Kinetics-Sounds clip found"))
    return cases


def _ucf_cases():
    def avi(ctx):
        return ctx.clip.paths["video"]

    def one_frame(c):
        import cv2

        writer = cv2.VideoWriter(str(avi(c)), cv2.VideoWriter_fourcc(*"MJPG"), 8, (16, 16))
        writer.write(_frames(1)[0])
        writer.release()

    def unknown_label(c):
        lists = c.root / "ucfTrainTestlist" / "trainlist01.txt"
        line = next(x for x in lists.read_text().splitlines() if c.clip.clip_id in x)
        _sed(lists, line, line.split()[0] + " 9")

    def duplicate(c):
        lists = c.root / "ucfTrainTestlist" / "trainlist01.txt"
        line = next(x for x in lists.read_text().splitlines() if c.clip.clip_id in x)
        lists.write_text(lists.read_text() + line + "\r\n")

    na = pytest.mark.skip(reason=NA_NO_AUDIO)
    return {
        "corrupt video": (lambda c: avi(c).write_bytes(b"\x00garbage" * 64), CORRUPT),
        "truncated video": (lambda c: _truncate(avi(c)), TRUNCATED),
        "zero decodable frames": (lambda c: _zero_video_packets(avi(c)), ZERO_FRAMES),
        "a single frame (flow needs two)": (one_frame, Expect(skip="fewer than 2")),
        "unknown label (not in classInd)": (unknown_label, Expect(skip="disagrees with classInd",
                                                                 names_file=False)),
        "duplicate list entry": (duplicate, Expect(skip="listed again", dropped=False, names_file=False)),
        "empty video folders": (lambda c: [p.unlink() for p in c.root.rglob("*.avi")],
                                Expect(error="no UCF-101 video")),
        "video without audio stream": na, "silent audio": na, "audio shorter than one STFT window": na,
        "implausible sample rate": na,
    }


def _mosi_cases():
    def set_label(value):
        return lambda c: _mosi_edit(c, lambda d, row: d["train"]["labels"].__setitem__((row, 0, 0), value))

    def feature(value):
        def edit(d, row):
            d["train"]["vision"][row, -1, 0] = value  # the last step is real (MulT pads on the left)
        return lambda c: _mosi_edit(c, edit)

    def duplicate_ids(c):
        def edit(d, row):  # the victim takes the id of the first usable test utterance
            first_test = min(k for k in c.pristine if k[0] == "test")[1]
            d["train"]["id"][row] = d["test"]["id"][_mosi_row(d, "test", first_test)]
        _mosi_edit(c, edit)

    na = pytest.mark.skip(reason=NA_MEDIA)
    return {
        "NaN label (unknown label)": (set_label(np.nan), Expect(skip="not a finite number",
                                                                names_file=False)),
        "label out of range": (set_label(7.5), Expect(skip=r"outside the sentiment range",
                                                      names_file=False)),
        "NaN features": (feature(np.nan), Expect(skip="non-finite vision")),
        "inf features": (feature(np.inf), Expect(skip="non-finite vision")),
        # MOSI's own files repeat ids: both utterances are kept under '<id>__<split>_<row>' keys
        "duplicate ids": (duplicate_ids, KEPT),
        "missing split key": (lambda c: _mosi_edit(c, lambda d, row: d.pop("test")), Expect(error=r"missing split keys")),
        "corrupt pickle": (lambda c: c.media.write_bytes(b"not a pickle"), Expect(error="cannot be read as a pickle")),
        "truncated pickle": (lambda c: _truncate(c.media), Expect(error="cannot be read as a pickle")),
        "empty pickle": (lambda c: c.media.write_bytes(b""), Expect(error="cannot be read as a pickle")),
        "empty folder": (lambda c: c.media.unlink(), Expect(error="pickle not found")),
        "corrupt video": na, "truncated video": na, "video without audio stream": na,
        "zero decodable frames": na, "silent audio": na, "audio shorter than one STFT window": na,
        "implausible sample rate": na,
    }


CASES = {"cremad": _cremad_cases(), "ave": _mp4_cases("ave"), "kinetics_sounds": _mp4_cases("kinetics_sounds"),
         "ucf101": _ucf_cases(), "mosi": _mosi_cases()}


def _params():
    out = []
    for ds, cases in CASES.items():
        for name, case in sorted(cases.items()):
            if isinstance(case, pytest.MarkDecorator):  # not applicable: reason in the mark
                out.append(pytest.param(ds, None, None, id=f"{ds}-{name}-n/a", marks=case))
            else:
                out.append(pytest.param(ds, *case, id=f"{ds}-{name}"))
    return out


# --- the test -------------------------------------------------------------------------------------


def _shard_keys(out: Path, index: dict) -> set[tuple[str, str]]:
    return {(split, s["key"]) for split in index["splits"] for s in iter_samples(shard_urls(out, split))}


@pytest.mark.parametrize(("ds", "breaker", "expect"), _params())
def test_bad_input(ds, breaker, expect, pristine, tmp_path):
    base = pristine(ds)
    root = tmp_path / "raw"
    shutil.copytree(base.root, root)
    victim_key = min(k for k in base.clips if k[0] == "train")
    original = base.clips[victim_key]
    clip = replace(original, paths={k: root / Path(p).relative_to(base.root) for k, p in original.paths.items()})
    breaker(Ctx(root, ds, clip, base.clips))
    usable, lines = validate(ds, root, SPLITS[ds], RECIPE)
    out = tmp_path / "shards"

    if expect.error:
        assert not usable and re.search(expect.error, lines[0]) and str(root) in lines[0], lines
        with pytest.raises(DatasetLayoutError, match=expect.error) as err:
            prepare(ds, root, out, RECIPE, SPLITS[ds], workers=1, shard_max_count=100)
        assert str(root) in str(err.value) and lines == [f"ERROR {err.value}"]
        return

    assert usable, lines
    index = prepare(ds, root, out, RECIPE, SPLITS[ds], workers=1, shard_max_count=100)
    keys = _shard_keys(out, index)
    skipped = index["skipped"]
    # validate decodes with the same per-clip check: the same problems, the same usable counts
    report = check_root(ds, root, SPLITS[ds], RECIPE)
    assert report.problems == skipped
    assert report.counts == {split: v["count"] for split, v in index["splits"].items()}
    assert lines == report.lines()
    if expect.skip:
        hits = [s for s in skipped if re.search(expect.skip, s["reason"])]
        assert hits, skipped
        if expect.dropped and expect.listed_by_id:
            assert any(s["clip_id"] == clip.clip_id for s in hits), hits
        if expect.names_file:
            assert any(Path(p).name in s["reason"] + s["path"] for s in hits for p in clip.paths.values()), hits
    else:
        assert len(skipped) == len(base.skips), skipped
    # nothing dropped silently: every other clip is in the shards, the victim too unless skipped
    expected = set(base.clips) - ({victim_key} if expect.skip and expect.dropped else set())
    if ds == "mosi" and not expect.skip:  # repeated ids: both kept under split/row-suffixed keys
        assert len(keys) == len(expected) and sum("__" in k for _, k in keys) == 2
    else:
        assert keys == expected
    assert sum(v["count"] for v in index["splits"].values()) == len(keys)
