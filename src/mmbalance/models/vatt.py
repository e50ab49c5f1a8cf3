"""VATT (Akbari et al., NeurIPS 2021) with cross-modal attention, as OPM/OGM (TPAMI 2024 Tab. 3) uses it.

VATT is a pure transformer per modality: the raw input is cut into patches (video: t×h×w
tubelets; audio: patches), each patch linearly projected to d, learned dimension-specific
position embeddings added (video: e_t + e_h + e_w), an [AGG] token prepended, and a ViT encoder
(pre-LayerNorm layers) run over the sequence; the [AGG] token's output is the modality's
feature. OPM/OGM's Tab. 3 describes its VATT only as "the cross-modal attention mechanism", so
the modality towers here exchange information by cross-attention between their layers.

Two registered pieces:

- encoder ``vatt``: one modality's tower (tokeniser, [AGG], position embeddings, layers). Alone
  (``late``, a unimodal baseline) it is VATT's modality-specific transformer.
- backbone ``vatt``: runs the towers layer by layer in lockstep and, after the layers in
  ``after``, lets every modality's tokens attend to the other modalities' tokens:
  X_m ← X_m + MHA(LN(X_m), LN(X_¬m), LN(X_¬m)), with X_¬m the other modalities' tokens
  concatenated ([B, N_¬m, d]). The updates of all modalities are computed from the same tokens.
  The [AGG] outputs then carry both modalities, as MMTM's and mmFormer's features do.

Differences from the VATT paper, stated: the audio is a log-spectrogram cut into 2-D patches
(as AST does), not raw waveform patches; no DropToken (VATT uses it to cut pre-training cost);
no self-supervised pre-training (the mini profile trains from scratch, as every other encoder
here does). The cross-attention block is this project's reading of the one sentence the paper
gives. The encoder exposes ``token_stages`` rather than ``stages``, so the convolutional
backbones (MMTM, mmFormer, CentralNet, TSM) refuse it with their usual error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.models.backbones import BACKBONES, Backbone, _fusion_points
from mmbalance.models.encoders import ENCODERS, select_frames

__all__ = ["TokenStages", "VATTEncoder", "VATTBackbone", "CrossModalAttention"]


@dataclass(frozen=True)
class TokenStages:
    """A transformer tower cut at its layers: ``entry`` input → tokens [B, 1 + N, d] ([AGG]
    first), ``blocks`` the layers ([B, L, d] → same), ``exit`` tokens → features [B, d]."""

    entry: Callable[[torch.Tensor], torch.Tensor]
    blocks: tuple[nn.Module, ...]
    width: int
    exit: Callable[[torch.Tensor], torch.Tensor]


class VATTEncoder(nn.Module):
    """One modality's VATT tower (see the module docstring).

    ``patch_size``: two numbers [h, w] for a spectrogram or image [B, C, H, W], three [t, h, w]
    for a clip [B, T, C, H, W] (tubelets). ``input_size`` average-pools a 2-D input first, as
    the other encoders do. ``max_positions``: the longest grid axis the learned position
    embeddings cover. ``frames`` (``model.frames``) reads that many of a clip's frames.
    """

    def __init__(self, in_channels: int, patch_size: list[int], dim: int, depth: int, heads: int, mlp_ratio: float,
                 dropout: float, input_size: list[int] | None, max_positions: int) -> None:
        super().__init__()
        self.patch = tuple(int(p) for p in patch_size)
        if len(self.patch) not in (2, 3) or min(self.patch) < 1:
            raise ValueError(f"vatt encoder: patch_size must be [h, w] (spectrograms, images) or [t, h, w] (clips); got {list(patch_size)}")
        if dim % heads:
            raise ValueError(f"vatt encoder: dim {dim} does not split into {heads} heads")
        conv = nn.Conv3d if len(self.patch) == 3 else nn.Conv2d
        self.project = conv(in_channels, dim, kernel_size=self.patch, stride=self.patch)  # linear projection of patches
        self.agg = nn.Parameter(torch.zeros(1, 1, dim))
        # VATT's dimension-specific positions: one learned table per grid axis, summed
        self.positions = nn.ParameterList(nn.Parameter(torch.randn(max_positions, dim) * 0.02) for _ in self.patch)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, int(mlp_ratio * dim), dropout, activation="gelu", batch_first=True,
                                       norm_first=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.input_size = tuple(input_size) if input_size else None
        self.out_dim = dim
        self.frames: int | None = None

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """The ``frames`` frames of a clip this tower reads (``select_frames``, as the frame encoders)."""
        return select_frames(x, self.frames)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Input → [B, 1 + N, d]: [AGG], then the patches in (t,) h, w order with their positions."""
        x = self.select(x)
        want = len(self.patch) + 2
        if x.dim() != want:
            kind = "a clip [B, T, C, H, W]" if want == 5 else "a spectrogram or image [B, C, H, W]"
            raise ValueError(f"vatt encoder: patch_size {list(self.patch)} cuts {kind}; got input of shape {tuple(x.shape)}")
        if x.dim() == 5:
            x = x.transpose(1, 2)  # [B, C, T, H, W] for the 3-D projection
        elif self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.adaptive_avg_pool2d(x, self.input_size)
        if any(s < p for s, p in zip(x.shape[2:], self.patch)):
            raise ValueError(f"vatt encoder: input {tuple(x.shape[2:])} is smaller than one patch {list(self.patch)}")
        grid = self.project(x)  # [B, d, (t,) h, w]
        b, d = grid.shape[:2]
        sizes = grid.shape[2:]
        if max(sizes) > self.positions[0].shape[0]:
            raise ValueError(f"vatt encoder: a {tuple(sizes)} patch grid exceeds max_positions {self.positions[0].shape[0]}")
        pos = 0
        for axis, (table, n) in enumerate(zip(self.positions, sizes)):
            shape = [1] * len(sizes)
            shape[axis] = n
            pos = pos + table[:n].T.reshape(d, *shape)  # [d, 1, …, n, …, 1], broadcast over the grid
        seq = (grid + pos.to(grid.dtype)).flatten(2).transpose(1, 2)  # [B, N, d]
        return torch.cat([self.agg.expand(b, 1, d).to(seq.dtype), seq], dim=1)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, 1 + N, d] → the normed [AGG] output [B, d]."""
        return self.norm(tokens[:, 0])

    @property
    def token_stages(self) -> TokenStages:
        """The tower cut at its layers, for the ``vatt`` backbone."""
        return TokenStages(self.tokens, tuple(self.layers), self.out_dim, self.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.tokens(x)
        for layer in self.layers:
            seq = layer(seq)
        return self.features(seq)  # [B, d]


@ENCODERS.register("vatt")
def vatt(in_channels: int, patch_size: list[int] = (16, 16), dim: int = 768, depth: int = 12, heads: int = 12,
         mlp_ratio: float = 4.0, dropout: float = 0.1, input_size: list[int] | None = None,
         max_positions: int = 128) -> VATTEncoder:
    """A VATT tower (defaults: VATT-Base, d 768, 12 layers, 12 heads, MLP 3072, dropout 0.1;
    patches 16², or [4, 16, 16] tubelets for a clip)."""
    return VATTEncoder(in_channels, list(patch_size), int(dim), int(depth), int(heads), float(mlp_ratio),
                       float(dropout), input_size, int(max_positions))


class CrossModalAttention(nn.Module):
    """X_m ← X_m + MHA(LN_q(X_m), LN_kv(X_¬m), LN_kv(X_¬m)) for every modality m at once."""

    def __init__(self, modalities: list[str], dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.norm_q = nn.ModuleDict({m: nn.LayerNorm(dim) for m in modalities})
        self.norm_kv = nn.ModuleDict({m: nn.LayerNorm(dim) for m in modalities})
        self.attend = nn.ModuleDict({m: nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True) for m in modalities})

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.modalities:
            others = torch.cat([tokens[o] for o in self.modalities if o != m], dim=1)  # [B, N_¬m, d]
            kv = self.norm_kv[m](others)
            update, _ = self.attend[m](self.norm_q[m](tokens[m]), kv, kv, need_weights=False)
            out[m] = tokens[m] + update  # [B, N_m, d]
        return out


@BACKBONES.register("vatt")
class VATTBackbone(Backbone):
    """VATT towers with cross-modal attention after the layers in ``after`` (1-based; negatives
    from the last layer; default every layer). ``heads``, ``dropout``: the cross-attention's."""

    intermediate = True

    def __init__(self, encoders: nn.ModuleDict, after: list[int] | None = None, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        stages = {m: getattr(enc, "token_stages", None) for m, enc in encoders.items()}
        for m, s in stages.items():
            if s is None:
                raise ValueError(f"backbone 'vatt' needs vatt encoders (encoder set 'vatt'); modality {m!r} has "
                                 f"{type(encoders[m]).__name__}")
        depths = {m: len(s.blocks) for m, s in stages.items()}
        widths = {m: s.width for m, s in stages.items()}
        if len(set(depths.values())) > 1 or len(set(widths.values())) > 1:
            raise ValueError(f"backbone 'vatt' runs the towers layer by layer and needs equal depths and widths; "
                             f"got depths {depths}, widths {widths}")
        n = next(iter(depths.values()))
        self.after = _fusion_points("vatt", list(after) if after is not None else list(range(1, n + 1)), n)
        dim = next(iter(widths.values()))
        if dim % int(heads):
            raise ValueError(f"backbone 'vatt': width {dim} does not split into {heads} heads")
        self.cross = nn.ModuleDict({str(i): CrossModalAttention(list(encoders), dim, int(heads), float(dropout)) for i in self.after})

    def forward(self, encoders: nn.ModuleDict, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        stages = {m: enc.token_stages for m, enc in encoders.items()}
        tokens = {m: s.entry(inputs[m]) for m, s in stages.items()}  # [B, 1 + N_m, d]
        for i in range(1, len(next(iter(stages.values())).blocks) + 1):
            tokens = {m: stages[m].blocks[i - 1](x) for m, x in tokens.items()}
            if i in self.after:
                tokens = self.cross[str(i)](tokens)
        return {m: stages[m].exit(x) for m, x in tokens.items()}  # [B, d]
