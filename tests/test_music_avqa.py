"""MUSIC-AVQA: template filling, the adapter on a tiny generated release (answer vocabulary,
official splits, one clip per question, skips with reasons), the per-video arrays, the shards,
validate against prepare, and the mini generator's determinism."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmbalance.datasets import DatasetLayoutError, get_dataset, list_datasets
from mmbalance.datasets.mini import get_generator, list_generators
from mmbalance.datasets.mini.music_avqa import JSON_DIR, VIDEO_DIR
from mmbalance.datasets.music_avqa import (SPLIT_FILES, QuestionClip, fill_template, parse_record, question_type,
                                           question_types, sampled_seconds)
from mmbalance.media import MediaError
from mmbalance.media.text import hashed_embeddings
from mmbalance.prepare import prepare
from mmbalance.validate import check_root

MINI = dict(train_videos=6, val_videos=2, test_videos=3, questions_per_video=3, duration_s=3.0, frame_size=16,
            show_progress=False)
RECIPE = dict(sample_rate=16000, n_fft=512, win_length=512, hop_length=159, window="tukey", scaling="density",
              normalize=True, spec_dtype="float16", frame_size=16, clip_frames=3, frames_per_clip=3,
              text_buckets=64, text_dim=8, text_seed=0)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini") / "music_avqa"
    get_generator("music_avqa")(root, seed=0, **MINI)
    return root


def _records(root: Path, split: str) -> list[dict]:
    return json.loads((root / JSON_DIR / SPLIT_FILES[split]).read_text())


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_registered():
    assert "music_avqa" in list_datasets() and "music_avqa" in list_generators()
    adapter = get_dataset("music_avqa")
    assert adapter.modalities == ("audio", "visual", "question")
    assert adapter.kinds == {"audio": "spectrogram", "visual": "frames", "question": "sequence"}


@pytest.mark.parametrize("content, values, filled", [
    ("Where is the <FL> sounding instrument?", ["first"], "Where is the first sounding instrument"),
    ("Is the <Object> more rhythmic than the <Object>?", ["violin", "acoustic_guitar"],
     "Is the violin more rhythmic than the acoustic_guitar"),
    ("Which instrument makes sounds <BA> the <Object>?", ["before", "piano", "extra"],
     "Which instrument makes sounds before the piano"),  # extra values ignored, as the authors' loader
    ("Is there a <Object>?", ["flute"], "Is there a flute"),  # the placeholder word carrying the "?"
    ("How many instruments are sounding in the video?", [], "How many instruments are sounding in the video"),
])
def test_templates_are_filled_as_the_authors_loader_fills_them(content, values, filled):
    assert fill_template(content, values) == filled


def test_malformed_records_say_what_is_wrong():
    good = {"video_id": "00000272", "question_id": 50, "type": '["Audio-Visual", "Temporal"]',
            "question_content": "Where is the <FL> sounding instrument?", "templ_values": '["first"]',
            "question_deleted": 0, "anser": "left"}
    q = parse_record(good, "f:0")
    assert (q.clip_id, q.question_type, q.text, q.answer) == ("00000272_50", "Audio-Visual-Temporal",
                                                              "Where is the first sounding instrument", "left")
    for change, message in [({"templ_values": "[]"}, "1 placeholders but templ_values holds 0"),
                            ({"type": "Audio"}, "type 'Audio' is not a list literal"),
                            ({"video_id": "a/b"}, "malformed video_id"),
                            ({"question_id": -1}, "question_id -1 is not a non-negative integer"),
                            ({"anser": ""}, "anser (the answer) '' is empty")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_record({**good, **change}, "f:0")
    with pytest.raises(ValueError, match="record lacks anser"):
        parse_record({k: v for k, v in good.items() if k != "anser"}, "f:0")


def test_scan_one_clip_per_question_in_the_official_splits(mini):
    adapter = get_dataset("music_avqa")
    clips, skips = adapter.scan(mini)
    records = {s: _records(mini, s) for s in SPLIT_FILES}
    # the answer vocabulary: avqa-train.json's answers in order of first appearance (the authors' ans_vocab)
    assert adapter.classes == tuple(dict.fromkeys(r["anser"] for r in records["train"]))
    # a val / test question whose answer train never gives is skipped (so few train questions: some are)
    known = {s: [r for r in rows if r["anser"] in adapter.classes] for s, rows in records.items()}
    assert {s.clip_id for s in skips} == {f"{r['video_id']}_{r['question_id']}" for rows in records.values()
                                          for r in rows if r["anser"] not in adapter.classes}
    assert all("is not in the answer vocabulary of avqa-train.json" in s.reason for s in skips)
    assert {s: sum(c.split == s for c in clips) for s in SPLIT_FILES} == {s: len(r) for s, r in known.items()}
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    by_id = {c.clip_id: c for c in clips}
    for split, rows in known.items():
        for r in rows:
            clip = by_id[f"{r['video_id']}_{r['question_id']}"]
            assert isinstance(clip, QuestionClip) and clip.split == split
            assert adapter.classes[clip.label] == r["anser"]
            assert clip.paths == {"video": mini / VIDEO_DIR / f"{r['video_id']}.mp4"}
            assert question_type(clip) == "-".join(json.loads(r["type"]))
            assert clip.question == fill_template(r["question_content"], json.loads(r["templ_values"]))
    types = question_types(mini)  # every parseable question, usable or not
    assert len(types) == sum(map(len, records.values())) and all(types[c.clip_id] == c.question_type for c in clips)


def test_skips_name_the_record_and_the_reason(mini, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(mini, root)
    test_file = root / JSON_DIR / SPLIT_FILES["test"]
    rows = json.loads(test_file.read_text())
    gone = rows[0]["video_id"]
    (root / VIDEO_DIR / f"{gone}.mp4").unlink()
    extra = {**rows[-1], "question_id": 99999, "anser": "ten"}  # an answer train never gives
    rows += [extra, {**rows[-1]}, {"video_id": "x"}]  # + a repeated question, a malformed record
    test_file.write_text(json.dumps(rows))
    (root / VIDEO_DIR / "00000000.mp4").write_bytes(b"")  # a video no question refers to
    clips, skips = get_dataset("music_avqa").scan(root)
    reasons = {(s.clip_id, s.reason.split(":")[0].split(" (")[0]) for s in skips}
    vocabulary = _vocabulary(root)  # (a question with an unknown answer is listed for that first)
    missing = {f"{r['video_id']}_{r['question_id']}" for r in rows[:-3] if r["video_id"] == gone and r["anser"] in vocabulary}
    assert missing
    assert {(c, "video missing") for c in missing} <= reasons
    unknown = [s for s in skips if s.clip_id == f"{extra['video_id']}_99999"]
    assert len(unknown) == 1 and unknown[0].reason.startswith("answer 'ten' is not in the answer vocabulary of avqa-train.json")
    assert unknown[0].path == f"{test_file}:{len(rows) - 3}"
    repeated = [s for s in skips if s.path == f"{test_file}:{len(rows) - 2}"]
    assert len(repeated) == 1 and repeated[0].reason.startswith("question listed again")
    assert any(s.path == f"{test_file}:{len(rows) - 1}" and "record lacks" in s.reason for s in skips)
    assert any(s.clip_id == "00000000" and "not referred to by any question" in s.reason for s in skips)
    assert not {c.clip_id for c in clips} & (missing | {f"{extra['video_id']}_99999"})


def test_layout_errors_name_the_paths(tmp_path):
    with pytest.raises(DatasetLayoutError, match=f"{tmp_path / 'nowhere'}: dataset root does not exist"):
        get_dataset("music_avqa").scan(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"no MUSIC-AVQA question files: looked for .*data/json/avqa-train.json"):
        get_dataset("music_avqa").scan(tmp_path / "empty")
    (tmp_path / "empty" / "json").mkdir()
    (tmp_path / "empty" / "json" / "avqa-train.json").write_text("{}")
    with pytest.raises(DatasetLayoutError, match=r"json/avqa-train.json: expected a JSON list"):
        get_dataset("music_avqa").scan(tmp_path / "empty")


def test_sampled_seconds_are_the_authors_every_sixth():
    assert sampled_seconds(60, 10) == [0, 6, 12, 18, 24, 30, 36, 42, 48, 54]
    assert sampled_seconds(3, 3) == [0, 1, 2]
    assert sampled_seconds(2, 4) == [0, 0, 1, 1]  # a short video repeats seconds: always k


def test_extract_arrays_and_a_videos_questions_share_them(mini):
    adapter = get_dataset("music_avqa")
    clips, _ = adapter.scan(mini)
    video = clips[0].paths["video"]
    same = [c for c in clips if c.paths["video"] == video]
    assert len(same) >= 2
    a, b = (adapter.extract(c, RECIPE) for c in same[:2])
    # 3 one-second snippets of 16 kHz audio: 1 + (48000 - 512) // 159 columns
    assert a["audio"].shape == (257, 1 + (48000 - 512) // 159) and a["audio"].dtype == np.float16
    assert a["visual"].shape == (3, 16, 16, 3) and a["visual"].dtype == np.uint8
    np.testing.assert_array_equal(a["audio"], b["audio"])
    np.testing.assert_array_equal(a["visual"], b["visual"])
    np.testing.assert_array_equal(a["question"], hashed_embeddings(same[0].question, buckets=64, dim=8, seed=0))
    with pytest.raises(MediaError, match="carries no question text"):
        adapter.extract(QuestionClip("x_1", 0, "train", {"video": video}), RECIPE)


def test_shards_and_validate_agree(mini, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(mini, root)
    victim = sorted((root / VIDEO_DIR).glob("*.mp4"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated: every question of the video is skipped
    index = prepare("music_avqa", root, tmp_path / "shards", RECIPE, {"split_csv": None}, workers=1, shard_max_count=8)
    report = check_root("music_avqa", root, {"split_csv": None}, RECIPE, workers=1)
    assert report.problems == index["skipped"] and report.counts == {s: v["count"] for s, v in index["splits"].items()}
    clips, _ = get_dataset("music_avqa").scan(root)
    asked = sorted(c.clip_id for c in clips if c.paths["video"] == victim)  # its questions with a known answer
    assert asked and sorted(p["clip_id"] for p in index["skipped"] if p["path"] == str(victim)) == asked
    assert index["classes"] == _vocabulary(mini)
    assert index["frames_per_clip"] == 3
    kinds = {m: e["kind"] for m, e in index["modalities"].items()}
    assert kinds == {"audio": "spectrogram", "visual": "frames", "question": "sequence"}


def _vocabulary(root: Path) -> list[str]:
    return list(dict.fromkeys(r["anser"] for r in _records(root, "train")))


def test_generator_is_deterministic_and_refuses_real_data(tmp_path):
    small = {**MINI, "train_videos": 3, "val_videos": 1, "test_videos": 1}
    first = get_generator("music_avqa")(tmp_path / "a", seed=3, workers=1, **small)
    second = get_generator("music_avqa")(tmp_path / "b", seed=3, workers=2, **small)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert {k: v for k, v in first.items() if k != "root"} == {k: v for k, v in second.items() if k != "root"}
    other = get_generator("music_avqa")(tmp_path / "c", seed=4, **small)
    assert _digest(tmp_path / "c") != _digest(tmp_path / "a") and other["questions"]["train"] >= 3
    # every record has the release's keys and string-encoded lists
    for r in _records(tmp_path / "a", "train"):
        assert list(r) == ["video_id", "question_id", "type", "question_content", "templ_values", "question_deleted", "anser"]
        assert isinstance(json.loads(r["type"]), list) and isinstance(json.loads(r["templ_values"]), list)
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="no mini_truth.csv; not overwriting it"):
        get_generator("music_avqa")(real, seed=0, **small)
    with pytest.raises(ValueError, match="duration_s must be >= max"):
        get_generator("music_avqa")(tmp_path / "d", seed=0, **{**small, "duration_s": 2.0})


def test_missing_videos_are_listed_not_written(tmp_path):
    small = {**MINI, "train_videos": 4, "val_videos": 1, "test_videos": 1, "missing_videos": 1}
    summary = get_generator("music_avqa")(tmp_path / "m", seed=0, **small)
    assert summary["missing_videos"] == 1
    assert len(list((tmp_path / "m" / VIDEO_DIR).glob("*.mp4"))) == 5
    _, skips = get_dataset("music_avqa").scan(tmp_path / "m")
    missing = [s for s in skips if s.reason.startswith("video missing")]
    assert missing and all(s.path.startswith(str(tmp_path / "m" / JSON_DIR / "avqa-train.json")) for s in missing)
