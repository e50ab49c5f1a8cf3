"""The multimodal model: one encoder per modality and a fusion head."""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.backbones import Backbone, LateBackbone, build_backbone
from mmbalance.models.encoders import build_encoder
from mmbalance.models.fusions import FUSIONS
from mmbalance.models.output import Output


class MultimodalModel(nn.Module):
    """Encoders (``ModuleDict`` keyed by modality), run by a backbone → optional feature masks → fusion.

    Any number of modalities ≥ 1 (a unimodal baseline is the same model with one encoder). The
    backbone is ``late`` (independent encoders) unless an intermediate-fusion one is given.
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.backbone = backbone if backbone is not None else LateBackbone(self.encoders)
        self.modalities = list(encoders)
        self.method_modules = nn.ModuleDict()  # filled by the method's ``modules`` hook

    def encode(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Features per modality, each [B, D_m] (through the backbone)."""
        return self.backbone(self.encoders, inputs)

    def fuse(self, features: dict[str, torch.Tensor]) -> Output:
        """Fused and per-modality logits from (possibly masked) features; a head with unimodal
        classifiers of its own (CentralNet's) also returns them as ``aux_logits`` to train, a head
        with a loss of its own (MWTSIM's metric loss) that loss as ``aux_loss``."""
        fused, uni = self.fusion(features)
        aux = uni if getattr(self.fusion, "trains_unimodal_heads", False) else None
        own = self.fusion.aux_loss(features) if getattr(self.fusion, "adds_aux_loss", False) else None
        return Output(logits=fused, features=features, unimodal_logits=uni, aux_logits=aux, aux_loss=own)

    def forward(self, inputs: dict[str, torch.Tensor], keep: dict[str, torch.Tensor] | None = None) -> Output:
        """Forward pass; ``keep`` maps a modality to a [B] 0/1 (or scaling) mask on its features."""
        return self.fuse(mask_features(self.encode(inputs), keep))

    @property
    def feature_dims(self) -> dict[str, int]:
        """Feature size per modality (what the backbone returns)."""
        return self.backbone.out_dims(self.encoders)

    def modality_parameters(self, modality: str) -> list[nn.Parameter]:
        """The trainable parameters of one modality's encoder (what gradient modulation scales)."""
        return [p for p in self.encoders[modality].parameters() if p.requires_grad]


def mask_features(feats: dict[str, torch.Tensor], keep: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Features [B, D_m] with modality m's rows scaled by ``keep[m]`` ([B], 0/1 or a scale);
    modalities not in ``keep`` (or no ``keep``) pass unchanged."""
    if not keep:
        return feats
    return {m: f * keep[m].to(f.dtype).unsqueeze(1) if m in keep else f for m, f in feats.items()}


def encoder_config(model_cfg: dict, modality: str, kind: str) -> dict:
    """The encoder block for a modality: ``model.encoders.<modality>`` if present, else the block
    for its kind (``spectrogram``, ``frames`` or ``sequence``), so one params file serves every
    dataset (MOSI's "audio" is a feature sequence, CREMA-D's a spectrogram)."""
    encoders = model_cfg["encoders"]
    if modality in encoders:
        return encoders[modality]
    if kind in encoders:
        return encoders[kind]
    raise KeyError(f"params model.encoders has no block for modality {modality!r} or kind {kind!r}; has {sorted(encoders)}")


def build_model(model_cfg: dict, modalities: list[str], in_channels: dict[str, int], num_classes: int, fusion: str,
                kinds: dict[str, str] | None = None) -> MultimodalModel:
    """Build the model from the ``model`` params block for the given modalities (backbone from
    ``model.backbone``, default ``late``, with ``model.backbone_options.<name>``; ``model.frames``
    frames per video, default all stored)."""
    kinds = kinds or {}
    encoders = nn.ModuleDict({m: build_encoder(encoder_config(model_cfg, m, kinds.get(m, "")), in_channels[m]) for m in modalities})
    if model_cfg.get("frames") is not None:
        _read_frames(encoders, int(model_cfg["frames"]))
    name = model_cfg.get("backbone") or "late"
    backbone = build_backbone(name, encoders, (model_cfg.get("backbone_options") or {}).get(name))
    options = (model_cfg.get("fusion_options") or {}).get(fusion) or {}  # e.g. FiLM's conditioning modality
    if backbone.fusion not in (None, fusion):
        raise ValueError(f"backbone {name!r} feeds the {backbone.fusion!r} fusion head; params model.fusion is {fusion!r}")
    extra = backbone.fusion_options()  # e.g. CentralNet's level widths
    head = FUSIONS.get(fusion)(backbone.out_dims(encoders), num_classes, **options, **extra)
    return MultimodalModel(dict(encoders), head, backbone)


def _read_frames(encoders: nn.ModuleDict, frames: int) -> None:
    """Let every frame encoder read ``frames`` of a clip's stored frames (``model.frames``)."""
    if frames < 1:
        raise ValueError(f"params model.frames must be a positive number of frames or null (all); got {frames}")
    for enc in encoders.values():
        if hasattr(enc, "select"):
            enc.frames = frames
