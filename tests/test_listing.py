"""The raw-data listing the generate stage writes and the prepare stage depends on (root_dep)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmbalance.datasets import listing
from mmbalance.profiles import deep_merge

ROOT = Path(__file__).parents[1]


def test_listing_by_hand(tmp_path):
    root = tmp_path / "raw"
    (root / "b").mkdir(parents=True)
    (root / "b" / "x.wav").write_bytes(b"abc")
    (root / "a.txt").write_bytes(b"")
    out = listing.write(root, tmp_path / "raw.files.json")
    assert out == json.loads((tmp_path / "raw.files.json").read_text())
    assert out["root"] == root.as_posix()
    assert out["files"] == {"a.txt": {"md5": hashlib.md5(b"").hexdigest(), "size": 0},
                            "b/x.wav": {"md5": "900150983cd24fb0d6963f7d28e17f72", "size": 3}}  # md5("abc")
    before = (tmp_path / "raw.files.json").read_bytes()
    (root / "b" / "x.wav").write_bytes(b"abd")  # one changed byte changes the listing (prepare re-runs)
    listing.write(root, tmp_path / "raw.files.json")
    assert (tmp_path / "raw.files.json").read_bytes() != before


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(ValueError, match="raw: no files to list"):
        listing.write(tmp_path / "raw", tmp_path / "raw.files.json")


def test_root_dep_must_stand_for_the_root(tmp_path):
    mini, real = tmp_path / "data" / "raw" / "cremad", tmp_path / "real"
    (mini / "AudioWAV").mkdir(parents=True)
    (mini / "AudioWAV" / "1001_DFA_ANG_XX.wav").write_bytes(b"RIFF")
    dep = tmp_path / "cremad.files.json"
    listing.write(mini, dep)
    listing.check_root_dep(mini, dep)  # the generate stage's listing of that root
    listing.check_root_dep(real, real)  # real data: the folder itself
    # a listing left from the mini data while root points at real data: DVC would miss their changes
    with pytest.raises(ValueError, match=r"cremad.files.json lists .*cremad, but prepare reads .*real"):
        listing.check_root_dep(real, dep)
    with pytest.raises(ValueError, match="neither the root"):
        listing.check_root_dep(real, tmp_path / "missing.json")
    (tmp_path / "other.json").write_text("[]")
    with pytest.raises(ValueError, match="other.json: not a raw-data listing"):
        listing.check_root_dep(real, tmp_path / "other.json")


def test_prepare_stage_refuses_a_stale_listing(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"1")
    listing.write(tmp_path / "a", tmp_path / "a.files.json")
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare.py"), "--dataset", "cremad", "--root",
                           str(tmp_path / "b"), "--root-dep", str(tmp_path / "a.files.json"), "--out", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "prepare cremad:" in proc.stderr and "a.files.json lists" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("profile", [None, "quick", "full", "fullsize", "paper"])
def test_every_profile_gives_each_dataset_a_root_dep(profile):
    """Mini data: root_dep is the listing the generate stage writes of that root; real data: the root."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if profile:
        params = deep_merge(params, yaml.safe_load((ROOT / "profiles" / f"{profile}.yaml").read_text()) or {})
    generated = {f"data/raw/{name}" for name in params["generate"]}
    for name, block in params["datasets"].items():
        root, dep = block["root"], block["root_dep"]
        if root in generated:
            assert dep == f"{root}.files.json", name
        else:
            assert dep == root and not root.startswith("data/raw/"), name
