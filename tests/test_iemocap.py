"""IEMOCAP: the release-layout adapter (four classes, MLA's split, skips, errors), its decoding and
the mini generator."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmbalance.datasets import DatasetLayoutError, get_dataset, list_datasets
from mmbalance.datasets.iemocap import (
    CLASSES,
    hashed_embedding,
    mla_split,
    parse_transcription,
    span_indices,
    tokenize,
)
from mmbalance.datasets.mini import get_generator, list_generators
from mmbalance.media.video import read_frames
from mmbalance.prepare import prepare
from mmbalance.shards import iter_samples, shard_urls

ROOT = Path(__file__).parents[1]
KW = {"split_counts": [24, 6, 12], "other_utterances": 3, "show_progress": False}
RECIPE = {"sample_rate": 16000, "n_fft": 512, "win_length": 512, "hop_length": 159, "window": "tukey",
          "scaling": "density", "normalize": True, "clip_seconds": 2, "frame_fps": 2, "frame_size": 32,
          "text_featurizer": "hashed", "text_dim": 16}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        root = tmp_path_factory.mktemp(name)
        out[name + "_summary"] = get_generator("iemocap")(root, seed=seed, **KW)
        out[name] = root
    return out


def _copy(runs, tmp_path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(runs["a"], root)
    return root


def test_registered():
    assert "iemocap" in list_datasets() and "iemocap" in list_generators()
    adapter = get_dataset("iemocap")
    assert adapter.classes == ("Angry", "Happy", "Neutral", "Sad")  # MLA: sorted(stat_iemo.txt)
    assert adapter.kinds == {"audio": "spectrogram", "video": "frames", "text": "sequence"}


def test_mla_split_is_the_papers_3318_and_1107():
    listed = mla_split()
    assert Counter(listed.values()) == {"train": 3318, "test": 1107}
    assert all(re.fullmatch(r"Ses0[1-5][FM]_\w+_[FM]\d{3}", u) for u in listed)
    assert len({u.rsplit("_", 1)[0] for u in listed}) == 151  # every dialog of the release


def test_scan_of_the_generated_layout(runs):
    clips, skips = get_dataset("iemocap").scan(runs["a"])
    ids = [c.clip_id for c in clips]
    assert ids == sorted(ids) and len(ids) == 42
    assert Counter(c.split for c in clips) == {"train": 24, "val": 6, "test": 12}
    listed = mla_split()
    assert all(listed.get(c.clip_id, "val") == c.split for c in clips)  # unlisted = MLA's dev fifth
    assert {c.label for c in clips} <= set(range(len(CLASSES)))
    assert len(skips) == 3 and all(re.match(r"emotion '(fru|sur|xxx|oth)' is not one of", s.reason) for s in skips)
    assert all(re.search(r"EmoEvaluation/Ses0\d[FM]_\w+\.txt:\d+$", s.path) for s in skips)
    clip = clips[0]
    dialog, session = clip.clip_id.rsplit("_", 1)[0], f"Session{clip.clip_id[4]}"
    assert clip.paths == {
        "audio": runs["a"] / session / "sentences/wav" / dialog / f"{clip.clip_id}.wav",
        "video": runs["a"] / session / "dialog/avi/DivX" / f"{dialog}.avi",
        "text": runs["a"] / session / "dialog/transcriptions" / f"{dialog}.txt",
    }
    assert 0 < clip.start_s < clip.end_s


def test_labels_follow_the_emotion_codes(runs):
    truth = {}
    for line in (runs["a"] / "mini_truth.csv").read_text().splitlines()[1:]:
        utt, _, _, code, label, *_ = line.split(",")
        truth[utt] = (code, int(label))
    clips, _ = get_dataset("iemocap").scan(runs["a"])
    names = {"ang": "Angry", "hap": "Happy", "exc": "Happy", "neu": "Neutral", "sad": "Sad"}
    assert all(CLASSES[c.label] == names[truth[c.clip_id][0]] == CLASSES[truth[c.clip_id][1]] for c in clips)


def test_session_protocol_and_split_csv(runs, tmp_path):
    adapter = get_dataset("iemocap")
    clips, _ = adapter.scan(runs["a"], protocol="session", test_session=5, val_fraction=0.25)
    assert all((c.split == "test") == c.clip_id.startswith("Ses05") for c in clips)
    rest = [c for c in clips if c.split != "test"]
    assert sum(c.split == "val" for c in clips) == round(0.25 * len(rest))
    first, second = clips[0].clip_id, clips[1].clip_id
    csv = tmp_path / "split.csv"
    csv.write_text(f"clip_id,split\n{first},test\n{second},train\nSes01F_impro01_F999,val\n")
    listed, skips = adapter.scan(runs["a"], split_csv=csv)
    assert {c.clip_id: c.split for c in listed} == {first: "test", second: "train"}
    reasons = {s.clip_id: s.reason for s in skips}
    assert "listed in split file" in reasons["Ses01F_impro01_F999"] and reasons[clips[2].clip_id] == "not in split file"
    with pytest.raises(ValueError, match="protocol"):
        adapter.scan(runs["a"], protocol="random")


def test_layout_problems_are_skips_naming_the_file(runs, tmp_path):
    root = _copy(runs, tmp_path)
    clips, _ = get_dataset("iemocap").scan(root)
    a, b = clips[0], next(c for c in clips if c.paths["video"] != clips[0].paths["video"])
    Path(a.paths["audio"]).unlink()
    evaluation = Path(str(a.paths["text"]).replace("transcriptions", "EmoEvaluation"))
    lines = evaluation.read_text().splitlines()
    evaluation.write_text("\n".join([*lines, "[1.0 - x]\tbroken line"]) + "\n")
    c = next(c for c in clips if c.paths["video"] not in (a.paths["video"], b.paths["video"]))
    other = Path(str(c.paths["text"]).replace("transcriptions", "EmoEvaluation"))
    repeated = next(line for line in other.read_text().splitlines() if f"\t{c.clip_id}\t" in line)
    other.write_text(other.read_text() + repeated + "\n")
    text = Path(b.paths["text"])
    text.write_text("".join(line + "\n" for line in text.read_text().splitlines() if not line.startswith(b.clip_id)))
    found, skips = get_dataset("iemocap").scan(root)
    reasons = {s.clip_id: (s.reason, s.path) for s in skips}
    assert reasons[a.clip_id][0] == f"audio missing: expected {a.paths['audio']}"
    assert reasons[b.clip_id][0] == f"no line for the utterance in {text}"
    broken = next(s for s in skips if "broken line" in s.reason)
    assert broken.path == f"{evaluation}:{len(lines) + 1}"
    assert any(s.clip_id == c.clip_id and s.reason.startswith("listed again") for s in skips)
    assert len(found) == len(clips) - 2
    Path(c.paths["video"]).unlink()
    _, skips = get_dataset("iemocap").scan(root)
    assert (c.clip_id, f"video missing: expected {c.paths['video']}") in {(s.clip_id, s.reason) for s in skips}


def test_unusable_roots_raise_naming_the_path(tmp_path):
    adapter = get_dataset("iemocap")
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        adapter.scan(tmp_path / "nowhere")
    with pytest.raises(DatasetLayoutError, match=r"none of Session1.*IEMOCAP_full_release"):
        adapter.scan(tmp_path)
    (tmp_path / "Session2").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"Session2/dialog/EmoEvaluation: EmoEvaluation folder is missing"):
        adapter.scan(tmp_path)
    (tmp_path / "Session2/dialog/EmoEvaluation").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="no usable four-class IEMOCAP utterance"):
        adapter.scan(tmp_path)


def test_parsing_and_span_by_hand(tmp_path):
    assert tokenize("Yeah.  I'm [LAUGHTER] fine, O.K.") == ["yeah", "i'm", "[laughter]", "fine", "o", "k"]
    path = tmp_path / "t.txt"
    path.write_text("Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\nM: [BREATHING]\n"
                    "Ses01F_impro01_M000 [007.5712-010.4750]: Do you have your forms?\n")
    assert parse_transcription(path) == {"Ses01F_impro01_F000": "Excuse me.", "Ses01F_impro01_M000": "Do you have your forms?"}
    assert span_indices(0.7155, 2.6028, 2) == range(2, 6)  # frames at 1.0, 1.5, 2.0, 2.5 s
    assert span_indices(2.0, 3.0, 2) == range(4, 6)  # a frame exactly at the start is inside
    assert span_indices(1.1, 1.3, 2) == range(2, 3)  # no frame start inside: the frame covering 1.2 s
    vec = hashed_embedding("hello", 8)
    assert vec.shape == (8,) and vec.dtype == np.float32 and np.array_equal(vec, hashed_embedding("hello", 8))
    assert not np.array_equal(vec, hashed_embedding("hallo", 8))


def test_extract_reads_the_span_and_the_line(runs):
    adapter = get_dataset("iemocap")
    clips, _ = adapter.scan(runs["a"])
    clip = clips[3]
    arrays = adapter.extract(clip, RECIPE)
    assert arrays["audio"].shape == (257, 199) and arrays["audio"].dtype == np.float32
    whole = read_frames(clip.paths["video"], fps=2, size=32)
    span = span_indices(clip.start_s, clip.end_s, 2)
    np.testing.assert_array_equal(arrays["video"], whole[span.start : span.stop])
    words = parse_transcription(clip.paths["text"])[clip.clip_id]
    np.testing.assert_array_equal(arrays["text"], np.stack([hashed_embedding(t, 16) for t in tokenize(words)]))
    with pytest.raises(ValueError, match="text_featurizer"):
        adapter.extract(clip, {**RECIPE, "text_featurizer": "bert"})


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_generator_is_byte_identical_for_a_seed(runs):
    assert _digest(runs["a"]) == _digest(runs["b"]) != _digest(runs["c"])
    summary = runs["a_summary"]
    assert summary["split_counts"] == {"train": 24, "val": 6, "test": 12} and summary["other_utterances"] == 3
    assert summary["text_uninformative"] == round(0.3 * 42) and summary["video_uninformative"] == round(0.5 * 42)


def test_generator_writes_the_release_files(runs):
    avi = next((runs["a"] / "Session1/dialog/avi/DivX").glob("*.avi"))
    import av

    with av.open(str(avi)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "mpeg4" and stream.codec_tag == "DIVX"
    evaluation = (runs["a"] / "Session1/dialog/EmoEvaluation" / f"{avi.stem}.txt").read_text().splitlines()
    assert evaluation[0] == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
    assert re.fullmatch(r"\[\d+\.\d{4} - \d+\.\d{4}\]\tSes01[FM]_\w+_[FM]\d{3}\t\w{3}\t\[.*\]", evaluation[2])


def test_generator_refuses_to_overwrite_real_data(tmp_path):
    (tmp_path / "Session1").mkdir()
    with pytest.raises(FileExistsError, match="not overwriting"):
        get_generator("iemocap")(tmp_path, **KW)


def test_prepare_and_a_training_step(runs, tmp_path):
    from mmbalance.params import load_params, resolve_run
    from mmbalance.train.run import run

    split = {"split_csv": None, "protocol": "mla"}
    index = prepare("iemocap", runs["a"], tmp_path / "shards", RECIPE, split, workers=1, shard_max_count=100)
    assert {s: v["count"] for s, v in index["splits"].items()} == {"train": 24, "val": 6, "test": 12}
    assert {m: e["kind"] for m, e in index["modalities"].items()} == {"audio": "spectrogram", "video": "frames", "text": "sequence"}
    assert index["modalities"]["video"]["shape"] == [None, 32, 32, 3] and index["modalities"]["text"]["shape"] == [None, 16]
    assert len(index["skipped"]) == 3 and index["frames_per_clip"] == 1
    sample = next(iter_samples(shard_urls(tmp_path / "shards", "test")))
    assert sample["text"].dtype == np.float32 and sample["video"].dtype == np.uint8
    params = load_params(ROOT / "params.yaml")
    train = {**params["train"], "epochs": 1, "batch_size": 16}
    for name in ("concat", "video_only"):
        method, cfg, model = resolve_run(params, name)
        res = run(tmp_path / "shards", tmp_path / name, "iemocap", method, cfg, model, train, [0], "mini", run_name=name)
        probes = set(res["seeds"]["0"]["test"]["probe_acc"])
        assert probes == ({"audio", "video", "text"} if name == "concat" else {"video"})
