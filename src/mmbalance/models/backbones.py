"""Backbone registry: how the per-modality encoders run before the fusion head.

- ``late`` (the default): every encoder reads only its own modality; modalities meet in the
  fusion head (late fusion, the setting of almost every table in the papers).
- ``mmtm`` and ``mmformer``: intermediate fusion, the two backbones of the ARL paper's Table 3.
  The encoders run stage by stage in lockstep, and after selected stages a module exchanges
  information between their feature maps (MMTM: squeeze-and-excitation over both modalities;
  mmFormer: intra- and inter-modal transformer layers over the maps' tokens).
- ``tsn`` and ``tsm``: the action-recognition backbones of the OPM/OGM paper's Table 9 (TPAMI
  2024), still late fusion. ``tsn`` (Temporal Segment Networks, Wang et al., ECCV 2016) samples
  one frame per temporal segment of a video and averages the segments' features (TSN's average
  consensus); ``tsm`` (Temporal Shift Module, Lin et al., ICCV 2019) shifts part of the channels
  of a video's feature maps one frame back and one frame forward in time before each block of its
  encoder. Spectrograms, images and sequence inputs run through their encoders unchanged.

Every backbone returns one feature vector per modality ({m: [B, D_m]}), so fusion heads, methods
(unimodal logits from the fusion head's split), probes and metrics work unchanged. Options reach a
backbone as keyword arguments, from ``model.backbone_options.<name>`` in params.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.encoders import average_frames, is_torchvision
from mmbalance.registry import Registry

BACKBONES: Registry = Registry("backbone")


class Backbone(nn.Module):
    """Base class: ``forward(encoders, inputs)`` → features {modality: [B, D_m]}."""

    intermediate = False  # True where the modalities interact inside the encoders
    fusion: str | None = None  # the one fusion head this backbone's features are made for, if any
    segmented = False  # True where the backbone's rows are a clip's segments (event localisation)

    def forward(self, encoders: nn.ModuleDict, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def out_dims(self, encoders: nn.ModuleDict) -> dict[str, int]:
        """Feature size per modality of what ``forward`` returns (default: each encoder's)."""
        return {m: enc.out_dim for m, enc in encoders.items()}

    def fusion_options(self) -> dict:
        """Keyword arguments the fusion head needs from this backbone (default none)."""
        return {}


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


def shape_of(x) -> str:
    """An input as an error message names it: "shape [B, …]" for a tensor, else its type."""
    return f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def stage_maps(enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Input [N, C, H, W] → a convolutional encoder's last-stage maps [N, C', h, w] (its stages'
    entry and blocks, not the exit's pooling)."""
    stages = enc.stages
    maps = stages.entry(x)
    for block in stages.blocks:
        maps = block(maps)
    return maps


def _stage_channels(name: str, encoders: nn.ModuleDict) -> dict[str, tuple[int, ...]]:
    """Each encoder's per-block output channels; a clear error if a backbone cannot use them."""
    channels = {}
    for m, enc in encoders.items():
        stages = getattr(enc, "stages", None)
        if stages is None:
            raise ValueError(f"backbone {name!r} needs convolutional encoders cut into stages (tiny_cnn, resnet18); "
                             f"modality {m!r} has {_network_name(enc)}")
        channels[m] = stages.channels
    counts = {m: len(ch) for m, ch in channels.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"backbone {name!r} runs the encoders block by block and needs equal block counts; got {counts}")
    return channels


def _network_name(enc: nn.Module) -> str:
    """The class of an encoder's network, past ``FrameAveraging`` and an input pool (errors name
    ``SwinTransformer``, not the wrapper every 2-D encoder shares)."""
    body = getattr(enc, "body", enc)
    if isinstance(body, nn.Sequential) and len(body):
        body = body[-1]
    return type(body).__name__


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


def _is_clip(enc: nn.Module, x) -> bool:
    """Whether ``x`` is a video batch [B, T, C, H, W] for a frame encoder (``FrameAveraging``)."""
    return isinstance(x, torch.Tensor) and x.dim() == 5 and hasattr(enc, "select") and hasattr(enc, "body")


def segment_indices(t: int, k: int, batch: int, training: bool, device=None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """TSN's frame per segment: [B, K] indices into a clip's T frames.

    Segment i < K covers frames [⌊i·T/K⌋, ⌊(i+1)·T/K⌋). Training: one frame drawn uniformly in each
    segment, per clip (torch's RNG on ``device``, or ``generator``). Evaluation: each segment's
    middle frame ⌊(start + end − 1) / 2⌋ (the earlier of the two middle frames of an even-length
    segment). T ≤ K: every frame once, in order ([B, T]); no sampling.

    The authors' loaders (TSN's and TSM's ``TSNDataSet``) differ at the edges: training draws from
    K segments of ⌊T/K⌋ frames (the last T mod K frames never drawn) and evaluation reads frame
    ⌊(2i+1)·T/(2K)⌋ (for T = 10, K = 3: 1, 5, 8; here 1, 4, 7), which can fall outside the
    segment defined above (T = 4, K = 3: frame 2 for segment [1, 2)).
    """
    if t <= k:
        return torch.arange(t, device=device).expand(batch, t)
    starts = torch.tensor([i * t // k for i in range(k)], device=device)  # [K]
    ends = torch.tensor([(i + 1) * t // k for i in range(k)], device=device)  # [K]
    if not training:
        return ((starts + ends - 1) // 2).expand(batch, k)
    lengths = ends - starts
    draw = torch.rand(batch, k, device=device, generator=generator)  # [B, K] in [0, 1)
    offsets = torch.minimum((draw * lengths).long(), lengths - 1)  # uniform in 0 … length−1
    return starts + offsets


def sample_segments(x: torch.Tensor, k: int, training: bool) -> torch.Tensor:
    """[B, T, C, H, W] → [B, K, C, H, W]: the frames ``segment_indices`` picks for each clip
    ([B, T, …] unchanged when T ≤ K)."""
    b, t = x.shape[:2]
    if t <= k:
        return x
    idx = segment_indices(t, k, b, training, device=x.device)  # [B, K]
    return x[torch.arange(b, device=x.device)[:, None], idx]


@BACKBONES.register("tsn")
class TSNBackbone(Backbone):
    """Temporal Segment Networks (Wang et al., ECCV 2016; OPM/OGM Table 9, "TSN") on late fusion.

    Each video (after its encoder's ``select``, i.e. ``model.frames``) is split into ``segments``
    equal segments and one frame is read per segment (``segment_indices``: random within the
    segment while training, the segment's middle frame in evaluation); the K frames run through the
    encoder's 2-D body as rows ([B·K, C, H, W]) and the segmental consensus is the mean of their
    features ([B, D]). TSN averages the segments' class scores; before a linear fusion head (concat,
    sum) the mean of features gives exactly that average of scores. A clip with T ≤ K frames uses
    every frame (so with T = K, TSN equals ``late``). Unlike the authors' code, a segment is one
    frame (``new_length`` 1), also for optical flow (TSN stacked 5 flow fields per segment).
    Spectrograms, images and sequence inputs run through their encoders unchanged.
    """

    def __init__(self, encoders: nn.ModuleDict, segments: int = 3) -> None:
        super().__init__()
        if int(segments) < 1:
            raise ValueError(f"backbone 'tsn': segments must be at least 1; got {segments}")
        self.segments = int(segments)

    def forward(self, encoders: nn.ModuleDict, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.encode(enc, inputs[m]) for m, enc in encoders.items()}

    def encode(self, enc: nn.Module, x) -> torch.Tensor:
        """One modality's features [B, D]: segmental consensus for a video, ``enc(x)`` otherwise."""
        if not _is_clip(enc, x):
            return enc(x)
        frames = sample_segments(enc.select(x), self.segments, self.training)  # [B, K, C, H, W]
        k = frames.shape[1]
        return average_frames(enc.body(frames.flatten(0, 1)), k)  # [B*K, D] → [B, D]


def temporal_shift(x: torch.Tensor, t: int, shift_div: int) -> torch.Tensor:
    """TSM's shift of maps [B·T, C, H, W] (rows: T consecutive frames per clip) → same shape.

    With fold = C // shift_div: channels [0, fold) take frame t+1's values (shifted toward earlier
    time), channels [fold, 2·fold) frame t−1's (toward later time), zeros where that frame is
    outside the clip; the other channels are unchanged. As ``TemporalShift.shift`` in the authors'
    code (mit-han-lab/temporal-shift-module, ops/temporal_shift.py), so a 1-frame clip loses its
    2·fold shifted channels (zero-padded on both sides) rather than passing unchanged.
    """
    nt, c, h, w = x.shape
    if nt % t:
        raise ValueError(f"temporal_shift: {nt} rows are not clips of {t} frames")
    fold = c // int(shift_div)
    clips = x.reshape(nt // t, t, c, h, w)
    out = torch.zeros_like(clips)
    out[:, :-1, :fold] = clips[:, 1:, :fold]  # from t+1
    out[:, 1:, fold : 2 * fold] = clips[:, :-1, fold : 2 * fold]  # from t−1
    out[:, :, 2 * fold :] = clips[:, :, 2 * fold :]  # not shifted
    return out.reshape(nt, c, h, w)


def _is_basic_block(module: nn.Module) -> bool:
    """Whether ``module`` is a torchvision ResNet ``BasicBlock``."""
    return is_torchvision(module, "torchvision.models.resnet", "BasicBlock")


def _units(block: nn.Module) -> list[nn.Module]:
    """The modules a shift goes before: a ResNet stage's BasicBlocks, else the block itself."""
    children = list(block.children()) if isinstance(block, nn.Sequential) else []
    return children if children and all(_is_basic_block(c) for c in children) else [block]


def shifted_basic_block(block: nn.Module, x: torch.Tensor, t: int, shift_div: int) -> torch.Tensor:
    """A torchvision BasicBlock on [B·T, C, H, W] with TSM's residual shift: the shift on the
    residual branch only, before conv1; the identity (or downsample) path sees the unshifted maps.
    relu(bn2(conv2(relu(bn1(conv1(shift(x)))))) + downsample(x)), with the block's own modules."""
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(temporal_shift(x, t, shift_div))))
    out = block.bn2(block.conv2(out))
    return block.relu(out + identity)


@BACKBONES.register("tsm")
class TSMBackbone(Backbone):
    """Temporal Shift Module (Lin et al., ICCV 2019; OPM/OGM Table 9, "TSM") on late fusion.

    A video's selected frames (``model.frames``) run through its encoder's stages as rows
    ([B·T, C, H, W]) and ``temporal_shift`` mixes neighbouring frames before every block; the
    frames' features are then averaged (TSM's average consensus). ``shift_div``: 1/shift_div of
    the channels shifted each way (8: TSM's default, 1/4 of the channels move). ``place``:

    - ``residual`` (TSM's default, the authors' ``blockres``): inside each ResNet BasicBlock,
      on the residual branch before conv1 (``shifted_basic_block``);
    - ``inplace`` (the authors' ``block``): on the maps entering each BasicBlock, both paths.

    The mini CNN's blocks (conv, BN, ReLU) have no residual branch: on it both places shift in
    place, before each block. Spectrograms, images, sequence inputs and encoders that cannot be
    cut into stages run unchanged. Frames are not sampled: TSM reads every selected frame.
    """

    PLACES = ("residual", "inplace")

    def __init__(self, encoders: nn.ModuleDict, shift_div: int = 8, place: str = "residual") -> None:
        super().__init__()
        if int(shift_div) < 1:
            raise ValueError(f"backbone 'tsm': shift_div must be at least 1; got {shift_div}")
        if place not in self.PLACES:
            raise ValueError(f"backbone 'tsm': place must be one of {', '.join(self.PLACES)}; got {place!r}")
        self.shift_div, self.place = int(shift_div), place

    def forward(self, encoders: nn.ModuleDict, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.encode(enc, inputs[m]) for m, enc in encoders.items()}

    def encode(self, enc: nn.Module, x) -> torch.Tensor:
        """One modality's features [B, D]: shifted stages for a video, ``enc(x)`` otherwise."""
        stages = getattr(enc, "stages", None) if _is_clip(enc, x) else None  # cut once per step
        if stages is None:
            return enc(x)
        rows, t = enc.frame_rows(x)  # [B*T, C, H, W]
        maps = stages.entry(rows)
        for block in stages.blocks:
            maps = self.run_block(block, maps, t)
        return average_frames(stages.exit(maps), t)  # [B*T, D] → [B, D]

    def run_block(self, block: nn.Module, maps: torch.Tensor, t: int) -> torch.Tensor:
        """One stage block on [B·T, C, H, W] maps, with the shift before each of its units."""
        for unit in _units(block):
            if self.place == "residual" and _is_basic_block(unit):
                maps = shifted_basic_block(unit, maps, t, self.shift_div)
            else:
                maps = unit(temporal_shift(maps, t, self.shift_div))
        return maps


def build_backbone(name: str, encoders: nn.ModuleDict, options: dict | None = None) -> Backbone:
    """The backbone ``name`` over ``encoders``, with its params options as keyword arguments.

    With one modality (a unimodal baseline) there is nothing to exchange: an intermediate-fusion
    backbone is ``late`` then, as the FiLM and gated heads fall back to a linear layer (TSN and
    TSM, which change how one video encoder reads its frames, still apply).
    """
    factory = BACKBONES.get(name)  # an unknown name raises, listing the choices
    if len(encoders) < 2 and factory.intermediate and not factory.segmented:
        return LateBackbone(encoders)
    return factory(encoders, **(options or {}))

