"""The model's output record: what every method reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch


class SequenceBatch(NamedTuple):
    """A padded batch of feature sequences: ``x`` [B, L, D] and ``mask`` [B, L] (True = real step)."""

    x: torch.Tensor
    mask: torch.Tensor


@dataclass
class Output:
    """Fused and per-modality predictions of one forward pass.

    ``logits``: [B, C] fused logits.
    ``features``: modality → [B, D_m] encoder features (after any feature dropping).
    ``unimodal_logits``: modality → [B, C] the modality's share of the prediction: for a linear
    head the papers' W_m·φ_m + b/M split, for non-linear heads the prediction with every other
    modality's features zeroed.
    """

    logits: torch.Tensor
    features: dict[str, torch.Tensor]
    unimodal_logits: dict[str, torch.Tensor]
    # modality → [B, C]: classifiers the model itself trains beside the fused one (CentralNet's
    # unimodal networks); the base loss adds their cross-entropy. None for every other head.
    # keyword-only: the methods' Output subclasses add their own fields after the three above
    aux_logits: dict[str, torch.Tensor] | None = field(default=None, kw_only=True)
    # labels → scalar: a loss the model itself trains beside the cross-entropies (MWTSIM's
    # cross-modal metric loss), a function of the batch's labels so that it may pick its pairs by
    # class; the base loss adds aux_loss(labels). None for every other model.
    aux_loss: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, kw_only=True)
