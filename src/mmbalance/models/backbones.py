"""Backbone registry: how the per-modality encoders run before the fusion head.

- ``late`` (the default): every encoder reads only its own modality; modalities meet in the
  fusion head (late fusion, the setting of almost every table in the papers).
- ``mmtm`` and ``mmformer``: intermediate fusion, the two backbones of the ARL paper's Table 3.
  The encoders run stage by stage in lockstep, and after selected stages a module exchanges
  information between their feature maps (MMTM: squeeze-and-excitation over both modalities;
  mmFormer: intra- and inter-modal transformer layers over the maps' tokens).

Every backbone returns one feature vector per modality ({m: [B, D_m]}), so fusion heads, methods
(unimodal logits from the fusion head's split), probes and metrics work unchanged. Options reach a
backbone as keyword arguments, from ``model.backbone_options.<name>`` in params.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.encoders import average_frames
from mmbalance.registry import Registry

BACKBONES: Registry = Registry("backbone")


class Backbone(nn.Module):
    """Base class: ``forward(encoders, inputs)`` → features {modality: [B, D_m]}."""

    intermediate = False  # True where the modalities interact inside the encoders

    def forward(self, encoders: nn.ModuleDict, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


@BACKBONES.register("late")
class LateBackbone(Backbone):
    """Independent encoders (late fusion): φ_m = E_m(x_m)."""

    def __init__(self, encoders: nn.ModuleDict) -> None:
        super().__init__()

    def forward(self, encoders: nn.ModuleDict, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: enc(inputs[m]) for m, enc in encoders.items()}


class IntermediateBackbone(Backbone):
    """Runs convolutional encoders block by block in lockstep and calls ``exchange`` on every
    modality's maps after the blocks listed in ``after`` (1-based; negative counts from the last
    block: ``[-1]`` = after the last block, before pooling).

    Frames: a video's T frames travel through the blocks as T images ([B·T, C, H, W]); the
    exchange modules see which rows belong to which clip, so any number of frames works (the
    ARL paper used one frame per video for these backbones).
    """

    intermediate = True

    def __init__(self, name: str, encoders: nn.ModuleDict, after: list[int]) -> None:
        super().__init__()
        self.name = name
        channels = _stage_channels(name, encoders)
        n_blocks = len(next(iter(channels.values())))
        self.after = _fusion_points(name, after, n_blocks)
        # channels of every modality's maps at each fusion point
        self.channels_at = {i: {m: ch[i - 1] for m, ch in channels.items()} for i in self.after}

    def forward(self, encoders: nn.ModuleDict, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cut = {m: enc.stages for m, enc in encoders.items()}  # cut once per step
        maps, frames = {}, {}
        for m, enc in encoders.items():
            rows, frames[m] = enc.frame_rows(inputs[m])
            maps[m] = cut[m].entry(rows)  # [B·T_m, C, H, W]
        for i in range(1, len(next(iter(cut.values())).blocks) + 1):
            maps = {m: cut[m].blocks[i - 1](x) for m, x in maps.items()}
            if i in self.after:
                maps = self.exchange(i, maps, frames)
        return {m: average_frames(cut[m].exit(x), frames[m]) for m, x in maps.items()}  # [B, D_m]

    def exchange(self, block: int, maps: dict[str, torch.Tensor], frames: dict[str, int]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


def _stage_channels(name: str, encoders: nn.ModuleDict) -> dict[str, tuple[int, ...]]:
    """Each encoder's per-block output channels; a clear error if a backbone cannot use them."""
    channels = {}
    for m, enc in encoders.items():
        stages = getattr(enc, "stages", None)
        if stages is None:
            raise ValueError(f"backbone {name!r} needs convolutional encoders cut into stages (tiny_cnn, resnet18); "
                             f"modality {m!r} has {type(enc).__name__}")
        channels[m] = stages.channels
    counts = {m: len(ch) for m, ch in channels.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"backbone {name!r} runs the encoders block by block and needs equal block counts; got {counts}")
    return channels


def _fusion_points(name: str, after: list[int], n_blocks: int) -> tuple[int, ...]:
    """``after`` (1-based, negatives from the end) → sorted block numbers in 1 … n_blocks."""
    points = set()
    for i in after:
        j = int(i) + n_blocks + 1 if int(i) < 0 else int(i)
        if not 1 <= j <= n_blocks:
            raise ValueError(f"backbone {name!r}: 'after' entry {i} is outside the encoders' {n_blocks} blocks "
                             f"(use 1 … {n_blocks}, or -1 … -{n_blocks} from the end)")
        points.add(j)
    if not points:
        raise ValueError(f"backbone {name!r}: 'after' lists no block to fuse after")
    return tuple(sorted(points))


def clip_means(maps: torch.Tensor, t: int) -> torch.Tensor:
    """[B·T, C, H, W] → [B, C]: each clip's channel means over its frames and positions."""
    return average_frames(maps.mean(dim=(2, 3)), t)


class MMTM(nn.Module):
    """Multimodal Transfer Module (Joze et al., CVPR 2020) for any number of modalities.

    Squeeze: S_m = the clip's channel means of modality m's maps ([B, C_m]).
    Joint excitation: Z = ReLU(W_s·[S_1; …; S_M] + b_s), [B, int(2·ΣC_m / ratio)];
    gates G_m = σ(W_m·Z + b_m) ([B, C_m]); output maps A_m ⊙ G_m (every frame of a clip gated
    alike). The paper writes 2σ; the authors' code, and the Greedy and PMR code built on it, use σ.
    """

    def __init__(self, channels: dict[str, int], ratio: float) -> None:
        super().__init__()
        hidden = max(int(2 * sum(channels.values()) / ratio), 1)
        self.modalities = list(channels)
        self.squeeze = nn.Linear(sum(channels.values()), hidden)
        self.excite = nn.ModuleDict({m: nn.Linear(hidden, c) for m, c in channels.items()})

    def gates(self, maps: dict[str, torch.Tensor], frames: dict[str, int]) -> dict[str, torch.Tensor]:
        """G_m per modality, [B, C_m]."""
        squeezed = torch.cat([clip_means(maps[m], frames[m]) for m in self.modalities], dim=1)  # [B, ΣC_m]
        z = torch.relu(self.squeeze(squeezed))
        return {m: torch.sigmoid(self.excite[m](z)) for m in self.modalities}

    def forward(self, maps: dict[str, torch.Tensor], frames: dict[str, int]) -> dict[str, torch.Tensor]:
        gates = self.gates(maps, frames)
        # a clip's gate [C] applies to each of its T frame rows: [B, C] → [B·T, C, 1, 1]
        return {m: x * gates[m].repeat_interleave(frames[m], dim=0)[:, :, None, None].to(x.dtype) for m, x in maps.items()}


@BACKBONES.register("mmtm")
class MMTMBackbone(IntermediateBackbone):
    """MMTM between the encoders' blocks (ARL Table 3, "MMTM"). The Greedy/PMR/ARL code inserts
    MMTM after ResNet-18's layer2, layer3 and layer4: ``after: [-3, -2, -1]``."""

    def __init__(self, encoders: nn.ModuleDict, after: list[int] = (-3, -2, -1), ratio: float = 4) -> None:
        super().__init__("mmtm", encoders, list(after))
        self.mmtm = nn.ModuleDict({str(i): MMTM(ch, ratio) for i, ch in self.channels_at.items()})

    def exchange(self, block: int, maps: dict[str, torch.Tensor], frames: dict[str, int]) -> dict[str, torch.Tensor]:
        return self.mmtm[str(block)](maps, frames)


def sincos_2d(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes [H·W, dim] (dim/2 channels for the row, dim/2 for the
    column, as in MAE). Fixed rather than learned so that any map size works."""
    if dim % 4:
        raise ValueError(f"2-D sine-cosine positions need a channel count divisible by 4; got {dim}")
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))  # [dim/4]
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        angle = coord[:, None] * freq[None, :]  # [H*W, dim/4]
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1)  # [H*W, dim]


class CrossModalTransformer(nn.Module):
    """mmFormer's fusion (Zhang et al., MICCAI 2022) on one stage's feature maps.

    Each modality's maps become tokens ([B, T·H·W, C], plus fixed 2-D positions and a learned
    modality embedding); an intra-modal transformer layer per modality, then an inter-modal layer
    over all modalities' tokens together (every token attends to every modality's tokens); the
    layers' updates are added back to the maps, so the encoders continue from fused maps.
    Needs the same channel count C in every modality at that stage (ResNet-18 and the mini CNNs
    have it).
    """

    def __init__(self, channels: dict[str, int], heads: int, ff_mult: int, layers: int, dropout: float) -> None:
        super().__init__()
        dims = set(channels.values())
        if len(dims) > 1:
            raise ValueError(f"backbone 'mmformer' attends across modalities and needs equal channel counts; got {channels}")
        dim = dims.pop()
        if dim % heads:
            raise ValueError(f"backbone 'mmformer': {dim} channels do not split into {heads} heads")
        self.modalities = list(channels)
        self.embedding = nn.Parameter(torch.randn(len(channels), dim) * 0.02)  # one learned vector per modality

        def layer_stack() -> nn.TransformerEncoder:
            one = nn.TransformerEncoderLayer(dim, heads, ff_mult * dim, dropout, batch_first=True, norm_first=True)
            return nn.TransformerEncoder(one, layers, enable_nested_tensor=False)

        self.intra = nn.ModuleDict({m: layer_stack() for m in channels})
        self.inter = layer_stack()

    def tokens(self, x: torch.Tensor, t: int, index: int) -> torch.Tensor:
        """Maps [B·T, C, H, W] → tokens [B, T·H·W, C] with positions and the modality embedding."""
        bt, c, h, w = x.shape
        tok = x.flatten(2).transpose(1, 2)  # [B*T, H*W, C]
        tok = tok + sincos_2d(h, w, c, x.device).to(tok.dtype)
        return tok.reshape(bt // t, t * h * w, c) + self.embedding[index].to(tok.dtype)

    def forward(self, maps: dict[str, torch.Tensor], frames: dict[str, int]) -> dict[str, torch.Tensor]:
        start = {m: self.tokens(maps[m], frames[m], i) for i, m in enumerate(self.modalities)}
        intra = {m: self.intra[m](start[m]) for m in self.modalities}
        joint = self.inter(torch.cat([intra[m] for m in self.modalities], dim=1))  # [B, ΣN_m, C]
        out = {}
        for m, part in zip(self.modalities, joint.split([start[m].shape[1] for m in self.modalities], dim=1)):
            x = maps[m]
            update = (part - start[m]).reshape(x.shape[0], -1, x.shape[1])  # [B*T, H*W, C]
            out[m] = x + update.transpose(1, 2).reshape(x.shape).to(x.dtype)
        return out


@BACKBONES.register("mmformer")
class MMFormerBackbone(IntermediateBackbone):
    """Intra- and inter-modal transformer layers on the encoders' maps (ARL Table 3, "mmFormer").
    mmFormer fuses at the encoders' bottleneck: ``after: [-1]``."""

    def __init__(self, encoders: nn.ModuleDict, after: list[int] = (-1,), heads: int = 4, ff_mult: int = 2,
                 layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__("mmformer", encoders, list(after))
        self.fusers = nn.ModuleDict({str(i): CrossModalTransformer(ch, int(heads), int(ff_mult), int(layers), float(dropout))
                                     for i, ch in self.channels_at.items()})

    def exchange(self, block: int, maps: dict[str, torch.Tensor], frames: dict[str, int]) -> dict[str, torch.Tensor]:
        return self.fusers[str(block)](maps, frames)


def build_backbone(name: str, encoders: nn.ModuleDict, options: dict | None = None) -> Backbone:
    """The backbone ``name`` over ``encoders``, with its params options as keyword arguments.

    With one modality (a unimodal baseline) there is nothing to exchange: any backbone is ``late``,
    as the FiLM and gated heads fall back to a linear layer.
    """
    factory = BACKBONES.get(name)  # an unknown name raises, listing the choices
    if len(encoders) < 2:
        return LateBackbone(encoders)
    return factory(encoders, **(options or {}))

