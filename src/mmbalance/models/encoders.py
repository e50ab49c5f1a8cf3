"""Encoder registry: modality input → feature vector [B, D].

Inputs are [B, C, H, W] (a spectrogram, C = 1) or [B, T, C, H, W] (T frames); frames are encoded
one by one and their features averaged, as the papers' ResNet-18 pipelines do (per-frame 2-D
convolutions, then average pooling over time).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from mmbalance.registry import Registry

ENCODERS: Registry = Registry("encoder")


class FrameAveraging(nn.Module):
    """Applies a 2-D encoder to each frame of [B, T, C, H, W] and averages over T."""

    def __init__(self, body: nn.Module, out_dim: int) -> None:
        super().__init__()
        self.body = body
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return self.body(x)
        b, t = x.shape[:2]
        feats = self.body(x.flatten(0, 1))  # [B*T, D]
        return feats.view(b, t, -1).mean(dim=1)


class TinyCNN(nn.Module):
    """3×3 stride-2 conv blocks (conv, BN, ReLU) and global average pooling.

    ``input_size`` optionally average-pools the input first (e.g. a 257×299 spectrogram to
    64×75): the mini profile keeps full-size inputs in the shards and shrinks them here.
    """

    def __init__(self, in_channels: int, channels: list[int], input_size: list[int] | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for width in channels:
            layers += [nn.Conv2d(prev, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            prev = width
        self.features = nn.Sequential(*layers)
        self.input_size = tuple(input_size) if input_size else None
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.adaptive_avg_pool2d(x, self.input_size)
        return self.features(x).mean(dim=(2, 3))  # [B, channels[-1]]


@ENCODERS.register("tiny_cnn")
def tiny_cnn(in_channels: int, channels: list[int] = (16, 32, 64), input_size: list[int] | None = None) -> FrameAveraging:
    """A small CNN for the mini profile (runs at thousands of samples/s on 2 CPU cores)."""
    body = TinyCNN(in_channels, list(channels), input_size)
    return FrameAveraging(body, body.out_dim)


@ENCODERS.register("resnet18")
def resnet18(in_channels: int, input_size: list[int] | None = None, pretrained: str = "") -> FrameAveraging:
    """torchvision ResNet-18 with an ``in_channels`` stem (1 for spectrograms, 2 for flow): from
    scratch, or from the ImageNet weights file at ``pretrained`` (a local path; nothing is
    downloaded at run time)."""
    net = torchvision.models.resnet18(weights=None)
    if pretrained:
        net.load_state_dict(imagenet_weights(Path(pretrained), in_channels))
    if in_channels != 3:
        stem = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if pretrained:
            stem.weight.data.copy_(_stem_weights(net.conv1.weight.data, in_channels))
        net.conv1 = stem
    net.fc = nn.Identity()  # features: [B, 512]
    body: nn.Module = net
    if input_size:
        body = nn.Sequential(nn.AdaptiveAvgPool2d(tuple(input_size)), net)
    return FrameAveraging(body, 512)


def imagenet_weights(path: Path, in_channels: int) -> dict:
    """torchvision's ResNet-18 ImageNet state dict (e.g. ``resnet18-f37072fd.pth``) from ``path``;
    a missing or unreadable file is an error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"model.encoders.*.pretrained: no ResNet-18 ImageNet weights at {path} (the file is "
                                "not downloaded at run time: copy torchvision's resnet18-f37072fd.pth there, or set '')")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which
        raise ValueError(f"{path}: not a readable torch state dict ({err})") from err
    state = state.get("state_dict", state)
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise ValueError(f"{path}: not a torchvision ResNet-18 state dict (no conv1.weight / fc.weight)")
    return state


def _stem_weights(rgb: torch.Tensor, in_channels: int) -> torch.Tensor:
    """[64, 3, 7, 7] ImageNet stem → [64, in_channels, 7, 7]: the RGB mean repeated per channel
    (the usual cross-modality initialisation; the papers do not state theirs)."""
    return rgb.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)


def build_encoder(cfg: dict, in_channels: int) -> FrameAveraging:
    """Build an encoder from its params block (``name`` plus the factory's keyword arguments)."""
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    return ENCODERS.get(cfg["name"])(in_channels=in_channels, **kwargs)
