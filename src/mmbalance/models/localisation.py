"""Audio-visual event localisation models of the OPM/OGM paper's Table 7 (TPAMI 2024, AVE).

AVE's 10-s videos are S = 10 one-second segments, and every segment is classified into the event
classes plus "background". Here the model's **rows are segments**: a batch of B clips gives
[B·S, ·] features and logits, row b·S + s being segment s of clip b (clip-major, the order of the
loader's [B·S] segment labels), so the shared training loop, OPM's feature dropping (a row's
modality features), OGM's gradient scaling (unimodal scores per row) and the probes work unchanged.

Each model is a backbone (``BACKBONES``) and a fusion head (``FUSIONS``) of the same name:

- ``avga`` (Tian et al., ECCV 2018, the authors' supervised ``att_Net``): audio-guided visual
  attention per segment, a bi-LSTM per modality (backbone); the two LSTM outputs concatenated,
  ReLU, two linear layers (head).
- ``avsdn`` (Lin, Li, Wang, ICASSP 2019): an LSTM encoder per modality over the segments
  (backbone); a decoder LSTM over the concatenated encodings, started from the encoders' final
  outputs, one prediction per segment (head).
- ``psp`` (Zhou et al., CVPR 2021, the authors' fully supervised ``psp_net``): AVGA-style
  attended features and bi-LSTMs (backbone); positive sample propagation between the segments of
  the two modalities and the classifier (head).

Inputs: ``audio`` a clip's spectrogram [B, 1, F, T] (the loader pools it to S·w columns; each
segment's w columns go through the audio encoder as one input, ``segment_chunks``); ``visual``
[B, S, 3, H, W], one frame per segment. Differences from the original code, which all read
frozen pre-extracted features (VGGish 128-d per segment, VGG-19 pool5 7×7×512 maps per segment):
here the encoders (tiny CNNs in the mini profile, ResNet-18 in the paper profile) are trained end
to end, the visual maps are the encoder's last stage ([B·S, C_v, h, w]), and the audio features
are the audio encoder's output per segment. Losses are the shared per-row cross-entropy (the
originals: softmax + multi-label soft-margin for AVGA, cross-entropy for PSP).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.models.backbones import BACKBONES, Backbone, _stage_channels, shape_of, stage_maps
from mmbalance.models.fusions import FUSIONS, Fusion

__all__ = ["AudioGuidedAttention", "AVGABackbone", "AVGAFusion", "AVSDNBackbone", "AVSDNFusion", "PSPBackbone",
           "PSPFusion", "positive_sample_propagation", "prune_and_normalise", "segment_chunks"]

MODALITIES = ("audio", "visual")


def segment_chunks(x: torch.Tensor, segments: int) -> torch.Tensor:
    """A clip's spectrogram [B, C, F, T] → one input per segment [B·S, C, F, w], clip-major.

    T not a multiple of S: the time axis is average-pooled to S·⌈T/S⌉ first, so every segment
    has w = ⌈T/S⌉ columns.
    """
    b, c, f, t = x.shape
    w = math.ceil(t / segments)
    if t != segments * w:
        x = F.adaptive_avg_pool2d(x, (f, segments * w))
    return x.unflatten(-1, (segments, w)).movedim(3, 1).flatten(0, 1)  # [B, S, C, F, w] → [B·S, C, F, w]


def to_clips(rows: torch.Tensor, segments: int, who: str) -> torch.Tensor:
    """[B·S, D] rows → [B, S, D]; a clear error when the rows are not whole clips."""
    if rows.shape[0] % segments:
        raise ValueError(f"{who}: {rows.shape[0]} rows are not whole clips of {segments} segments")
    return rows.reshape(-1, segments, *rows.shape[1:])


def zeroed_split(fusion: Fusion, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(fused, unimodal) logits of a non-additive head: each modality's by zeroing the others
    (``Fusion.zeroed_estimate``); one modality's are the fused logits themselves (not a second
    pass, which would draw other dropout masks)."""
    fused = fusion.fuse(features)
    if len(fusion.modalities) == 1:
        return fused, {fusion.modalities[0]: fused}
    return fused, fusion.zeroed_estimate(features)


class SegmentedBackbone(Backbone):
    """Base of the localisation backbones: checks the modalities and turns a batch of clips into
    per-segment rows (audio chunks, frames). ``segments`` S: segments per clip (AVE: 10)."""

    segmented = True

    def __init__(self, name: str, encoders: nn.ModuleDict, segments: int) -> None:
        super().__init__()
        if int(segments) < 1:
            raise ValueError(f"backbone {name!r}: segments must be at least 1; got {segments}")
        unknown = [m for m in encoders if m not in MODALITIES]
        if unknown or not encoders:
            raise ValueError(f"backbone {name!r} localises audio-visual events and reads modalities 'audio' "
                             f"(spectrogram) and 'visual' (one frame per segment); got {', '.join(encoders) or 'none'}")
        self.name, self.segments = name, int(segments)

    def audio_rows(self, enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Spectrogram [B, 1, F, T] → per-segment audio features [B·S, D_a]."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"backbone {self.name!r}: audio must be a spectrogram [B, 1, F, T]; got {shape_of(x)}")
        return enc(segment_chunks(x, self.segments))

    def frame_rows(self, enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Frames [B, S, 3, H, W] (after ``model.frames``) → one frame per row [B·S, 3, H, W]."""
        if hasattr(enc, "select") and isinstance(x, torch.Tensor) and x.dim() == 5:
            x = enc.select(x)
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] != self.segments:
            raise ValueError(f"backbone {self.name!r} reads one frame per segment: visual must be "
                             f"[B, {self.segments}, C, H, W]; got {shape_of(x)}")
        return x.flatten(0, 1)

    def fusion_options(self) -> dict:
        return {"segments": self.segments}


class AudioGuidedAttention(nn.Module):
    """AVGA's audio-guided visual attention on one segment (Tian et al., ECCV 2018, Eq. 1).

    a' = ReLU(U_a a) and v'_i = ReLU(U_v v_i) (width ``hidden``); for each position i of the map,
    x_i = w^T tanh(W_v v'_i + W_a a') (W_v, W_a: ``size`` × ``hidden``, w: ``size``, no biases);
    α = softmax_i(x); the attended visual vector is Σ_i α_i v_i over the raw map vectors v_i.
    The authors' code adds W_a a' as a [N, 49, 1] tensor, i.e. unit j of the audio term onto
    position j (possible only because its attention size equals pool5's 49 positions); here it is
    added to every position, as the paper's equation reads, so any map size works.
    """

    def __init__(self, audio_dim: int, visual_dim: int, hidden: int, size: int) -> None:
        super().__init__()
        self.audio = nn.Linear(audio_dim, hidden)  # affine_audio
        self.visual = nn.Linear(visual_dim, hidden)  # affine_video
        self.w_v = nn.Linear(hidden, size, bias=False)  # affine_v
        self.w_a = nn.Linear(hidden, size, bias=False)  # affine_g
        self.w = nn.Linear(size, 1, bias=False)  # affine_h
        for layer in (self.audio, self.visual, self.w_v, self.w_a, self.w):
            nn.init.xavier_uniform_(layer.weight)

    def weights(self, audio: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """α: audio [N, D_a], maps [N, C, h, w] → [N, h·w], each row summing to 1."""
        v = maps.flatten(2).transpose(1, 2)  # [N, P, C]
        content = self.w_v(torch.relu(self.visual(v))) + self.w_a(torch.relu(self.audio(audio)))[:, None, :]  # [N, P, size]
        return torch.softmax(self.w(torch.tanh(content)).squeeze(-1), dim=-1)

    def forward(self, audio: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Attended visual vectors [N, C]."""
        alpha = self.weights(audio, maps)  # [N, P]
        return torch.bmm(alpha[:, None, :].to(maps.dtype), maps.flatten(2).transpose(1, 2)).squeeze(1)


class AttendedLSTMBackbone(SegmentedBackbone):
    """AVGA and PSP's shared trunk: per segment, audio features a_s and visual maps; the visual
    vector attended under the audio's guidance (visual only: the maps' spatial mean, there is no
    audio to guide); a bi-LSTM per modality over the S segments. ``embed`` optionally maps the
    audio features (before guiding and the LSTM) and the attended visual vector (before the LSTM)
    through two linear layers each (PSP's ``fa``, ``fv``); None leaves them as they are (AVGA).

    Returns {modality: [B·S, 2·hidden]}: each modality's LSTM outputs, kept apart for the head.
    """

    intermediate = True  # the audio guides the visual attention inside the backbone

    def __init__(self, name: str, encoders: nn.ModuleDict, segments: int, hidden: int, attention: int,
                 attention_hidden: int, embed: int | None) -> None:
        super().__init__(name, encoders, segments)
        self.hidden = int(hidden)
        dims = {}
        if "audio" in encoders:
            dims["audio"] = encoders["audio"].out_dim
        if "visual" in encoders:
            dims["visual"] = _stage_channels(name, nn.ModuleDict({"visual": encoders["visual"]}))["visual"][-1]
        self.embed = nn.ModuleDict({m: _two_linear(d, int(embed)) for m, d in dims.items()} if embed else {})
        seq_dims = {m: int(embed) if embed else d for m, d in dims.items()}
        guide = seq_dims.get("audio")  # the attention reads the (embedded) audio features
        self.attention = (AudioGuidedAttention(guide, dims["visual"], int(attention_hidden), int(attention))
                          if len(dims) == 2 else None)
        self.lstm = nn.ModuleDict({m: nn.LSTM(d, self.hidden, batch_first=True, bidirectional=True)
                                   for m, d in seq_dims.items()})

    def segment_features(self, encoders: nn.ModuleDict, inputs: dict) -> dict[str, torch.Tensor]:
        """Per-segment vectors before the LSTMs: {modality: [B·S, D]}."""
        out = {}
        if "audio" in encoders:
            a = self.audio_rows(encoders["audio"], inputs["audio"])
            out["audio"] = self.embed["audio"](a) if "audio" in self.embed else a
        if "visual" in encoders:
            maps = stage_maps(encoders["visual"], self.frame_rows(encoders["visual"], inputs["visual"]))
            v = self.attention(out["audio"], maps) if self.attention is not None else maps.mean(dim=(2, 3))
            out["visual"] = self.embed["visual"](v) if "visual" in self.embed else v
        return out

    def forward(self, encoders: nn.ModuleDict, inputs: dict) -> dict[str, torch.Tensor]:
        feats = self.segment_features(encoders, inputs)
        return {m: self.lstm[m](to_clips(x, self.segments, f"backbone {self.name!r}"))[0].flatten(0, 1)
                for m, x in feats.items()}  # [B, S, 2h] → [B·S, 2h]

    def out_dims(self, encoders: nn.ModuleDict) -> dict[str, int]:
        return {m: 2 * self.hidden for m in encoders}


def _two_linear(d_in: int, d_out: int) -> nn.Sequential:
    """PSP's ``fa`` / ``fv``: d_in → 2·d_out → d_out, two bias-free linear layers, no activation."""
    return nn.Sequential(nn.Linear(d_in, 2 * d_out, bias=False), nn.Linear(2 * d_out, d_out, bias=False))


@BACKBONES.register("avga")
class AVGABackbone(AttendedLSTMBackbone):
    """AVGA (Tian et al., ECCV 2018): audio-guided visual attention, then a bi-LSTM per modality
    over the raw audio features and the attended visual vectors (``att_Net``).

    Options: ``segments`` (10), ``hidden`` LSTM width per direction (32; the paper 128),
    ``attention`` the attention size (16; the code 49), ``attention_hidden`` the width of the
    projected audio and visual vectors inside the attention (32; the code 512).
    Features: {modality: [B·S, 2·hidden]}.
    """

    fusion = "avga"

    def __init__(self, encoders: nn.ModuleDict, segments: int = 10, hidden: int = 32, attention: int = 16,
                 attention_hidden: int = 32) -> None:
        super().__init__("avga", encoders, segments, hidden, attention, attention_hidden, embed=None)


@FUSIONS.register("avga")
class AVGAFusion(Fusion):
    """``att_Net``'s prediction per segment: z = L2(ReLU(L1(ReLU([h_a; h_v])))), L1 to ``width``
    (64, as the code) and L2 to the classes (the code's final softmax is left to the loss).

    ``att_Net`` concatenates the two LSTM outputs (its L1 reads 4·hidden); it does not average
    them. Each row is classified alone, so the head works on any features; ``segments`` (from the
    backbone) is accepted and unused. Not additive: a modality's logits are the prediction with
    the other modality's features zeroed (``zeroed_estimate``).
    """

    def __init__(self, dims: dict[str, int], num_classes: int, width: int = 64, segments: int | None = None) -> None:
        super().__init__(dims, num_classes)
        self.l1 = nn.Linear(sum(dims.values()), int(width))
        self.l2 = nn.Linear(int(width), num_classes)
        nn.init.xavier_uniform_(self.l1.weight)
        nn.init.xavier_uniform_(self.l2.weight)

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        joint = torch.relu(torch.cat([features[m] for m in self.modalities], dim=1))  # [N, Σ D_m]
        return self.l2(torch.relu(self.l1(joint)))

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return zeroed_split(self, features)


@BACKBONES.register("avsdn")
class AVSDNBackbone(SegmentedBackbone):
    """AVSDN's encoders (Lin, Li, Wang, ICASSP 2019): per segment, each modality's encoder
    features (audio chunk, frame: pooled, no attention), then one LSTM per modality over the S
    segments. The modalities meet only in the head's decoder, so ``intermediate`` is False.

    The authors' code is not public; this follows the paper: per-modality LSTM encoders and a
    sequence-to-sequence decoder over both (``avsdn`` head). Options: ``segments`` (10),
    ``hidden`` LSTM width (64, the width of AVGA's and PSP's mini bi-LSTM outputs, 2 × 32: at 32
    the one-way encoders and decoder stayed near the background rate in the mini recipe; the
    paper profile 128). Features: {modality: [B·S, hidden]}.
    """

    fusion = "avsdn"

    def __init__(self, encoders: nn.ModuleDict, segments: int = 10, hidden: int = 64) -> None:
        super().__init__("avsdn", encoders, segments)
        self.hidden = int(hidden)
        self.lstm = nn.ModuleDict({m: nn.LSTM(enc.out_dim, self.hidden, batch_first=True) for m, enc in encoders.items()})

    def forward(self, encoders: nn.ModuleDict, inputs: dict) -> dict[str, torch.Tensor]:
        out = {}
        for m, enc in encoders.items():
            rows = self.audio_rows(enc, inputs[m]) if m == "audio" else enc(self.frame_rows(enc, inputs[m]))  # [B·S, D_m]
            out[m] = self.lstm[m](to_clips(rows, self.segments, "backbone 'avsdn'"))[0].flatten(0, 1)  # [B·S, h]
        return out

    def out_dims(self, encoders: nn.ModuleDict) -> dict[str, int]:
        return {m: self.hidden for m in encoders}


def _needs_backbone(name: str, dims: dict[str, int], segments) -> bool:
    """Heads that read the segment structure get ``segments`` from their backbone. Without it they
    refuse several modalities (foreign features) and are a linear head for one (a unimodal
    baseline, as CentralNet's ``central``). Returns whether the full head is built."""
    if segments is not None:
        if int(segments) < 1:
            raise ValueError(f"fusion {name!r}: segments must be at least 1; got {segments}")
        return True
    if len(dims) > 1:
        raise ValueError(f"fusion {name!r} reads a clip's segments and needs model.backbone {name!r}")
    return False


@FUSIONS.register("avsdn")
class AVSDNFusion(Fusion):
    """AVSDN's decoder: per clip, e_s = [h_a,s; h_v,s] (the encodings of segment s, [B, S, ΣD]);
    a decoder LSTM of width ``hidden`` (default: the largest feature size) reads e_1 … e_S,
    starting from h_0 = tanh(W e_S + b) (the encoders' final outputs: the clip's global
    context; c_0 = 0); each step's output → a linear layer → that segment's logits [B·S, C].

    The paper's seq2seq encoder final state initialises the decoder; the backbone's features are
    per-segment outputs, so its last segment's encodings stand in for that state. Unimodal logits:
    ``zeroed_estimate``. ``segments`` comes from the backbone.
    """

    def __init__(self, dims: dict[str, int], num_classes: int, segments: int | None = None,
                 hidden: int | None = None) -> None:
        super().__init__(dims, num_classes)
        if not _needs_backbone("avsdn", dims, segments):
            self.segments, self.head = None, nn.Linear(sum(dims.values()), num_classes)
            return
        self.segments, width = int(segments), int(hidden or max(dims.values()))
        self.bridge = nn.Linear(sum(dims.values()), width)
        self.decoder = nn.LSTM(sum(dims.values()), width, batch_first=True)
        self.head = nn.Linear(width, num_classes)

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        joint = torch.cat([features[m] for m in self.modalities], dim=1)  # [B·S, ΣD]
        if self.segments is None:
            return self.head(joint)
        seq = to_clips(joint, self.segments, "fusion 'avsdn'")  # [B, S, ΣD]
        h0 = torch.tanh(self.bridge(seq[:, -1]))[None]  # [1, B, width]
        out, _ = self.decoder(seq, (h0, torch.zeros_like(h0)))
        return self.head(out.flatten(0, 1))  # [B·S, C]

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return zeroed_split(self, features)


@BACKBONES.register("psp")
class PSPBackbone(AttendedLSTMBackbone):
    """PSP's trunk (Zhou et al., CVPR 2021, ``psp_net`` up to the PSP module): audio features
    mapped by ``fa`` (two linear layers to ``embed``), the visual vector attended under the
    mapped audio's guidance (AVGA) and mapped by ``fv``, then a bi-LSTM per modality.

    Options: ``segments`` (10), ``hidden`` LSTM width per direction (32; the code 128),
    ``embed`` width after fa / fv (default: ``hidden``, as the code's 128), ``attention`` (16;
    the code 49), ``attention_hidden`` (32; the code 512). Features: {modality: [B·S, 2·hidden]}.
    """

    fusion = "psp"

    def __init__(self, encoders: nn.ModuleDict, segments: int = 10, hidden: int = 32, embed: int | None = None,
                 attention: int = 16, attention_hidden: int = 32) -> None:
        super().__init__("psp", encoders, segments, hidden, attention, attention_hidden, embed=int(embed or hidden))


def prune_and_normalise(similarity: torch.Tensor, threshold: float) -> torch.Tensor:
    """PSP's pruning of one direction's similarities [B, S, S] (rows: the receiving segments):
    each row l1-normalised, entries ≤ ``threshold`` set to 0, the row l1-normalised again (a row
    with nothing left stays 0). 1e-8 in the denominators, as the authors' code."""
    weights = similarity / (similarity.sum(dim=-1, keepdim=True) + 1e-8)
    weights = weights * (weights > threshold).to(weights.dtype)
    return weights / (weights.sum(dim=-1, keepdim=True) + 1e-8)


def positive_sample_propagation(a: torch.Tensor, v: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor,
                                v1: torch.Tensor, v2: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PSP's propagation on one batch of clips, [B, S, ·] each: a, v the features; a1, a2, v1, v2
    their ReLU branches (width k).

    β = ReLU(v2 a1^T / √k) ([B, S_v, S_a]: visual segment i with audio segment j); the visual rows
    of β and the audio rows of β^T pruned (``prune_and_normalise``); then v̂ = v + β̃_va a2 and
    â = a + β̃_av v1: each segment gathers the other modality's positive segments. Returns (â, v̂).
    """
    sim = torch.relu(torch.bmm(v2, a1.transpose(1, 2)) / math.sqrt(v2.shape[-1]))  # [B, S, S]
    v_from_a = prune_and_normalise(sim, threshold)
    a_from_v = prune_and_normalise(sim.transpose(1, 2), threshold)
    return a + torch.bmm(a_from_v, v1), v + torch.bmm(v_from_a, a2)


@FUSIONS.register("psp")
class PSPFusion(Fusion):
    """PSP's positive sample propagation and classifier (the authors' ``PSP`` module and the L1/L2
    head of ``psp_net``), per clip [B, S, ·].

    Branches a1, a2, v1, v2 = Dropout(ReLU(bias-free linear to ``hidden``)) of each modality's
    features; ``positive_sample_propagation`` with ``threshold`` (the code's default 0.099);
    then per modality LN(Dropout(ReLU(fc_m(·)))) (one LayerNorm shared, as the code); fused
    f = (a_psp + v_psp) / 2 and logits L2(ReLU(L1 f)), L1 to ``width`` (64), no biases. The
    propagated vectors are added to the features, so both modalities need the same feature size D
    (the ``psp`` backbone gives 2·hidden to each), and every PSP layer is D wide (the code: 256,
    its bi-LSTM outputs). ``dropout``: 0.1 as the code.

    Not in the supervised objective here: the code's audio-visual pair similarity loss (AVPS,
    weighted 100, on the cosine of a_psp and v_psp per segment); the shared per-segment
    cross-entropy trains the model. With one modality there is nothing to propagate: that
    modality's LN(Dropout(ReLU(fc(x)))) is classified. Unimodal logits: ``zeroed_estimate``.
    """

    def __init__(self, dims: dict[str, int], num_classes: int, segments: int | None = None, threshold: float = 0.099,
                 width: int = 64, dropout: float = 0.1) -> None:
        super().__init__(dims, num_classes)
        if not _needs_backbone("psp", dims, segments):
            self.segments, self.head = None, nn.Linear(sum(dims.values()), num_classes)
            return
        self.segments, self.threshold = int(segments), float(threshold)
        if len(set(dims.values())) > 1:
            sizes = ", ".join(f"{m} {d}" for m, d in dims.items())
            raise ValueError(f"fusion 'psp' adds each modality's propagated features to the other's and needs equal "
                             f"feature sizes; got {sizes}")
        k = next(iter(dims.values()))
        # the propagation branches exist only where there is a pair to propagate between
        pair = len(dims) > 1
        self.branches = nn.ModuleDict({f"{m}{i}": nn.Linear(k, k, bias=False) for m in dims for i in (1, 2)} if pair else {})
        self.fc = nn.ModuleDict({m: nn.Linear(d, k, bias=False) for m, d in dims.items()})
        for layer in [*self.branches.values(), *self.fc.values()]:
            nn.init.xavier_uniform_(layer.weight)
        self.drop = nn.Dropout(float(dropout))
        self.norm = nn.LayerNorm(k, eps=1e-6)
        self.l1 = nn.Linear(k, int(width), bias=False)
        self.l2 = nn.Linear(int(width), num_classes, bias=False)
        nn.init.xavier_uniform_(self.l1.weight)
        nn.init.xavier_uniform_(self.l2.weight)

    def branch(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.drop(torch.relu(self.branches[name](x)))

    def propagated(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each modality's features after propagation, {modality: [B, S, D_m]} (one modality: as given)."""
        x = {m: to_clips(features[m], self.segments, "fusion 'psp'") for m in self.modalities}
        if len(self.modalities) < 2:
            return x
        if set(x) != {"audio", "visual"}:
            raise ValueError(f"fusion 'psp' propagates between 'audio' and 'visual'; got {', '.join(x)}")
        a, v = x["audio"], x["visual"]
        a_hat, v_hat = positive_sample_propagation(a, v, self.branch("audio1", a), self.branch("audio2", a),
                                                   self.branch("visual1", v), self.branch("visual2", v), self.threshold)
        return {"audio": a_hat, "visual": v_hat}

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.segments is None:
            return self.head(torch.cat([features[m] for m in self.modalities], dim=1))
        psp = {m: self.norm(self.drop(torch.relu(self.fc[m](x)))) for m, x in self.propagated(features).items()}
        fused = sum(psp.values()) / len(psp)  # [B, S, hidden]: (a_psp + v_psp) / 2
        return self.l2(torch.relu(self.l1(fused))).flatten(0, 1)  # [B·S, C]

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return zeroed_split(self, features)
