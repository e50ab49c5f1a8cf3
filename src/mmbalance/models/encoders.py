"""Encoder registry: modality input → feature vector [B, D].

Inputs are [B, C, H, W] (a spectrogram, C = 1) or [B, T, C, H, W] (T frames); frames are encoded
one by one and their features averaged, as the papers' ResNet-18 pipelines do (per-frame 2-D
convolutions, then average pooling over time).

The convolutional encoders also expose their stages (``FrameAveraging.stages``), so that an
intermediate-fusion backbone (``models/backbones.py``: MMTM, mmFormer) can run two encoders side
by side and exchange information between their feature maps. The Swin Transformer
(``models/swin.py``, registered from its own module) has no such stages.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.registry import Registry

ENCODERS: Registry = Registry("encoder")


@dataclass(frozen=True)
class Stages:
    """A 2-D encoder cut at its stage boundaries (the body's own modules, not copies).

    ``entry``: input [N, C, H, W] → the first block's input (e.g. ResNet's stem);
    ``blocks``: block i maps [N, C_{i-1}, H, W] → [N, channels[i], H', W'];
    ``exit``: the last block's maps → features [N, D] (global average pooling).
    """

    entry: Callable[[torch.Tensor], torch.Tensor]
    blocks: tuple[nn.Module, ...]
    channels: tuple[int, ...]
    exit: Callable[[torch.Tensor], torch.Tensor]


def select_frames(x: torch.Tensor, frames: int | None) -> torch.Tensor:
    """[B, T, C, H, W] → [B, k, C, H, W] with k = ``frames``: frames ⌊(2i+1)·T / 2k⌋, i < k (the
    centres of k equal segments); spectrograms, clips with ≤ k frames and ``frames`` None pass
    unchanged."""
    t = x.shape[1] if x.dim() == 5 else 0
    if not frames or t <= frames:
        return x
    k = int(frames)
    return x[:, [(2 * i + 1) * t // (2 * k) for i in range(k)]]


def average_frames(feats: torch.Tensor, t: int) -> torch.Tensor:
    """[B·T, ...] rows of T consecutive frames per clip → [B, ...], the mean over each clip's frames."""
    return feats if t == 1 else feats.view(-1, t, *feats.shape[1:]).mean(dim=1)


class FrameAveraging(nn.Module):
    """Applies a 2-D encoder to each frame of [B, T, C, H, W] and averages over T.

    ``stages`` is the body cut at its stage boundaries and ``frame_rows`` the frame handling of
    ``forward``, for backbones that run the stages themselves and fuse between them.
    ``frames`` (None = all) reads only that many of a clip's T stored frames, evenly spaced
    (``model.frames``; e.g. 1 = the middle frame, as the ARL paper fed its MMTM / mmFormer runs).
    """

    def __init__(self, body: nn.Module, out_dim: int) -> None:
        super().__init__()
        self.body = body
        self.out_dim = out_dim
        self.frames: int | None = None

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """The ``frames`` frames of a clip this encoder reads (``select_frames``)."""
        return select_frames(x, self.frames)

    def frame_rows(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Input [B, C, H, W] or [B, T, C, H, W] → (the selected frames as rows [B·T, C, H, W], T);
        T = 1 for 4-D input. ``average_frames(features, T)`` takes the rows' features back to clips."""
        x = self.select(x)
        return (x, 1) if x.dim() == 4 else (x.flatten(0, 1), x.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, t = self.frame_rows(x)
        return average_frames(self.body(rows), t)  # [B*T, D] → [B, D]

    @property
    def stages(self) -> Stages | None:
        """The body's stages, or None for a body that cannot be cut. Cut on each call, from the
        body's current modules (a copied or moved model cuts its own)."""
        if isinstance(self.body, TinyCNN):
            return self.body.stages()
        if _is_resnet(self.body):
            return _resnet_stages(self.body, None)
        if isinstance(self.body, nn.Sequential) and _is_resnet(self.body[-1]):
            return _resnet_stages(self.body[-1], self.body[0])
        return None


def is_torchvision(module: nn.Module, where: str, name: str) -> bool:
    """Whether ``module`` is an instance of torchvision's ``where.name`` (e.g.
    ``"torchvision.models", "ResNet"``), without importing torchvision: if it was never imported,
    no such instance exists, and the import costs ~1 s at the start of every mini stage."""
    found = sys.modules.get(where)
    return found is not None and isinstance(module, getattr(found, name))


def _is_resnet(module: nn.Module) -> bool:
    """Whether ``module`` is a torchvision ResNet."""
    return is_torchvision(module, "torchvision.models", "ResNet")


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
        return self.features(self.shrink(x)).mean(dim=(2, 3))  # [B, channels[-1]]

    def shrink(self, x: torch.Tensor) -> torch.Tensor:
        """The input average-pooled to ``input_size`` (unchanged if none is set or it already fits)."""
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.adaptive_avg_pool2d(x, self.input_size)
        return x

    def stages(self) -> Stages:
        """One stage per conv block (``features`` holds conv, BN, ReLU per block)."""
        blocks = tuple(self.features[i : i + 3] for i in range(0, len(self.features), 3))
        channels = tuple(block[0].out_channels for block in blocks)
        return Stages(self.shrink, blocks, channels, _spatial_mean)


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
    import torchvision  # here, not at the top: its import costs ~1 s in every mini training stage

    net = torchvision.models.resnet18(weights=None)
    if pretrained:
        net.load_state_dict(imagenet_weights(Path(pretrained), in_channels))
    if in_channels != 3:
        stem = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if pretrained:
            stem.weight.data.copy_(stem_weights(net.conv1.weight.data, in_channels))
        net.conv1 = stem
    net.fc = nn.Identity()  # features: [B, 512]
    return FrameAveraging(input_pooled(net, input_size), 512)


def input_pooled(net: nn.Module, input_size: list[int] | None) -> nn.Module:
    """``net`` behind an average pool of its input to ``input_size`` [F', T'] (e.g. a 257×299
    spectrogram to 64×75, as TinyCNN's ``shrink``), or ``net`` itself when none is set."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(tuple(input_size)), net) if input_size else net


def _resnet_stages(net: torchvision.models.ResNet, pool: nn.Module | None) -> Stages:
    """ResNet-18 cut after its stem and after each of layer1 … layer4 (64, 128, 256, 512 channels)."""
    stem = nn.Sequential(*([pool] if pool is not None else []), net.conv1, net.bn1, net.relu, net.maxpool)
    blocks = (net.layer1, net.layer2, net.layer3, net.layer4)
    return Stages(stem, blocks, (64, 128, 256, 512), nn.Sequential(net.avgpool, nn.Flatten(1)))


def _spatial_mean(maps: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] → [N, C], TinyCNN's global average pooling."""
    return maps.mean(dim=(2, 3))


def imagenet_weights(path: Path, in_channels: int) -> dict:
    """torchvision's ResNet-18 ImageNet state dict (e.g. ``resnet18-f37072fd.pth``) from ``path``;
    a missing or unreadable file is an error naming it."""
    state = read_state_dict(path, f"model.encoders.*.pretrained: no ResNet-18 ImageNet weights at {path} (the file is "
                                  "not downloaded at run time: copy torchvision's resnet18-f37072fd.pth there, or set '')")
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise ValueError(f"{path}: not a torchvision ResNet-18 state dict (no conv1.weight / fc.weight)")
    return state


def read_state_dict(path: Path, missing: str) -> dict:
    """The state dict saved at ``path`` (a ``{"state_dict": …}`` checkpoint is unwrapped). No file:
    FileNotFoundError with the message ``missing``; a truncated or foreign file: ValueError naming it."""
    if not path.is_file():
        raise FileNotFoundError(missing)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which
        raise ValueError(f"{path}: not a readable torch state dict ({err})") from err
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def stem_weights(rgb: torch.Tensor, in_channels: int) -> torch.Tensor:
    """An ImageNet stem [O, 3, k, k] (ResNet's [64, 3, 7, 7], Swin's patch embedding [C, 3, 4, 4])
    → [O, in_channels, k, k]: the RGB mean repeated per channel (the usual cross-modality
    initialisation; the papers do not state theirs)."""
    return rgb.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)


def build_encoder(cfg: dict, in_channels: int) -> FrameAveraging:
    """Build an encoder from its params block (``name`` plus the factory's keyword arguments)."""
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    return ENCODERS.get(cfg["name"])(in_channels=in_channels, **kwargs)
