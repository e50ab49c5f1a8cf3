from pathlib import Path

import yaml

from mmbalance.models import build_model
from mmbalance.profiles import deep_merge

ROOT = Path(__file__).parents[1]


def test_deep_merge_nested_and_replace():
    base = {"a": {"x": 1, "y": 2}, "enc": {"name": "tiny_cnn", "channels": [4]}, "g": {"c": {}}}
    over = {"a": {"y": 3}, "enc": {"name": "resnet18"}, "g": {}}
    assert deep_merge(base, over) == {"a": {"x": 1, "y": 3}, "enc": {"name": "resnet18"}, "g": {}}


def test_paper_profile_builds_resnet18_model():
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load((ROOT / "profiles/paper.yaml").read_text()))
    assert params["profile"] == "paper" and params["generate"] == {}
    assert set(params["methods"]) == set(yaml.safe_load((ROOT / "params.yaml").read_text())["methods"])
    model = build_model(params["model"], ["audio", "visual"], {"audio": 1, "visual": 3}, 6, "concat",
                        {"audio": "spectrogram", "visual": "frames"})
    assert model.encoders["audio"].out_dim == 512
    assert model.encoders["audio"].body.conv1.in_channels == 1


def test_every_profile_trains_the_runs_its_stages_read():
    """Stages reading trained models of named runs (embed: params embedding.runs) must find them
    in the profile's benchmark lists, or `dvc repro` stops on a missing dependency."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for profile in [None, *sorted((ROOT / "profiles").glob("*.yaml"))]:
        params = base if profile is None else deep_merge(base, yaml.safe_load(profile.read_text()) or {})
        for ds, runs in params["embedding"]["runs"].items():
            missing = sorted(set(runs) - set(params["benchmark"].get(ds, [])))
            assert not missing, f"{profile or 'params.yaml'}: embedding.runs.{ds} lists {missing}, not in benchmark.{ds}"
