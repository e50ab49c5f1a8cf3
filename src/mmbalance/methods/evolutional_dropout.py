"""Evolutional dropout: data-dependent multinomial dropout from the mini-batch's statistics.

Li, Gong & Yang, "Improved dropout for shallow and deep learning", NeurIPS 2016 (evolutional
dropout, Algorithm 1). Instead of keeping every unit independently with one probability, k units
are sampled with replacement from a multinomial distribution over the d units of the layer, with
probabilities from the layer's second-order statistics on the current mini-batch X = (x_1, …, x_B):

    p_i = sqrt(Σ_j x_ji² / B) / Σ_i' sqrt(Σ_j x_ji'² / B)           (per mini-batch)

For each sample j, counts m_j ~ Mult(k; p_1, …, p_d) give its mask ε_j = m_j / (k p) (element-
wise), so E[ε_j] = 1: a unit sampled c times is scaled by c/(k p_i), a unit never sampled is
dropped. Units with a large second moment are kept more often and scaled less. The test-time
network uses every unit unscaled. No code was released (github.com/zli79/Improve-dropout holds
only a README; the authors' cuda-convnet2 changes were not published).

OPM/OGM (Wei, Hu, Du, Wen, TPAMI 2024), §4.3.4 and Tab. 6, compare with it without stating k or
where the units sit. We apply it to each modality's encoder features [B, D_m] before fusion (the
tensors OPM and ModDrop drop whole), each modality as its own layer with its own statistics,
with k = ``k_ratio`` · D_m draws; k_ratio = 0.5 is our choice: as many draws as the units
standard dropout at rate 0.5 keeps on average (with repeats, fewer distinct units survive).
"""

from __future__ import annotations

import torch

from mmbalance.methods.base import METHODS
from mmbalance.methods.dropout import NeuronDropout


def evolutional_probabilities(x: torch.Tensor) -> torch.Tensor:
    """Sampling probabilities [D] from a mini-batch [B, D]: each unit's root mean square
    over the batch, normalised to sum 1 (Algorithm 1); uniform when the whole batch is zero."""
    rms = x.detach().float().pow(2).mean(dim=0).sqrt()  # [D]
    total = rms.sum()
    # chosen on the device (no host read of the total); 0/0 in the unused branch is discarded
    return torch.where(total > 0, rms / total, torch.full_like(rms, 1.0 / rms.numel()))


def multinomial_masks(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Masks [B, D] of Alg. 1: per sample, counts of k draws with replacement from the unit
    probabilities of ``x``, divided by k·p (0 for units of probability 0, which are never drawn)."""
    p = evolutional_probabilities(x)  # [D]
    draws = torch.multinomial(p.expand(x.shape[0], -1), k, replacement=True, generator=generator)  # [B, k]
    counts = torch.zeros(x.shape, device=x.device).scatter_add_(1, draws, torch.ones(draws.shape, device=x.device))  # [B, D]
    scale = torch.where(p > 0, 1.0 / (k * p).clamp(min=torch.finfo(p.dtype).tiny), torch.zeros_like(p))  # [D]
    return counts * scale


@METHODS.register("evolutional_dropout")
class EvolutionalDropout(NeuronDropout):
    """Multinomial dropout of each modality's feature units with batch-dependent probabilities."""

    method_name = "evolutional_dropout"

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.k_ratio = float(self.cfg.get("k_ratio", 0.5))
        if self.k_ratio <= 0:
            raise ValueError(f"method {self.method_name!r}: k_ratio = {self.k_ratio} must be positive (k = k_ratio · D draws)")

    def draws(self, dim: int) -> int:
        """k for a feature of ``dim`` units (at least one draw)."""
        return max(1, round(self.k_ratio * dim))

    def masks(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: multinomial_masks(f, self.draws(f.shape[1])) for m, f in features.items()}
