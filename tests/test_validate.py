"""`validate` lists exactly what `prepare` skips: the layout scan's problems and every clip whose
media the shared per-clip check rejects, with the same (clip id, file, reason) records."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmbalance.datasets import DatasetLayoutError, get_dataset, list_datasets
from mmbalance.datasets.mini import get_generator
from mmbalance.params import load_params, split_options
from mmbalance.prepare import prepare, recipe_from_params
from mmbalance.validate import check_root

ROOT = Path(__file__).parents[1]
PARAMS = load_params(ROOT / "params.yaml")

# datasets written by another dataset's generator (they share its raw root)
GENERATOR = {"ucf101_three": "ucf101"}
# Generator settings for a root of a few clips per dataset (each builds in under a second).
TINY = {
    "cremad": {"clips_per_class": 1},
    "ave": {"num_classes": 2, "clips_per_class": 3, "duplicate_lines": 0, "frame_size": 16},
    "ave_loc": {"num_classes": 2, "clips_per_class": 3, "duplicate_lines": 0, "frame_size": 16},
    "music_avqa": {"train_videos": 6, "val_videos": 2, "test_videos": 3, "questions_per_video": 2, "duration_s": 3.0, "frame_size": 16},
    "kinetics_sounds": {"num_classes": 2, "clips_per_class": 4, "val_fraction": 0.0, "no_audio_clips": 0,
                        "frame_size": 16},
    "vggsound": {"num_classes": 2, "clips_per_class": 4, "test_fraction": 0.25, "missing_videos": 0,
                 "no_audio_clips": 0, "frame_size": 16},
    "ucf101": {"clips_per_class": 8, "groups": 8, "duration_s": 2.0, "classes": ["ApplyEyeMakeup", "Basketball"]},
    # UCF-101-Three reads the UCF-101 layout (datasets.ucf101_three.root is the ucf101 raw root)
    "ucf101_three": {"clips_per_class": 8, "groups": 8, "duration_s": 2.0, "classes": ["ApplyEyeMakeup", "Basketball"]},
    "nvgesture": {"num_classes": 2, "subjects": 3, "test_subjects": 1, "repetitions": 2, "video_frames": 8,
                  "gesture_frames": 4, "frame_size": 16},
    "mosi": {"utterances": 100},
    "sarcasm": {"train_size": 12, "val_size": 4, "test_size": 4, "image_size": 16},
    "iemocap": {"split_counts": [6, 2, 4], "other_utterances": 2, "frame_size": 16},
}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 4 // 10])


BREAKS = {"truncated": _truncate, "emptied": lambda p: p.write_bytes(b""), "deleted": Path.unlink}


def _victim(clip) -> Path:
    """The clip's video where it has one (a WAV cut short: test_truncated_wav_is_listed_by_both)."""
    return clip.paths.get("video") or next(iter(clip.paths.values()))


def _validated(dataset, root, split, recipe) -> tuple:
    """validate's verdict: ("error", message) or ("ok", problems, usable clips per split)."""
    try:
        report = check_root(dataset, root, split, recipe, workers=2)
    except DatasetLayoutError as err:
        return "error", str(err)
    return "ok", report.problems, report.counts


def _prepared(dataset, root, out, split, recipe) -> tuple:
    """prepare's verdict in the same form, from its index.json (in-process decoding: the
    comparison also shows the worker pool changes nothing)."""
    try:
        index = prepare(dataset, root, out, recipe, split, workers=1, shard_max_count=100)
    except DatasetLayoutError as err:
        return "error", str(err)
    return "ok", index["skipped"], {s: v["count"] for s, v in index["splits"].items()}


def _cases(files: list[Path]) -> list[list[tuple[str, Path]]]:
    """Three clips broken in one root; where one file holds every clip (MOSI's pickle), each
    break on its own copy of the root."""
    if len(files) >= len(BREAKS):
        return [list(zip(BREAKS, files))]
    return [[(name, files[0])] for name in BREAKS]


@pytest.mark.parametrize("dataset", list_datasets())
def test_validate_lists_what_prepare_skips(dataset, tmp_path):
    assert dataset in TINY, f"no tiny generator settings for {dataset!r} in TINY"
    pristine = tmp_path / "pristine"
    get_generator(GENERATOR.get(dataset, dataset))(pristine, seed=0, show_progress=False, **TINY[dataset])
    split, recipe = split_options(PARAMS, dataset, ""), recipe_from_params(PARAMS, dataset)
    clips, _ = get_dataset(dataset).scan(pristine, **split)
    owner = {_victim(c): c.clip_id for c in reversed(clips)}  # file -> first clip using it
    files = sorted(owner, key=lambda f: owner[f])
    for i, case in enumerate(_cases(files)):
        root = tmp_path / f"raw{i}"
        shutil.copytree(pristine, root)
        for name, file in case:
            BREAKS[name](root / file.relative_to(pristine))
        validated = _validated(dataset, root, split, recipe)
        assert validated == _prepared(dataset, root, tmp_path / f"shards{i}", split, recipe), case
        if validated[0] == "ok":  # the truncated and the emptied clip are listed under their own file
            listed = {(p["clip_id"], Path(p["path"]).name) for p in validated[1]}
            for name, file in case:
                assert name == "deleted" or (owner[file], file.name) in listed, (name, file, validated[1])


def _validate(root, *extra):
    return subprocess.run([sys.executable, str(ROOT / "stages/validate.py"), "--dataset", "cremad", "--root", str(root),
                           "--params", str(ROOT / "params.yaml"), *extra], capture_output=True, text=True)


def test_validate_lists_problems_with_paths(tmp_path):
    root = tmp_path / "cremad"
    get_generator("cremad")(root, clips_per_class=2, seed=0, show_progress=False)
    (root / "AudioWAV" / "1001_DFA_XXX_XX.wav").write_bytes(b"")  # unknown emotion code
    victim, empty = sorted((root / "VideoFlash").glob("*.flv"))[:2]
    victim.unlink()
    empty.write_bytes(b"")
    proc = _validate(root)
    assert proc.returncode == 0, proc.stderr
    assert "10 usable clips" in proc.stdout
    assert "1001_DFA_XXX_XX" in proc.stdout
    assert f"video missing: expected {victim}" in proc.stdout
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith(f"SKIP {empty.stem}: ")]
    assert line.startswith(f"SKIP {empty.stem}: {empty}: cannot decode video") and line.endswith(f"[{empty}]")
    layout = _validate(root, "--layout-only")  # no decoding: the empty file goes unseen
    assert layout.returncode == 0 and "11 usable clips" in layout.stdout and str(empty) not in layout.stdout


def test_truncated_wav_is_listed_by_both(tmp_path):
    """A WAV cut short decodes as a shorter recording; its header's data size says otherwise."""
    root = tmp_path / "cremad"
    get_generator("cremad")(root, **TINY["cremad"], seed=0, show_progress=False)
    victim = sorted((root / "AudioWAV").glob("*.wav"))[0]
    _truncate(victim)
    split, recipe = split_options(PARAMS, "cremad", ""), recipe_from_params(PARAMS, "cremad")
    validated = _validated("cremad", root, split, recipe)
    assert validated == _prepared("cremad", root, tmp_path / "shards", split, recipe)
    (problem,) = validated[1]
    assert problem["clip_id"] == victim.stem and Path(problem["path"]) == victim
    assert "truncated wav: the header declares" in problem["reason"]


def test_validate_missing_root_fails(tmp_path):
    proc = _validate(tmp_path / "nope")
    assert proc.returncode == 1
    assert str(tmp_path / "nope") in proc.stdout
