"""Fusion registry: per-modality features → fused logits and per-modality logits.

Every fusion returns ``(fused [B, C], {modality: [B, C]})``. The per-modality logits are the
modality's own share of the prediction where the head is additive (``concat``, ``sum``,
``weight``: the shares sum exactly to the fused logits) and, for the non-linear heads (``film``,
``gated``, ``mlp``), the fused prediction with every other modality's features zeroed
(``Fusion.zeroed_estimate``).

Options reach a fusion as keyword arguments of its constructor (``x_film``, ``x_gate``, ``dim``,
``form``, ``hidden``, ``layers``); the model is built with the fusion named by ``model.fusion``
in params.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.registry import Registry

FUSIONS: Registry = Registry("fusion")


class Fusion(nn.Module):
    """Base class. ``forward(features)`` returns (fused [B, C], {modality: [B, C]})."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = list(dims)
        self.dims = dict(dims)
        self.num_classes = num_classes

    def zeroed_estimate(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-modality logits by zeroing every other modality's features (for non-linear heads)."""
        out = {}
        for m in self.modalities:
            only = {k: v if k == m else torch.zeros_like(v) for k, v in features.items()}
            out[m] = self.fuse(only)
        return out

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _require_pair(name: str, dims: dict[str, int]) -> None:
    """FiLM and gated fusion condition one modality on another: defined for exactly two (one
    modality, as in the unimodal baselines, falls back to a linear head)."""
    if len(dims) > 2:
        raise ValueError(f"fusion {name!r} is defined for 2 modalities; got {len(dims)}: {', '.join(dims)}")


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    """One linear layer over the concatenated features.

    Its logits decompose exactly: W·[φ_1; …; φ_M] + b = Σ_m (W_m·φ_m + b/M), so each modality's
    share W_m·φ_m + b/M is its unimodal logit (the split used by OGM-GE, GMM-AL and others).
    """

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.head = nn.Linear(sum(dims.values()), num_classes)

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([features[m] for m in self.modalities], dim=1))

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        fused = self.fuse(features)
        weights = self.head.weight.split([self.dims[m] for m in self.modalities], dim=1)  # [C, D_m] each
        share = self.head.bias / len(self.modalities)
        uni = {m: features[m] @ w.t() + share for m, w in zip(self.modalities, weights)}
        return fused, uni


@FUSIONS.register("mlp")
class MLPFusion(Fusion):
    """A multi-layer classifier over the concatenated features (TPAMI 2024 OPM/OGM §4.3.7, Tab. 10).

    z = W_L·ReLU(… ReLU(W_1·[φ_1; …; φ_M] + b_1) …) + b_L: ``layers`` linear layers (default 2)
    with ReLU between them, each hidden layer ``hidden`` wide (default: the concatenated feature
    size). The paper gives neither depth nor width. Its logits do not split into per-modality
    shares, so a modality's logits are the prediction with every other modality's features set
    to 0, the paper's zero-out estimate for this head (§4.3.7).
    """

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: int | None = None, layers: int = 2) -> None:
        super().__init__(dims, num_classes)
        if int(layers) < 2:
            raise ValueError(f"fusion 'mlp' needs at least 2 layers (1 is the concat head); got {layers}")
        width = int(hidden or sum(dims.values()))
        sizes = [sum(dims.values())] + [width] * (int(layers) - 1)  # input, then each hidden layer
        blocks: list[nn.Module] = []
        for d_in, d_out in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(d_in, d_out), nn.ReLU()]
        self.head = nn.Sequential(*blocks, nn.Linear(sizes[-1], num_classes))

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([features[m] for m in self.modalities], dim=1))  # [B, C]

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.fuse(features), self.zeroed_estimate(features)


@FUSIONS.register("sum")
class SumFusion(Fusion):
    """One linear head per modality, logits summed: z = Σ_m (W_m·φ_m + b_m).

    Each head's full output W_m·φ_m + b_m is that modality's unimodal logit, so the shares sum
    exactly to the fused logits. The bias convention: the concat head's single bias b split as
    b/M corresponds here to each head owning its own b_m (Σ_m b_m plays the role of b). The
    OGM-GE code trains this fusion with the full biases (``fc_x(x) + fc_y(y)``) but scores each
    modality with W_m·φ_m + b_m/2, a split that does not add up to the fused logits; we keep b_m.
    """

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def _shares(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.heads[m](features[m]) for m in self.modalities}  # [B, C] each

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self._shares(features).values())

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        uni = self._shares(features)
        return sum(uni.values()), uni


@FUSIONS.register("weight")
class WeightFusion(Fusion):
    """Attention-weighted fusion of CMML (Yang et al., "Comprehensive Semi-Supervised Multi-Modal
    Learning", IJCAI 2019), the "Weight" baseline of the IPRM paper (IJCAI 2025, Table 1).

    The features are averaged with per-sample weights and one linear head reads the result:
    h = Σ_m α_m ⊙ φ_m, z = W·h + b. ``form`` picks the weights:

    - ``cmml`` (CMML's code): a scalar per sample and modality, α = softmax_m(s(φ_m)), s a
      small MLP D → D/2 → 1 shared by the modalities (CMML's ``AttentionNet``);
    - ``iprm_code`` (IPRM's code, ``models/fusion_modules.py`` ``CMML3``): per feature, no
      parameters, α_m = softmax_d(φ_m) / Σ_j softmax_d(φ_j) (softmax over the feature dimension).

    A modality's unimodal logit is its share W·(α_m ⊙ φ_m) + b/M (the concat convention); the
    shares sum exactly to the fused logits. (IPRM's code scores W·φ_m + b instead.) The features
    are summed, so every modality must have the same feature size.
    """

    def __init__(self, dims: dict[str, int], num_classes: int, form: str = "cmml") -> None:
        super().__init__(dims, num_classes)
        if len(set(dims.values())) > 1:
            sizes = ", ".join(f"{m} {d}" for m, d in dims.items())
            raise ValueError(f"fusion 'weight' sums the features and needs equal feature sizes; got {sizes}")
        if form not in ("cmml", "iprm_code"):
            raise ValueError(f"fusion 'weight': unknown form {form!r}; choices: cmml, iprm_code")
        self.form = form
        dim = next(iter(dims.values()))
        if form == "cmml":
            hidden = max(dim // 2, 1)
            # no bias on the score layer: a constant added to every modality's score leaves the
            # softmax unchanged (CMML's has one; it never receives a gradient)
            self.attention = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1, bias=False))
        self.head = nn.Linear(dim, num_classes)

    def attention_weights(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """α_m per modality: [B, 1] (``cmml``) or [B, D] (``iprm_code``); they sum to 1 over m."""
        if self.form == "cmml":
            scores = torch.cat([self.attention(features[m]) for m in self.modalities], dim=1)  # [B, M]
            alpha = torch.softmax(scores, dim=1)
            return {m: alpha[:, i : i + 1] for i, m in enumerate(self.modalities)}
        soft = {m: torch.softmax(features[m], dim=1) for m in self.modalities}  # [B, D] each
        total = sum(soft.values())
        return {m: soft[m] / total for m in self.modalities}

    def _shares(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        alpha = self.attention_weights(features)
        bias = self.head.bias / len(self.modalities)
        return {m: (alpha[m] * features[m]) @ self.head.weight.t() + bias for m in self.modalities}  # [B, C] each

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        alpha = self.attention_weights(features)
        return self.head(sum(alpha[m] * features[m] for m in self.modalities))

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        uni = self._shares(features)
        return sum(uni.values()), uni  # = W·Σ_m α_m ⊙ φ_m + b


@FUSIONS.register("film")
class FiLMFusion(Fusion):
    """FiLM (Perez et al., AAAI 2018) as in the OGM-GE code's ``FiLM`` module.

    The conditioning modality's features give γ, β = split(Linear(φ_c)) (each [B, D_t]); the
    other modality's features are modulated, γ ⊙ φ_t + β, then a linear head gives the logits.
    ``x_film=True`` (the code's default): the first modality (audio for the audio-visual
    datasets) conditions the second. Defined for two modalities; with one (unimodal baselines)
    there is nothing to condition on and the head is a plain linear layer.
    """

    def __init__(self, dims: dict[str, int], num_classes: int, x_film: bool = True) -> None:
        super().__init__(dims, num_classes)
        _require_pair("film", dims)
        self.x_film = bool(x_film)
        if len(dims) == 1:
            self.head = nn.Linear(dims[self.modalities[0]], num_classes)
            return
        first, second = self.modalities
        self.cond, self.target = (first, second) if self.x_film else (second, first)
        self.film = nn.Linear(dims[self.cond], 2 * dims[self.target])  # φ_c → [γ; β]
        self.head = nn.Linear(dims[self.target], num_classes)

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if len(self.modalities) == 1:
            return self.head(features[self.modalities[0]])
        gamma, beta = self.film(features[self.cond]).chunk(2, dim=1)  # [B, D_t] each
        return self.head(gamma * features[self.target] + beta)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.fuse(features), self.zeroed_estimate(features)


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    """Gated fusion (Kiela et al., "Efficient Large-Scale Multi-Modal Classification", AAAI 2018)
    as in the OGM-GE code's ``GatedFusion`` module.

    Both modalities are projected to ``dim`` (h_x = Linear(φ_x), h_y = Linear(φ_y), [B, dim]);
    a sigmoid gate from one multiplies the other, and a linear head gives the logits:
    ``x_gate=True`` (the code's default) → head(σ(h_x) ⊙ h_y), else head(h_x ⊙ σ(h_y)), x being
    the first modality. ``dim`` defaults to the first modality's feature size (the code's 512 for
    ResNet-18). Defined for two modalities; with one the head is a plain linear layer.
    """

    def __init__(self, dims: dict[str, int], num_classes: int, x_gate: bool = True, dim: int | None = None) -> None:
        super().__init__(dims, num_classes)
        _require_pair("gated", dims)
        self.x_gate = bool(x_gate)
        if len(dims) == 1:
            self.head = nn.Linear(dims[self.modalities[0]], num_classes)
            return
        hidden = int(dim or dims[self.modalities[0]])
        self.proj = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in dims.items()})
        self.head = nn.Linear(hidden, num_classes)

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if len(self.modalities) == 1:
            return self.head(features[self.modalities[0]])
        x, y = self.modalities
        hx, hy = self.proj[x](features[x]), self.proj[y](features[y])  # [B, dim] each
        gated = torch.sigmoid(hx) * hy if self.x_gate else hx * torch.sigmoid(hy)
        return self.head(gated)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.fuse(features), self.zeroed_estimate(features)
