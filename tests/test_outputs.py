"""Helpers for generated outputs: per-entry folders and JSON written one entry per line."""

import json

from mmbalance.outputs import json_lines, remove_unlisted, write_if_changed


def test_json_lines_opens_the_first_levels_and_keeps_their_order():
    data = {"b": {"y": {"value": [1, 2], "step": [0, 1]}, "x": {}}, "a": "root"}
    text = json_lines(data, depth=2)
    assert text == ('{\n'
                    '  "b": {\n'
                    '    "y": {"step": [0, 1], "value": [1, 2]},\n'
                    '    "x": {}\n'
                    '  },\n'
                    '  "a": "root"\n'
                    '}\n')
    assert json.loads(text) == data


def test_json_lines_depth_zero_is_one_line():
    assert json_lines({"b": 1, "a": [1]}, depth=0) == '{"a": [1], "b": 1}\n'


def test_write_if_changed_keeps_an_unchanged_file(tmp_path):
    path = write_if_changed(tmp_path / "f.txt", "x")
    before = path.stat().st_mtime_ns
    write_if_changed(path, "x")
    assert path.stat().st_mtime_ns == before and path.read_text() == "x"


def test_remove_unlisted_deletes_stale_entries_only(tmp_path):
    keep, stale, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.txt"
    for p in (keep, stale, other):
        p.write_text("{}")
    remove_unlisted(tmp_path, [keep], "*.json")
    assert keep.exists() and not stale.exists() and other.exists()
