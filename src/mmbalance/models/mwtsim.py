"""MWTSIM: multimodal temporal windows in a shared metric space (OPM/OGM Tab. 8, CREMA-D).

Ghaleb, Popa & Asteriadis, "Multimodal and temporal perception of audio-visual cues for emotion
recognition", ACII 2019: "a multimodal temporal deep network framework that embeds video clips
using their audio-visual content, onto a metric space, where their gap is reduced and their
complementary and supplementary information is explored", studying "how temporal information
impacts the recognition rate". The OPM/OGM paper (TPAMI 2024) trains it alone and with OPM and
OGM. Neither the paper's full text nor its code is available here; this is a reconstruction from
the abstract and the authors' follow-ups (IEEE MultiMedia 2020: a cross-modal metric learned
jointly with the classifier; MTAP 2022: "bi-modal time windows spanning short video clips").

Reconstructed from those descriptions:

- **Temporal windows.** A clip is W windows (``windows``, 3: one-second windows of CREMA-D's ~3-s
  clips). The audio spectrogram [B, 1, F, T] is cut into W equal time chunks (``segment_chunks``)
  and each chunk is one input of the audio encoder; the visual stream gives one frame per window
  (``window_frames``). Each window is encoded alone: [B, W, D_m] per modality.
- **Metric space.** Per modality a linear projection of every window to the shared d-dim space
  (``embed_dim``), L2-normalised per window; the windows' unit vectors are averaged and the clip
  embedding e_m is that mean, L2-normalised again ([B, d]). ``temporal: gru`` reads the window
  embeddings with a GRU per modality instead (its last state, normalised), for a model that
  orders the windows; the abstract does not say which, and the mean is the default.
- **Cross-modal metric loss.** A triplet loss on the clip embeddings (``cross_modal_triplet_loss``):
  a clip's audio embedding is pulled towards its own visual embedding and pushed at least
  ``margin`` further from the visual embeddings of the batch's clips of other classes, and the
  same with the modalities swapped (squared Euclidean distance between unit vectors, FaceNet's
  form and margin 0.2; every valid triplet of the batch, averaged: "batch all", not only the
  hardest negative, which from the first step tends to collapse the embeddings). The negatives are
  picked by class: MWTSIM reduces the gap between the modalities of a clip in a space that
  separates emotions. The head returns the loss as ``Output.aux_loss``, a function of the batch's
  labels that the base training loss adds, weighted by ``metric_weight``.
- **Classification.** One linear layer on [e_a; e_v] (the ``concat`` head): the features of
  modality m are its clip embedding e_m, which OPM drops and from whose share W_m·e_m + b/M OGM
  scores the modality.

Choices where the description is silent: linear projections (no hidden layer), mean over windows,
the batch-all triplet with class negatives, the loss weight 1. The encoders are the encoder set's
(tiny CNNs in the mini profile, ResNet-18 in the paper profile), trained end to end.

Input sizes: the audio encoder's ``input_size`` [F', T'] is the clip's (the loader pools the whole
spectrogram to it); the backbone pools a clip to it, cuts it, and each window is read at its own
size [F', ⌈T'/W⌉] (the encoder's input pooling is set to that size when the backbone is built).
Frames: the visual encoder's ``select`` (``model.frames``) applies first; the clip's T_v frames
are then mapped to the W windows (frame ⌊(2w+1)·T_v / 2W⌋ for window w: the centres of W equal
parts for T_v ≥ W, the frame whose span holds the window's centre for T_v < W), and each distinct
frame is encoded once.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.models.backbones import BACKBONES, Backbone, shape_of
from mmbalance.models.encoders import TinyCNN
from mmbalance.models.fusions import FUSIONS, ConcatFusion
from mmbalance.models.localisation import segment_chunks

__all__ = ["MWTSIMBackbone", "MWTSIMFusion", "cross_modal_triplet_loss", "metric_loss", "window_frame_indices",
           "window_frames"]

MODALITIES = ("audio", "visual")
TEMPORAL = ("mean", "gru")


def window_frame_indices(t: int, windows: int) -> list[int]:
    """The frame of each of W windows among a clip's T frames: ⌊(2w+1)·T / 2W⌋ (the frame whose
    time span holds the window's centre): T = W → every frame in order; T > W → the centres of W
    equal parts (``select_frames``); T < W → neighbouring windows share a frame (T = 1: all)."""
    return [(2 * w + 1) * t // (2 * windows) for w in range(windows)]


def window_frames(enc: nn.Module, x: torch.Tensor, windows: int) -> torch.Tensor:
    """Frames [B, T, C, H, W] → per-window frame features [B, windows, D]: each distinct frame of
    ``window_frame_indices`` encoded once (as a 1-frame clip), then gathered per window."""
    idx = window_frame_indices(x.shape[1], windows)
    distinct = sorted(set(idx))
    feats = enc(x[:, distinct].flatten(0, 1).unsqueeze(1))  # [B·U, D]
    feats = feats.view(x.shape[0], len(distinct), -1)  # [B, U, D]
    return feats[:, [distinct.index(i) for i in idx]]  # [B, W, D]


def _window_input_size(enc: nn.Module, windows: int) -> tuple[int, int] | None:
    """Set the audio encoder's input pooling (``input_size`` [F', T']: the clip's size) to one
    window's [F', ⌈T'/W⌉], so that a window is read at its own size rather than stretched back to
    the clip's; returns the clip's [F', T'] (None: the encoder does not pool its input)."""
    body = getattr(enc, "body", None)
    if isinstance(body, TinyCNN) and body.input_size:  # tiny_cnn's shrink
        f, t = body.input_size
        body.input_size = (f, math.ceil(t / windows))
        return (f, t)
    if isinstance(body, nn.Sequential) and len(body) and isinstance(body[0], nn.AdaptiveAvgPool2d):  # input_pooled
        f, t = body[0].output_size
        body[0].output_size = (f, math.ceil(t / windows))
        return (f, t)
    return None


@BACKBONES.register("mwtsim")
class MWTSIMBackbone(Backbone):
    """MWTSIM's windows and metric-space embeddings (module docstring): per modality, W windows
    encoded alone, projected to ``embed_dim``, L2-normalised, aggregated over the windows
    (``temporal``: ``mean`` or ``gru``) and normalised again. Features {modality: [B, embed_dim]}.

    Options: ``windows`` W (3), ``embed_dim`` d (64), ``temporal`` (``mean``), and for the head
    ``margin`` (0.2) and ``metric_weight`` (1.0) of the cross-modal triplet loss. The modalities
    meet only in the head (not ``intermediate``). Reads ``audio`` (a spectrogram [B, 1, F, T]) and
    ``visual`` (frames [B, T_v, 3, H, W]); one of them alone is a unimodal baseline (no metric loss).
    """

    fusion = "mwtsim"

    def __init__(self, encoders: nn.ModuleDict, windows: int = 3, embed_dim: int = 64, temporal: str = "mean",
                 margin: float = 0.2, metric_weight: float = 1.0) -> None:
        super().__init__()
        unknown = [m for m in encoders if m not in MODALITIES]
        if unknown or not encoders:
            raise ValueError(f"backbone 'mwtsim' reads modalities 'audio' (spectrogram) and 'visual' (frames); "
                             f"got {', '.join(encoders) or 'none'}")
        if int(windows) < 1 or int(embed_dim) < 1:
            raise ValueError(f"backbone 'mwtsim': windows and embed_dim must be at least 1; got {windows}, {embed_dim}")
        if temporal not in TEMPORAL:
            raise ValueError(f"backbone 'mwtsim': temporal must be one of {', '.join(TEMPORAL)}; got {temporal!r}")
        if float(margin) < 0 or float(metric_weight) < 0:
            raise ValueError(f"backbone 'mwtsim': margin and metric_weight must be ≥ 0; got {margin}, {metric_weight}")
        self.windows, self.embed_dim, self.temporal = int(windows), int(embed_dim), temporal
        self.margin, self.metric_weight = float(margin), float(metric_weight)
        self.clip_size = _window_input_size(encoders["audio"], self.windows) if "audio" in encoders else None
        self.project = nn.ModuleDict({m: nn.Linear(enc.out_dim, self.embed_dim) for m, enc in encoders.items()})
        self.gru = nn.ModuleDict({m: nn.GRU(self.embed_dim, self.embed_dim, batch_first=True) for m in encoders}
                                 if temporal == "gru" else {})

    def window_features(self, encoders: nn.ModuleDict, inputs: dict) -> dict[str, torch.Tensor]:
        """Each window encoded alone: {modality: [B, W, D_m]}."""
        out = {}
        for m, enc in encoders.items():
            x = inputs[m]
            if m == "audio":
                if not isinstance(x, torch.Tensor) or x.dim() != 4:
                    raise ValueError(f"backbone 'mwtsim': audio must be a spectrogram [B, 1, F, T]; got {shape_of(x)}")
                if self.clip_size is not None and tuple(x.shape[-2:]) != self.clip_size:
                    x = F.adaptive_avg_pool2d(x, self.clip_size)  # the loader has done it already
                out[m] = enc(segment_chunks(x, self.windows)).unflatten(0, (x.shape[0], self.windows))
            else:
                if hasattr(enc, "select") and isinstance(x, torch.Tensor) and x.dim() == 5:
                    x = enc.select(x)  # model.frames
                if not isinstance(x, torch.Tensor) or x.dim() != 5:
                    raise ValueError(f"backbone 'mwtsim': visual must be frames [B, T, C, H, W]; got {shape_of(x)}")
                out[m] = window_frames(enc, x, self.windows)
        return out

    def window_embeddings(self, encoders: nn.ModuleDict, inputs: dict) -> dict[str, torch.Tensor]:
        """The windows in the metric space: {modality: [B, W, d]}, unit vectors."""
        return {m: F.normalize(self.project[m](f), dim=-1) for m, f in self.window_features(encoders, inputs).items()}

    def forward(self, encoders: nn.ModuleDict, inputs: dict) -> dict[str, torch.Tensor]:
        out = {}
        for m, u in self.window_embeddings(encoders, inputs).items():
            clip = u.mean(dim=1) if self.temporal == "mean" else self.gru[m](u)[1][-1]  # [B, d]
            out[m] = F.normalize(clip, dim=-1)
        return out

    def out_dims(self, encoders: nn.ModuleDict) -> dict[str, int]:
        return {m: self.embed_dim for m in encoders}

    def fusion_options(self) -> dict:
        return {"margin": self.margin, "metric_weight": self.metric_weight}


def cross_modal_triplet_loss(x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Triplet loss across two modalities, x and y [B, d] (row i: clip i), labels [B].

    Anchor x_i, positive y_i (the same clip's other modality), negative y_j for every clip j of
    another class; distances D_ij = ‖x̂_i − ŷ_j‖² of the L2-normalised rows (= 2 − 2 cos). The loss
    is the mean of [D_ii − D_ij + margin]_+ over all such (i, j), and the same with x and y
    swapped, averaged. A row that is all zeros (features dropped by OPM) takes part in no triplet;
    a batch without a valid triplet gives 0.
    """
    valid = (x.detach().abs().sum(dim=1) > 0) & (y.detach().abs().sum(dim=1) > 0)  # [B]
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)
    dist = (2.0 - 2.0 * xn @ yn.t()).clamp_min(0.0)  # [B, B], rows: x anchors, columns: y
    mask = (labels[:, None] != labels[None, :]) & valid[:, None] & valid[None, :]  # anchor i, negative j
    weights = mask.to(dist.dtype) / mask.sum().clamp_min(1)
    pos = dist.diagonal()
    x_anchor = (torch.relu(pos[:, None] - dist + margin) * weights).sum()  # D_ii − D_ij
    y_anchor = (torch.relu(pos[:, None] - dist.t() + margin) * weights).sum()  # anchor y_i, negatives x_j
    return (x_anchor + y_anchor) / 2


def metric_loss(features: dict[str, torch.Tensor], margin: float, weight: float, labels: torch.Tensor) -> torch.Tensor:
    """``weight`` × the cross-modal triplet loss of the audio and visual embeddings (MWTSIM's
    ``Output.aux_loss``, called by the base training loss with the batch's labels)."""
    return weight * cross_modal_triplet_loss(features["audio"], features["visual"], labels.reshape(-1), margin)


@FUSIONS.register("mwtsim")
class MWTSIMFusion(ConcatFusion):
    """MWTSIM's classifier and metric loss: logits W·[e_a; e_v] + b (the ``concat`` head, with its
    exact per-modality split W_m·e_m + b/M), and ``aux_loss(features)``, the cross-modal triplet
    loss of the two embeddings as a function of the labels (``Output.aux_loss``).

    ``margin`` and ``metric_weight`` come from the ``mwtsim`` backbone. With one modality there
    is no pair: a linear head and no metric loss. The two embeddings need the same size.
    """

    adds_aux_loss = True  # the model puts ``aux_loss(features)`` into its Output

    def __init__(self, dims: dict[str, int], num_classes: int, margin: float = 0.2, metric_weight: float = 1.0) -> None:
        super().__init__(dims, num_classes)
        if len(dims) > 1 and (set(dims) != set(MODALITIES) or len(set(dims.values())) > 1):
            sizes = ", ".join(f"{m} {d}" for m, d in dims.items())
            raise ValueError(f"fusion 'mwtsim' compares the audio and visual embeddings and needs 'audio' and 'visual' "
                             f"features of equal size; got {sizes}")
        self.margin, self.metric_weight = float(margin), float(metric_weight)

    def aux_loss(self, features: dict[str, torch.Tensor]):
        """labels → the weighted triplet loss of these features; None with one modality or weight 0."""
        if len(self.modalities) < 2 or self.metric_weight == 0:
            return None
        return partial(metric_loss, {m: features[m] for m in MODALITIES}, self.margin, self.metric_weight)
