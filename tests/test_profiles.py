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
