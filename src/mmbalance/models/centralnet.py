"""CentralNet (Vielzeuf et al., ECCV Workshops 2018), as OPM/OGM (TPAMI 2024 Tab. 3) uses it.

CentralNet keeps one network per modality and adds a central network fed by every modality's
hidden representation at several depths:

    s_1 = Σ_m α_m^1 · h_m^1,    s_i = α_C^i · c_i(s_{i-1}) + Σ_m α_m^i · h_m^i  (i = 2 … L),

with learned scalar weights α (initialised to 1), central layers c_i, and the prediction made
from s_L. It trains on a multi-objective loss: the central prediction's cross-entropy plus each
unimodal network's own (every modality keeps its classifier).

Here the two pieces are a backbone and a fusion head, so that everything that acts on "a
modality's features" acts on all of that modality's inputs to the central network:

- backbone ``centralnet``: runs the encoders block by block (unchanged: the unimodal networks
  do not interact) and returns, per modality, the clip means of its maps after the blocks in
  ``after`` followed by its final features: ``[B, C_1 + … + C_k + D_m]``. Zeroing those (OPM's
  feature dropping, ModDrop, a missing modality, Shapley values) removes the modality from the
  central network at every depth.
- fusion ``central``: the central network on those levels. The hidden maps of an audio and a
  visual network differ in shape (a 257×299 spectrogram and a 224² frame), so each level is
  pooled over its positions (and frames) and projected to the central width ``dim`` by a linear
  layer per modality (the original sums maps of equal shape); a central layer is linear + ReLU.
  Its unimodal logits are the unimodal classifiers' (on the final features), and the model
  returns them as ``aux_logits``, whose cross-entropy the base training loss adds.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.backbones import BACKBONES, IntermediateBackbone, _stage_channels, clip_means
from mmbalance.models.fusions import FUSIONS, Fusion


@BACKBONES.register("centralnet")
class CentralNetBackbone(IntermediateBackbone):
    """The unimodal encoders of CentralNet, read at several depths (see the module docstring).

    ``after``: the blocks whose maps feed the central network besides the final features
    (1-based, negatives from the last block); default every block but the last, whose pooled
    maps the final features already are (ResNet-18: layer1-3, then the 512-d features).
    """

    intermediate = False  # the unimodal networks never see each other's maps; the head mixes them
    fusion = "central"

    def __init__(self, encoders: nn.ModuleDict, after: list[int] | None = None) -> None:
        n_blocks = len(next(iter(_stage_channels("centralnet", encoders).values())))
        super().__init__("centralnet", encoders, list(after) if after is not None else list(range(1, n_blocks)))
        # per modality, the widths its features are made of: C_i per block in ``after``, then D_m
        self.levels = {m: [self.channels_at[i][m] for i in self.after] + [enc.out_dim] for m, enc in encoders.items()}
        self._levels: dict[str, list[torch.Tensor]] | None = None  # per forward: the pooled levels so far

    def forward(self, encoders: nn.ModuleDict, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self._levels = {m: [] for m in encoders}  # filled by exchange during this forward
        final = super().forward(encoders, inputs)  # [B, D_m] each
        levels, self._levels = self._levels, None
        return {m: torch.cat([*levels[m], final[m]], dim=1) for m in encoders}  # [B, ΣC_i + D_m]

    def exchange(self, block: int, maps: dict[str, torch.Tensor], frames: dict[str, int]) -> dict[str, torch.Tensor]:
        """Record each modality's clip means [B, C_i] after this block; the maps go on unchanged."""
        for m, x in maps.items():
            self._levels[m].append(clip_means(x, frames[m]))
        return maps

    def out_dims(self, encoders: nn.ModuleDict) -> dict[str, int]:
        return {m: sum(widths) for m, widths in self.levels.items()}

    def fusion_options(self) -> dict:
        """The level widths per modality, which the ``central`` head splits the features by."""
        return {"levels": {m: list(widths) for m, widths in self.levels.items()}}


@FUSIONS.register("central")
class CentralFusion(Fusion):
    """CentralNet's central network and unimodal classifiers over ``centralnet`` features.

    ``levels``: per modality, the widths its features are made of (from the backbone; the last
    is the final features). ``dim``: the central width (default: the smallest final feature
    size). With one modality (a unimodal baseline) there is no central network: a linear head.
    """

    trains_unimodal_heads = True

    def __init__(self, dims: dict[str, int], num_classes: int, levels: dict[str, list[int]] | None = None,
                 dim: int | None = None) -> None:
        super().__init__(dims, num_classes)
        if levels is None:
            if len(dims) > 1:
                raise ValueError("fusion 'central' is CentralNet's central network and needs model.backbone 'centralnet'")
            self.levels, self.depth = None, 0
            self.head = nn.Linear(sum(dims.values()), num_classes)
            return
        counts = {m: len(v) for m, v in levels.items()}
        if len(set(counts.values())) != 1 or {m: sum(v) for m, v in levels.items()} != dict(dims):
            raise ValueError(f"fusion 'central': levels {levels} do not match the features {dims}")
        self.levels, self.depth = {m: list(levels[m]) for m in self.modalities}, counts[self.modalities[0]]
        dim = int(dim or min(v[-1] for v in self.levels.values()))
        # per level i: one projection per modality to the central width, α_m^i and (i ≥ 2) c_i, α_C^i
        self.project = nn.ModuleList(nn.ModuleDict({m: nn.Linear(self.levels[m][i], dim) for m in self.modalities})
                                     for i in range(self.depth))
        self.alpha = nn.Parameter(torch.ones(self.depth, len(self.modalities)))  # α_m^i
        self.alpha_central = nn.Parameter(torch.ones(self.depth - 1))  # α_C^i, i = 2 … L
        self.central = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.ReLU()) for _ in range(self.depth - 1))
        self.head = nn.Linear(dim, num_classes)
        self.unimodal = nn.ModuleDict({m: nn.Linear(self.levels[m][-1], num_classes) for m in self.modalities})

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.levels is None:
            return self.head(torch.cat([features[m] for m in self.modalities], dim=1))
        parts = {m: features[m].split(self.levels[m], dim=1) for m in self.modalities}  # L × [B, C_i]
        s = None
        for i in range(self.depth):
            mixed = sum(self.alpha[i, j] * self.project[i][m](parts[m][i]) for j, m in enumerate(self.modalities))
            s = mixed if s is None else self.alpha_central[i - 1] * self.central[i - 1](s) + mixed  # [B, dim]
        return self.head(s)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        fused = self.fuse(features)
        if self.levels is None:
            return fused, {m: fused for m in self.modalities}
        # each unimodal network's own classifier on its final features [B, D_m]
        uni = {m: self.unimodal[m](features[m][:, -self.levels[m][-1]:]) for m in self.modalities}
        return fused, uni
