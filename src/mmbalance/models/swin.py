"""Swin Transformer encoder (Liu et al., ICCV 2021), registered as ``swin``: ARL Tab. 4.

ARL swaps its ResNet-18 encoders for Swin-Base, "initialized with the pre-trained weights on
ImageNet-22k", with gated fusion. The blocks are torchvision's ``SwinTransformer``; this module
only gives the patch embedding ``in_channels`` inputs (1 for a spectrogram, 2 for optical flow),
drops the classification head, and loads local weights. A frame or spectrogram [N, C, H, W] is
cut into patch_size² patches, run through the stages (window attention, patch merging), and its
last stage's tokens are layer-normed and averaged into one feature vector [N, D], with
D = embed_dim · 2^(stages − 1).

Swin has no convolutional stages to cut (``FrameAveraging.stages`` is None), so the
intermediate-fusion backbones (MMTM, mmFormer) refuse it with their usual error.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mmbalance.models.encoders import ENCODERS, FrameAveraging, input_pooled, read_state_dict, stem_weights

__all__ = ["load_swin_weights", "swin"]


@ENCODERS.register("swin")
def swin(in_channels: int, patch_size: int | list[int] = 4, embed_dim: int = 96, depths: list[int] = (2, 2, 6, 2),
         num_heads: list[int] = (3, 6, 12, 24), window_size: int | list[int] = 7, stochastic_depth_prob: float = 0.2,
         input_size: list[int] | None = None, pretrained: str = "") -> FrameAveraging:
    """torchvision's Swin Transformer (defaults: Swin-T; Swin-B is embed_dim 128, depths
    [2, 2, 18, 2], num_heads [4, 8, 16, 32], stochastic_depth_prob 0.5) with an ``in_channels``
    patch embedding and no head: from scratch, or from the torchvision-format state dict at
    ``pretrained`` (a local path; nothing is downloaded at run time). ``patch_size`` and
    ``window_size`` are one number (square) or [h, w]; ``input_size`` [F', T'] average-pools
    the input first, as the other encoders do."""
    import torchvision  # here, not at the top: its import costs ~1 s in every mini training stage

    if len(depths) != len(num_heads):
        raise ValueError(f"swin encoder: depths {list(depths)} and num_heads {list(num_heads)} need one entry per stage")
    net = torchvision.models.SwinTransformer(patch_size=_pair(patch_size), embed_dim=int(embed_dim), depths=list(depths),
                                             num_heads=list(num_heads), window_size=_pair(window_size),
                                             stochastic_depth_prob=float(stochastic_depth_prob))
    net.head = nn.Identity()  # features → norm → permute → avgpool → flatten: [N, D]
    if pretrained:
        load_swin_weights(net, Path(pretrained))
    if in_channels != 3:
        _adapt_stem(net, in_channels, copy_rgb=bool(pretrained))
    out_dim = int(embed_dim) * 2 ** (len(depths) - 1)
    return FrameAveraging(input_pooled(net, input_size), out_dim)


def load_swin_weights(net: nn.Module, path: Path) -> None:
    """Load the torchvision-format Swin state dict at ``path`` (e.g. torchvision's
    ``swin_b-68c6b09e.pth``) into ``net``, a 3-channel ``SwinTransformer`` without head; the file's
    ``head.*`` (1k or 22k classes) is ignored. A missing file, an unreadable one or one of another
    architecture is an error naming it."""
    state = read_state_dict(path, f"swin encoder: pretrained: no weights file at {path} (nothing is downloaded at run "
                                  "time: copy a torchvision-format Swin state dict there, e.g. torchvision's "
                                  "swin_b-68c6b09e.pth, or set '' to train from scratch)")
    if "features.0.0.weight" not in state:
        raise ValueError(f"{path}: not a torchvision SwinTransformer state dict (no features.0.0.weight; the official "
                         "Swin checkpoints name their keys otherwise and need converting first)")
    body = {k: v for k, v in state.items() if not k.startswith("head.")}
    try:
        net.load_state_dict(body)
    except RuntimeError as err:  # another embed_dim / depths / heads / window: say which file
        raise ValueError(f"{path}: does not fit this swin encoder (patch_size, embed_dim, depths, num_heads, "
                         f"window_size): {err}") from err


def _adapt_stem(net: nn.Module, in_channels: int, copy_rgb: bool) -> None:
    """Replace the 3-channel patch embedding (``features[0][0]``, a patch_size-strided conv) by an
    ``in_channels`` one; ``copy_rgb``: start it from the mean of the loaded RGB kernels."""
    rgb = net.features[0][0]
    stem = nn.Conv2d(in_channels, rgb.out_channels, kernel_size=rgb.kernel_size, stride=rgb.stride)
    if copy_rgb:
        stem.weight.data.copy_(stem_weights(rgb.weight.data, in_channels))
        stem.bias.data.copy_(rgb.bias.data)
    net.features[0][0] = stem


def _pair(value: int | list[int]) -> list[int]:
    """``4`` → [4, 4]; ``[4, 2]`` → [4, 2] (torchvision takes [h, w])."""
    return [int(value), int(value)] if isinstance(value, (int, float)) else [int(v) for v in value]
