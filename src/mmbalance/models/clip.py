"""CLIP's two towers (Radford et al., ICML 2021) as encoders: ``clip_vision`` and ``clip_text``.

IPRM Tab. 6 replaces the Sarcasm encoders by pretrained CLIP ViT-B/16 (image) and CLIP's text
Transformer, then fine-tunes with each method. The towers here follow CLIP's published
architecture and the parameter names of OpenAI's checkpoints (``visual.*`` and the text keys), so
a local ``ViT-B-16.pt`` (a TorchScript archive) or a state dict saved from it loads unchanged:

- vision: a patch_size-strided convolution without bias, a class token, learned positions,
  ``ln_pre``, pre-LN residual attention blocks (QuickGELU MLP), ``ln_post`` on the class token and
  the projection ``proj`` [width, output_dim]. ViT-B/16: patch 16, width 768, 12 layers, 12 heads,
  output 512, 224² images.
- text: learned positions over ``context_length`` steps, causal pre-LN blocks, ``ln_final`` and
  ``text_projection`` [width, output_dim] at the last real step (CLIP takes the end-of-text
  token, the last token of every caption). ViT-B/16's: width 512, 12 layers, 8 heads, context 77.

Our shards store text as per-token feature vectors (``SequenceBatch``), not token ids: the text
tower starts after CLIP's token-embedding lookup. For CLIP exactly, store the looked-up embeddings
(``token_embedding(tokenize(text))`` up to and including the end-of-text token, float [L, 512]) as
the Sarcasm adapter's ``npy`` text features. Features of another size (the paper profile's 768-d
BERT tokens, the mini profile's 32-d hashed words) go through a learned linear map to ``width``
first, ahead of CLIP's positions and blocks.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from mmbalance.models.encoders import ENCODERS, FrameAveraging, read_state_dict, stem_weights
from mmbalance.models.output import SequenceBatch
from mmbalance.models.sequence_encoders import _unpack

__all__ = ["ClipText", "ClipVision", "clip_text", "clip_vision", "load_clip_weights"]


class QuickGELU(nn.Module):
    """CLIP's activation: x · sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """x + attn(ln_1(x)), then + mlp(ln_2(x)); names as CLIP's (``attn``, ``ln_1``, ``mlp.c_fc`` …)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [N, L, width]; ``mask`` [L, L] float (−inf = not attended) or None."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """``layers`` residual attention blocks under ``resblocks`` (CLIP's module path)."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"clip encoder: width {width} is not divisible by heads {heads}")
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class ClipVision(nn.Module):
    """CLIP's VisionTransformer: an image [N, C, H, W] (H = W = image_size) → [N, output_dim]."""

    def __init__(self, in_channels: int, image_size: int, patch_size: int, width: int, layers: int, heads: int,
                 output_dim: int) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"clip_vision encoder: image_size {image_size} is not a multiple of patch_size {patch_size}")
        grid = image_size // patch_size
        scale = width ** -0.5  # CLIP's initialisation of the token, positions and projection
        self.image_size = image_size
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"clip_vision encoder: expects {self.image_size}x{self.image_size} images (params "
                             f"image_size; the learned positions fix it), got {tuple(x.shape[-2:])}")
        tokens = self.conv1(x).flatten(2).transpose(1, 2)  # [N, grid², width]
        cls = self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)  # [N, 1, width]
        h = torch.cat([cls, tokens], dim=1) + self.positional_embedding.to(tokens.dtype)
        h = self.transformer(self.ln_pre(h))
        return self.ln_post(h[:, 0]) @ self.proj  # the class token → [N, output_dim]


class ClipText(nn.Module):
    """CLIP's text Transformer from the token-embedding output on: [B, L, D] (+ mask) → [B, output_dim]."""

    def __init__(self, in_channels: int, context_length: int, width: int, layers: int, heads: int,
                 output_dim: int) -> None:
        super().__init__()
        self.context_length = context_length
        # CLIP's token embeddings are width-sized: other features are mapped to width first
        self.proj_in = nn.Identity() if in_channels == width else nn.Linear(in_channels, width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(context_length, width))
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(width ** -0.5 * torch.randn(width, output_dim))
        self.out_dim = output_dim

    def forward(self, batch: SequenceBatch | torch.Tensor) -> torch.Tensor:
        x, mask = _unpack(batch)  # x [B, L, D], mask [B, L] (a prefix of real steps)
        length = x.shape[1]
        if length > self.context_length:
            raise ValueError(f"clip_text encoder: sequence of {length} steps exceeds context_length {self.context_length}")
        h = self.proj_in(x) + self.positional_embedding[:length]
        causal = torch.full((length, length), float("-inf"), device=x.device).triu(1)  # step i sees steps ≤ i
        h = self.ln_final(self.transformer(h, causal))
        last = mask.sum(dim=1) - 1  # the last real step, CLIP's end-of-text token
        return h[torch.arange(h.shape[0], device=h.device), last] @ self.text_projection


def load_clip_weights(tower: nn.Module, path: Path, prefix: str) -> None:
    """Load the ``prefix`` part of CLIP's weights at ``path`` into ``tower``: ``"visual."`` for
    ClipVision, ``""`` for ClipText (all but a learned ``proj_in``, which CLIP does not have).
    ``path`` is OpenAI's TorchScript archive (``ViT-B-16.pt``) or a state dict saved
    from one. A missing file, an unreadable one, or weights of another shape are errors naming it."""
    state = _clip_state(path)
    own = {k for k in tower.state_dict() if not k.startswith("proj_in.")}
    part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix):] in own}
    missing = sorted(own - set(part))
    if missing:
        raise ValueError(f"{path}: not CLIP weights for this tower (no {prefix}{missing[0]}"
                         f"{' and ' + str(len(missing) - 1) + ' more' if len(missing) > 1 else ''})")
    try:
        # part holds every key of the tower but a learned proj_in's (checked above), which keeps
        # its initial weights; a shape that does not fit still raises
        tower.load_state_dict(part, strict=False)
    except RuntimeError as err:  # another width / layers / patch / image size: say which file
        raise ValueError(f"{path}: does not fit this CLIP tower (image_size, patch_size, width, layers, "
                         f"context_length, output_dim): {err}") from err


def _clip_state(path: Path) -> dict:
    """CLIP's state dict from OpenAI's TorchScript archive or from a plain state dict file."""
    missing = (f"clip encoder: pretrained: no CLIP weights file at {path} (nothing is downloaded at run time: copy "
               "OpenAI's ViT-B-16.pt there, or set '' to train from scratch)")
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            scripted = any(name.endswith("/constants.pkl") for name in archive.namelist())
        if scripted:  # OpenAI's release is a TorchScript module: its parameters are the state dict
            with warnings.catch_warnings():
                # torch deprecates TorchScript, but that is the format OpenAI's weights come in
                warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu")
            return {k: v.float() for k, v in module.state_dict().items()}
    return {k: v.float() for k, v in read_state_dict(path, missing).items()}


@ENCODERS.register("clip_vision")
def clip_vision(in_channels: int, image_size: int = 224, patch_size: int = 16, width: int = 768, layers: int = 12,
                heads: int = 12, output_dim: int = 512, pretrained: str = "") -> FrameAveraging:
    """CLIP's image tower (defaults: ViT-B/16) for a frames modality, one frame at a time, features
    averaged over frames: from scratch, or from CLIP's weights at ``pretrained`` (a local path).
    A non-RGB input (``in_channels`` ≠ 3) gets a patch embedding from the mean of the RGB kernels."""
    net = ClipVision(3, int(image_size), int(patch_size), int(width), int(layers), int(heads), int(output_dim))
    if pretrained:
        load_clip_weights(net, Path(pretrained), "visual.")
    if in_channels != 3:
        rgb = net.conv1.weight.data
        net.conv1 = nn.Conv2d(in_channels, rgb.shape[0], kernel_size=net.conv1.kernel_size,
                              stride=net.conv1.stride, bias=False)
        if pretrained:
            net.conv1.weight.data.copy_(stem_weights(rgb, in_channels))
    return FrameAveraging(net, int(output_dim))


@ENCODERS.register("clip_text")
def clip_text(in_channels: int, context_length: int = 77, width: int = 512, layers: int = 12, heads: int = 8,
              output_dim: int = 512, pretrained: str = "") -> ClipText:
    """CLIP's text tower (defaults: ViT-B/16's) for a sequence modality of ``in_channels``-d token
    features: from scratch, or from CLIP's weights at ``pretrained`` (a local path). Features other
    than CLIP's own ``width``-d token embeddings enter through a learned linear map, trained from
    scratch in either case."""
    net = ClipText(in_channels, int(context_length), int(width), int(layers), int(heads), int(output_dim))
    if pretrained:
        load_clip_weights(net, Path(pretrained), "")
    return net
