"""The paper profile: per-dataset overrides, GPU settings resolving on a CPU, ResNet-18 weights."""

from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from mmbalance.models import build_model
from mmbalance.models.encoders import resnet18
from mmbalance.profiles import deep_merge
from mmbalance.train import runtime
from mmbalance.train.run import for_dataset

ROOT = Path(__file__).parents[1]
AV = (["audio", "visual"], {"audio": 1, "visual": 3}, 6, "concat", {"audio": "spectrogram", "visual": "frames"})


@pytest.fixture(scope="module")
def paper():
    return deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load((ROOT / "profiles/paper.yaml").read_text()))


def test_paper_profile_merges_per_dataset_blocks(paper):
    cremad, mosi = for_dataset(paper["train"], "cremad"), for_dataset(paper["train"], "mosi")
    assert "by_dataset" not in cremad and cremad["lr"] == 0.001 and cremad["batch_size"] == 64
    assert mosi["lr"] == 0.0001 and mosi["loader"] == "memory" and mosi["epochs"] == cremad["epochs"]
    assert cremad["device"] == "auto" and cremad["precision"] == "bf16" and cremad["loader"] == "stream"
    assert for_dataset({"lr": 1}, "cremad") == {"lr": 1}  # the mini profile has no per-dataset blocks


def test_paper_profile_builds_resnet18_without_weights(paper):
    model = build_model(for_dataset(paper["model"], "cremad"), *AV)
    assert model.encoders["audio"].out_dim == 512 and model.encoders["audio"].body.conv1.in_channels == 1
    if torch.cuda.is_available():
        return
    with pytest.warns(UserWarning, match="bf16 applies on CUDA only"):  # said once, not silently dropped
        rt = runtime.resolve(for_dataset(paper["train"], "cremad"))
    assert rt.device.type == "cpu" and not rt.bf16  # bf16 falls back to fp32 on a CPU


def test_missing_pretrained_file_names_it(paper, tmp_path):
    for ds in ("ucf101", "ucf101_three"):  # TPAMI §4.2: both UCF-101 settings start from ImageNet
        ucf = for_dataset(paper["model"], ds)
        assert ucf["encoders"]["frames"]["pretrained"].endswith("resnet18-f37072fd.pth")
    assert not for_dataset(paper["model"], "kinetics_sounds")["encoders"]["frames"]["pretrained"]
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        resnet18(3, pretrained=str(tmp_path / "nothere.pth"))


def test_pretrained_weights_load_and_adapt_the_stem(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    rgb, flow = resnet18(3, pretrained=str(path)), resnet18(2, pretrained=str(path))
    torch.testing.assert_close(rgb.body.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    expected = ref.conv1.weight.mean(dim=1, keepdim=True).repeat(1, 2, 1, 1)
    torch.testing.assert_close(flow.body.conv1.weight, expected)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        resnet18(3, pretrained=str(tmp_path / "junk.pth"))


@pytest.mark.parametrize("backbone, modules", [("mmtm", 3), ("mmformer", 1)])
def test_paper_profile_intermediate_backbones_on_resnet18(paper, backbone, modules):
    """ARL Tab. 3 on the paper profile: MMTM after layer2-4, mmFormer (8 heads, 512 channels)
    after layer4; full-size CREMA-D inputs (one frame) give one 512-d feature per modality."""
    cfg = {**for_dataset(paper["model"], "cremad"), "backbone": backbone}
    model = build_model(cfg, *AV).eval()
    assert len(model.backbone.after) == modules and max(model.backbone.after) == 4
    x = {"audio": torch.randn(1, 1, 257, 299), "visual": torch.randn(1, 1, 3, 224, 224)}
    with torch.no_grad():
        feats = model.encode(x)
    assert all(f.shape == (1, 512) for f in feats.values())
