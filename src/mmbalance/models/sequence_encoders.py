"""Sequence encoders: a padded feature sequence (``SequenceBatch``) → one feature vector [B, D].

For datasets stored as per-step feature sequences (CMU-MOSI: GloVe text 300, COVAREP audio 5,
Facet vision 20). The papers that report MOSI (TPAMI Tab. 11, ARL Tab. 2) train "from-scratch
transformers" without publishing them; the reference implementations are MulT as run by
MultiBench (4 layers, 8 heads, dim 40: a 1×1 input projection, scaled sinusoidal positions,
pre-LayerNorm blocks) and BalanceBenchmark's Transformer_LA (6 layers, hidden 512, 4 heads).

- ``transformer``: input projection D→d_model, sinusoidal or learned positions,
  ``nn.TransformerEncoder`` with the padding mask as key-padding mask, masked mean pooling.
- ``lstm``: packed LSTM, last valid hidden state (or masked mean of the outputs).

Both take ``SequenceBatch(x [B, L, D], mask [B, L] True = real step)`` (the training loader's
batch for a "sequence" modality) or a plain [B, L, D] tensor (every step real), and expose
``out_dim``. Masks are prefixes (real steps first), as the loader builds them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from mmbalance.models.encoders import ENCODERS
from mmbalance.models.output import SequenceBatch

__all__ = ["SequenceLSTM", "SequenceTransformer", "lstm", "masked_mean", "sinusoidal_positions", "transformer"]


def _unpack(batch: SequenceBatch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [B, L, D] float, mask [B, L] bool) with at least one real step per row.

    A row with no real step (an empty sequence) gets its first step marked real, so attention
    and pooling never divide by zero; the prepare step never writes empty sequences.
    """
    if isinstance(batch, torch.Tensor):
        x = batch
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    else:
        x, mask = batch.x, batch.mask.to(torch.bool)
    if x.dim() != 3:
        raise ValueError(f"sequence encoder expects x of shape [B, L, D], got {tuple(x.shape)}")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"sequence mask {tuple(mask.shape)} does not match x {tuple(x.shape)}")
    empty = ~mask.any(dim=1)
    if empty.any():
        mask = mask.clone()
        mask[empty, 0] = True
    return x.float(), mask


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of h [B, L, H] over the real steps of mask [B, L] → [B, H]."""
    w = mask.to(h.dtype).unsqueeze(-1)  # [B, L, 1]
    return (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    """Vaswani et al. sin/cos position table [length, dim] (odd ``dim`` drops the last cos)."""
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # [L, 1]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


class SequenceTransformer(nn.Module):
    """Linear projection, positions, a pre-LN Transformer encoder stack, masked mean pooling."""

    def __init__(
        self,
        in_channels: int,
        d_model: int = 32,
        layers: int = 2,
        heads: int = 4,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        positions: str = "sinusoidal",
        max_len: int = 1024,
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"transformer encoder: d_model {d_model} is not divisible by heads {heads}")
        if positions not in ("sinusoidal", "learned"):
            raise ValueError(f"transformer encoder: positions must be 'sinusoidal' or 'learned', got {positions!r}")
        self.proj = nn.Linear(in_channels, d_model)  # MulT's 1×1 Conv1d, D → d_model per step
        self.scale = math.sqrt(d_model)  # MulT/fairseq embed_scale: positions do not swamp the input
        self.positions, self.max_len = positions, int(max_len)
        self.pos = nn.Embedding(self.max_len, d_model) if positions == "learned" else None
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ff_dim or 4 * d_model, dropout, batch_first=True, norm_first=True
        )
        # pre-LN (norm_first, as MulT) needs a final LayerNorm; nested tensors do not support it
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.out_dim = d_model

    def forward(self, batch: SequenceBatch | torch.Tensor) -> torch.Tensor:
        """[B, L, D] (+ mask) → [B, d_model]."""
        x, mask = _unpack(batch)
        length = x.shape[1]
        h = self.proj(x) * self.scale  # [B, L, d_model]
        if self.pos is not None:
            if length > self.max_len:
                raise ValueError(f"transformer encoder: sequence of {length} steps exceeds max_len {self.max_len}")
            h = h + self.pos(torch.arange(length, device=x.device))[None]
        else:
            h = h + sinusoidal_positions(length, h.shape[-1], x.device)[None]
        h = self.encoder(self.drop(h), src_key_padding_mask=~mask)  # True = ignore (padding)
        return masked_mean(h, mask)


class SequenceLSTM(nn.Module):
    """(Bi)LSTM over the real steps only (packed); last hidden state or masked mean of outputs."""

    def __init__(
        self,
        in_channels: int,
        hidden: int = 32,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"lstm encoder: pooling must be 'last' or 'mean', got {pooling!r}")
        self.lstm = nn.LSTM(
            in_channels, hidden, layers, batch_first=True, bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.pooling = pooling
        self.out_dim = hidden * (2 if bidirectional else 1)

    def forward(self, batch: SequenceBatch | torch.Tensor) -> torch.Tensor:
        """[B, L, D] (+ mask) → [B, hidden (×2 if bidirectional)]."""
        x, mask = _unpack(batch)
        lengths = mask.sum(dim=1).cpu()  # real steps per row (prefix masks)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        if self.pooling == "last":
            # h_n [layers·dirs, B, H]: the top layer's last valid state (both directions)
            dirs = 2 if self.lstm.bidirectional else 1
            return torch.cat(list(h_n[-dirs:]), dim=1)
        padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return masked_mean(padded, mask)


@ENCODERS.register("transformer")
def transformer(in_channels: int, **kwargs) -> SequenceTransformer:
    """A Transformer encoder over a feature sequence of size ``in_channels`` (see SequenceTransformer)."""
    return SequenceTransformer(in_channels, **kwargs)


@ENCODERS.register("lstm")
def lstm(in_channels: int, **kwargs) -> SequenceLSTM:
    """An LSTM encoder over a feature sequence of size ``in_channels`` (see SequenceLSTM)."""
    return SequenceLSTM(in_channels, **kwargs)
