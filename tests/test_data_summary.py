"""The report's per-dataset data paragraph: split counts and skipped clips grouped by reason."""

import json

from mmbalance.report.data_summary import data_section, load_data_summaries, skip_reason, summarize_index

INDEX = {
    "dataset": "kinetics_sounds",
    "splits": {"test": {"count": 120}, "train": {"count": 598}, "val": {"count": 80}},
    "skipped": [
        {"clip_id": "a", "path": "raw/train/x/a.mp4", "reason": "raw/train/x/a.mp4: file has no audio stream"},
        {"clip_id": "b", "path": "raw/train/y/b.mp4", "reason": "raw/train/y/b.mp4: file has no audio stream"},
        {"clip_id": "c", "path": "raw/trainSet.txt", "reason": "duplicate video id: raw/trainSet.txt:94 is kept"},
    ],
}


def test_reasons_group_without_paths():
    assert skip_reason(INDEX["skipped"][0]) == "file has no audio stream"
    assert skip_reason(INDEX["skipped"][2]) == "duplicate video id"
    assert skip_reason({"reason": ""}) == "no reason recorded"


def test_section_lists_splits_in_order_and_reasons_by_count(tmp_path):
    path = tmp_path / "index.json"
    path.write_text(json.dumps(INDEX))
    summary = load_data_summaries([path])["kinetics_sounds"]
    assert summary.splits == {"train": 598, "val": 80, "test": 120} and summary.skipped == 3
    assert data_section(summary) == (
        f"**Data.** 598 train / 80 val / 120 test clips in the shards; 3 skipped and listed with "
        f"their paths in `{path}`: file has no audio stream (2); duplicate video id (1).")


def test_section_without_skips():
    text = data_section(summarize_index({"dataset": "cremad", "splits": {"train": {"count": 1458}}}))
    assert text == "**Data.** 1,458 train clips in the shards; no clip skipped."


def test_section_of_a_localisation_split_says_rows_are_segments():
    text = data_section(summarize_index({"dataset": "ave_loc", "segments": 10, "splits": {"test": {"count": 240}}}))
    assert text == ("**Data.** 240 test clips in the shards (10 labelled one-second segments each: accuracies are "
                    "per segment); no clip skipped.")
