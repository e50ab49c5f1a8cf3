"""Audio-visual question answering models of the OPM/OGM paper's Table 7 (TPAMI 2024, MUSIC-AVQA).

Three modalities per example (``mmbalance.datasets.music_avqa``): ``audio`` a spectrogram
[B, 1, F, W] of T one-second snippets put end to end, ``visual`` [B, T, 3, H, W] the frames of
the same T seconds, ``question`` a padded word-feature sequence (``SequenceBatch`` [B, L, D]).
The answer is one of the answer vocabulary's classes, one label per question.

Each model is a backbone (``BACKBONES``) and a fusion head (``FUSIONS``) of the same name. The
backbone turns every modality into **tokens**: per second, the audio encoder's last-stage maps
averaged over frequency and pooled to the T seconds' columns ([B, T, C_a]), and the visual
encoder's features of each frame ([B, T, D_v]); the question encoder's output ([B, D_q], or its
per-word outputs [B, L_q, D_q]). A modality's features are its tokens flattened ([B, T·D]), so
OPM drops all of a modality's tokens at once (its features zeroed) and OGM scales each encoder's
gradients from the per-modality scores, as on every other model; the head reshapes them back.

- ``avsd`` (Schwartz, Schwing, Hazan, CVPR 2019, "A Simple Baseline for Audio-Visual
  Scene-Aware Dialog", a MUSIC-AVQA baseline in Li et al. 2022): the question encoded by an LSTM
  (the ``question`` encoder); per modality an attention over the T seconds driven by the question,
  e_t = wᵀ tanh(W x_t + U q); the attended audio and visual vectors and the question
  concatenated; an MLP to the answers.
- ``panoavqa`` (Yun et al., ICCV 2021, "Pano-AVQA"): one transformer over the concatenated token
  sequences ([CLS], audio, visual and question tokens), each token projected to the model width
  plus a modality-type embedding and a position embedding (its second or word index); the answer
  from the pooled [CLS] output (tanh(W h_CLS), then a linear classifier).

Unimodal logits (probes, OPM, OGM): both heads are non-linear, so a modality's logits are the
prediction with every other modality's features zeroed (``localisation.zeroed_split``). In the
transformer a token whose features are all exactly zero is left out of the attention (a padded
question word, or a modality that OPM, ModDrop or a robustness test zeroed): the modality is
then absent, not present as zero vectors.

Both heads also work on the feature vectors of any backbone (``tokens`` not given: one token per
modality, no attention over time), so the registry-driven tests and a mis-paired run fail loudly
only where the backbone insists on its head (``Backbone.fusion``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from mmbalance.models.backbones import BACKBONES, Backbone, shape_of, stage_maps
from mmbalance.models.fusions import FUSIONS, Fusion
from mmbalance.models.localisation import zeroed_split
from mmbalance.models.output import SequenceBatch
from mmbalance.models.sequence_encoders import SequenceLSTM, SequenceTransformer, _unpack

__all__ = ["AVQABackbone", "AVSDBackbone", "AVSDFusion", "PanoAVQABackbone", "PanoAVQAFusion",
           "QuestionGuidedAttention", "audio_tokens", "frame_tokens", "question_tokens", "to_tokens"]

QUESTION = "question"
MODALITIES = ("audio", "visual", QUESTION)


def _pool_time(x: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, n, D] → [B, steps, D] by adaptive average pooling over the n steps (identity for n = steps;
    fewer steps than ``steps`` are repeated)."""
    if x.shape[1] == steps:
        return x
    return F.adaptive_avg_pool1d(x.transpose(1, 2), steps).transpose(1, 2)


def audio_tokens(enc: nn.Module, x: torch.Tensor, steps: int, who: str) -> torch.Tensor:
    """Spectrogram [B, 1, F, W] → one token per second [B, steps, C]: the encoder's last-stage maps
    [B, C, f, w] averaged over frequency and pooled over time to ``steps`` columns.

    Running the encoder once over the whole spectrogram (not once per second) keeps the loader's
    pooling to the encoder's ``input_size`` valid; pick an ``input_size`` whose last-stage maps
    have at least ``steps`` columns (tiny CNN: 8·steps input columns), or seconds share columns.
    """
    audio_stages(enc, who)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{who}: audio must be a spectrogram [B, 1, F, W]; got {shape_of(x)}")
    maps = stage_maps(enc, x)  # [B, C, f, w]
    return _pool_time(maps.mean(dim=2).transpose(1, 2), steps)  # [B, w, C] → [B, steps, C]


def audio_stages(enc: nn.Module, who: str):
    """The audio encoder's stages (``FrameAveraging.stages``); a clear error for an encoder that
    cannot be cut into them, which gives no per-second maps."""
    stages = getattr(enc, "stages", None)
    if stages is None:
        raise ValueError(f"{who}: the audio encoder must be convolutional, cut into stages (tiny_cnn, resnet18), "
                         f"to give one token per second; modality 'audio' has {type(getattr(enc, 'body', enc)).__name__}")
    return stages


def frame_tokens(enc: nn.Module, x: torch.Tensor, steps: int, who: str) -> torch.Tensor:
    """Frames [B, n, 3, H, W] (after ``model.frames``) → one token per second [B, steps, D]: each
    frame's encoder features, pooled over time to ``steps`` when n differs (the dataset stores
    one frame per sampled second, so n = steps on its data)."""
    if not hasattr(enc, "frame_rows") or not hasattr(enc, "body"):
        raise ValueError(f"{who}: the visual encoder must encode frames one by one (tiny_cnn, resnet18, swin); "
                         f"modality 'visual' has {type(enc).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() not in (4, 5):
        raise ValueError(f"{who}: visual must be frames [B, n, C, H, W]; got {shape_of(x)}")
    rows, n = enc.frame_rows(x)  # [B·n, C, H, W]
    feats = enc.body(rows)  # [B·n, D]
    return _pool_time(feats.view(-1, n, feats.shape[-1]), steps)


def question_tokens(enc: nn.Module, batch: SequenceBatch | torch.Tensor, length: int, who: str) -> torch.Tensor:
    """The question encoder's per-word outputs [B, length, D]: cropped or zero-padded to
    ``length`` words, and zero at padding steps (the transformer head leaves all-zero tokens out).

    The encoder runs as usual (so its own code and checks apply); its per-step outputs are taken
    from its recurrent or transformer layer with a forward hook, before its pooling.
    """
    if isinstance(enc, SequenceTransformer):
        layer = enc.encoder  # → [B, L, d_model], after its final LayerNorm
    elif isinstance(enc, SequenceLSTM):
        layer = enc.lstm  # → (PackedSequence, state)
    else:
        raise ValueError(f"{who}: question tokens come from a 'transformer' or 'lstm' sequence encoder; "
                         f"modality 'question' has {type(enc).__name__}")
    x, mask = _unpack(batch)  # [B, L, D], [B, L] (the encoder's own view of the padding)
    seen: list = []
    handle = layer.register_forward_hook(lambda _module, _args, out: seen.append(out))
    try:
        enc(batch)
    finally:
        handle.remove()
    out = seen[-1]
    if isinstance(enc, SequenceLSTM):
        packed = out[0]
        if not isinstance(packed, PackedSequence):  # SequenceLSTM packs its input; anything else is a change there
            raise ValueError(f"{who}: the question LSTM returned {type(packed).__name__}, not a PackedSequence")
        out = pad_packed_sequence(packed, batch_first=True, total_length=x.shape[1])[0]  # [B, L, H·dirs]
    out = out * mask[..., None].to(out.dtype)  # padding steps → exactly 0
    if out.shape[1] >= length:
        return out[:, :length]
    return F.pad(out, (0, 0, 0, length - out.shape[1]))


def to_tokens(features: torch.Tensor, count: int, who: str) -> torch.Tensor:
    """Flattened tokens [B, count·d] → [B, count, d]; a clear error when the size does not split."""
    if features.dim() != 2 or features.shape[1] % count:
        raise ValueError(f"{who}: features {shape_of(features)} do not split into {count} tokens")
    return features.view(features.shape[0], count, -1)


class AVQABackbone(Backbone):
    """Base of the AVQA backbones: each modality's tokens, flattened into its features.

    ``steps`` T: tokens per clip of audio and visual (the dataset's ``clip_frames``);
    ``question_words``: None for one question vector (the encoder's pooled output), else the
    number L_q of per-word question tokens. The modalities meet only in the head
    (``intermediate`` False). Features: {audio: [B, T·C_a], visual: [B, T·D_v], question:
    [B, D_q] or [B, L_q·D_q]}.
    """

    def __init__(self, name: str, encoders: nn.ModuleDict, steps: int, question_words: int | None) -> None:
        super().__init__()
        self.name = name
        unknown = [m for m in encoders if m not in MODALITIES]
        if unknown or not encoders:
            raise ValueError(f"backbone {name!r} answers questions about audio-visual scenes and reads modalities "
                             f"'audio' (spectrogram), 'visual' (frames) and 'question' (sequence); "
                             f"got {', '.join(encoders) or 'none'}")
        if int(steps) < 1:
            raise ValueError(f"backbone {name!r}: steps must be at least 1; got {steps}")
        if question_words is not None and int(question_words) < 1:
            raise ValueError(f"backbone {name!r}: question_words must be at least 1; got {question_words}")
        self.steps = int(steps)
        self.question_words = None if question_words is None else int(question_words)
        self.widths = {m: self._width(m, enc) for m, enc in encoders.items()}  # one token's size

    def _width(self, modality: str, enc: nn.Module) -> int:
        if modality == "audio":  # checked here at build time, and by audio_tokens on every call
            return int(audio_stages(enc, f"backbone {self.name!r}").channels[-1])
        return int(enc.out_dim)

    def token_counts(self) -> dict[str, int]:
        """Tokens per modality in the features."""
        return {m: (self.question_words or 1) if m == QUESTION else self.steps for m in self.widths}

    def forward(self, encoders: nn.ModuleDict, inputs: dict) -> dict[str, torch.Tensor]:
        who = f"backbone {self.name!r}"
        out = {}
        for m, enc in encoders.items():
            if m == "audio":
                tokens = audio_tokens(enc, inputs[m], self.steps, who)
            elif m == "visual":
                tokens = frame_tokens(enc, inputs[m], self.steps, who)
            elif self.question_words is None:
                tokens = enc(inputs[m])[:, None]  # [B, 1, D_q]
            else:
                tokens = question_tokens(enc, inputs[m], self.question_words, who)
            out[m] = tokens.flatten(1)  # [B, count·width]
        return out

    def out_dims(self, encoders: nn.ModuleDict) -> dict[str, int]:
        counts = self.token_counts()
        return {m: counts[m] * w for m, w in self.widths.items()}

    def fusion_options(self) -> dict:
        return {"tokens": self.token_counts()}


@BACKBONES.register("avsd")
class AVSDBackbone(AVQABackbone):
    """AVSD's inputs: audio and visual tokens per second, the question as one vector (the
    ``question`` encoder's output: an LSTM's last state in the ``avqa`` encoder set).

    Options: ``steps`` (4, the mini clips' seconds; the dataset's 10 in the paper profile).
    """

    fusion = "avsd"

    def __init__(self, encoders: nn.ModuleDict, steps: int = 4) -> None:
        super().__init__("avsd", encoders, steps, question_words=None)


@BACKBONES.register("panoavqa")
class PanoAVQABackbone(AVQABackbone):
    """Pano-AVQA's inputs: audio and visual tokens per second and one token per question word
    (the question encoder's per-step outputs).

    Options: ``steps`` (4; 10 in the paper profile), ``question_words`` (14: the MUSIC-AVQA
    loader's question length; longer questions are cut, shorter ones padded with absent tokens).
    """

    fusion = "panoavqa"

    def __init__(self, encoders: nn.ModuleDict, steps: int = 4, question_words: int = 14) -> None:
        super().__init__("panoavqa", encoders, steps, question_words=question_words)


def _token_layout(name: str, dims: dict[str, int], tokens: dict[str, int] | None) -> dict[str, tuple[int, int]]:
    """modality → (token count, token width), checked against the feature sizes."""
    tokens = tokens or {}
    layout = {}
    for m, d in dims.items():
        count = int(tokens.get(m, 1))
        if count < 1 or d % count:
            raise ValueError(f"fusion {name!r}: modality {m!r} has {d} features, not {count} tokens of equal size")
        layout[m] = (count, d // count)
    return layout


class QuestionGuidedAttention(nn.Module):
    """Additive attention over a modality's T tokens, guided by the question (AVSD).

    e_t = wᵀ tanh(W x_t + U q) (U q left out without a question), α = softmax_t(e),
    output Σ_t α_t x_t: x [B, T, D], q [B, D_q] → [B, D].
    """

    def __init__(self, dim: int, question_dim: int, size: int) -> None:
        super().__init__()
        self.x = nn.Linear(dim, size)
        self.q = nn.Linear(question_dim, size, bias=False) if question_dim else None
        self.w = nn.Linear(size, 1, bias=False)

    def weights(self, x: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
        """α [B, T], each row summing to 1."""
        content = self.x(x)  # [B, T, size]
        if self.q is not None and q is not None:
            content = content + self.q(q)[:, None, :]
        return torch.softmax(self.w(torch.tanh(content)).squeeze(-1), dim=-1)

    def forward(self, x: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
        return torch.bmm(self.weights(x, q)[:, None, :], x).squeeze(1)


@FUSIONS.register("avsd")
class AVSDFusion(Fusion):
    """AVSD's answer head: each non-question modality's tokens [B, T_m, D_m] attended under the
    question's guidance (``QuestionGuidedAttention``, size ``attention``; no attention for one
    token), the attended vectors and the question vector concatenated, then an MLP:
    z = W₂ Dropout(ReLU(W₁ [x̂_audio; x̂_visual; q] + b₁)) + b₂ (``hidden`` units, ``dropout``).

    ``tokens`` (from the backbone) gives each modality's token count; the question has one.
    Without it every modality is one token (the head on another backbone's features). Unimodal
    logits: ``zeroed_estimate``.
    """

    def __init__(self, dims: dict[str, int], num_classes: int, tokens: dict[str, int] | None = None,
                 attention: int = 32, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__(dims, num_classes)
        self.layout = _token_layout("avsd", dims, tokens)
        if QUESTION in self.layout and self.layout[QUESTION][0] != 1:
            raise ValueError(f"fusion 'avsd' reads the question as one vector; got {self.layout[QUESTION][0]} tokens "
                             f"(use the 'avsd' backbone)")
        q_dim = self.layout[QUESTION][1] if QUESTION in self.layout else 0
        self.attention = nn.ModuleDict({m: QuestionGuidedAttention(w, q_dim, int(attention))
                                        for m, (n, w) in self.layout.items() if m != QUESTION and n > 1})
        joint = sum(w for _, w in self.layout.values())
        self.mlp = nn.Sequential(nn.Linear(joint, int(hidden)), nn.ReLU(), nn.Dropout(float(dropout)),
                                 nn.Linear(int(hidden), num_classes))

    def pooled(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each modality's vector before the MLP, {m: [B, D_m]}: attended tokens, or the question."""
        q = features.get(QUESTION)
        out = {}
        for m in self.modalities:
            count, _ = self.layout[m]
            x = to_tokens(features[m], count, "fusion 'avsd'")  # [B, T_m, D_m]
            out[m] = self.attention[m](x, q) if m in self.attention else x[:, 0]
        return out

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = self.pooled(features)
        return self.mlp(torch.cat([pooled[m] for m in self.modalities], dim=1))  # [B, C]

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return zeroed_split(self, features)


@FUSIONS.register("panoavqa")
class PanoAVQAFusion(Fusion):
    """Pano-AVQA's multimodal transformer and answer head, at any width.

    Sequence [CLS; tokens of each modality in turn]: token t of modality m becomes
    P_m x_t + type_m + pos_t (P_m linear to ``d_model``, learned type and position embeddings:
    the second, or the word, within its modality), CLS a learned vector; ``layers`` pre-LayerNorm
    transformer layers (``heads``, ``ff_dim``, ``dropout``) with a final LayerNorm, all-zero
    tokens masked out as keys; answer z = W_c tanh(W_p h_CLS + b_p) + b_c.

    ``tokens`` (from the backbone) gives each modality's token count; without it each modality is
    one token. Unimodal logits: ``zeroed_estimate`` (the other modalities' tokens then all zero,
    so absent).
    """

    def __init__(self, dims: dict[str, int], num_classes: int, tokens: dict[str, int] | None = None,
                 d_model: int = 32, layers: int = 2, heads: int = 4, ff_dim: int = 64, dropout: float = 0.0) -> None:
        super().__init__(dims, num_classes)
        self.layout = _token_layout("panoavqa", dims, tokens)
        d_model = int(d_model)
        if d_model % int(heads):
            raise ValueError(f"fusion 'panoavqa': d_model {d_model} is not divisible by heads {heads}")
        self.proj = nn.ModuleDict({m: nn.Linear(w, d_model) for m, (_, w) in self.layout.items()})
        self.types = nn.Embedding(len(self.layout), d_model)
        self.positions = nn.Embedding(max(n for n, _ in self.layout.values()), d_model)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, int(heads), int(ff_dim), float(dropout), batch_first=True,
                                           norm_first=True)
        # pre-LN needs a final LayerNorm; nested tensors do not support it
        self.encoder = nn.TransformerEncoder(layer, int(layers), norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.pooler = nn.Linear(d_model, d_model)
        self.head = nn.Linear(d_model, num_classes)

    def sequence(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer's input [B, 1 + Σ T_m, d_model] and key padding mask [B, 1 + Σ T_m]
        (True = left out: a token whose features are all zero; never the CLS)."""
        parts, absent = [], []
        for i, m in enumerate(self.modalities):
            count, _ = self.layout[m]
            x = to_tokens(features[m], count, "fusion 'panoavqa'")  # [B, T_m, D_m]
            absent.append((x == 0).all(dim=-1))  # [B, T_m]
            pos = self.positions.weight[:count]  # [T_m, d_model]
            parts.append(self.proj[m](x) + self.types.weight[i] + pos)
        b = parts[0].shape[0]
        cls = self.cls.expand(b, -1, -1)
        mask = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=cls.device), *absent], dim=1)
        return torch.cat([cls, *parts], dim=1), mask

    def fuse(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        seq, mask = self.sequence(features)
        h = self.encoder(seq, src_key_padding_mask=mask)  # [B, 1 + ΣT, d_model]
        return self.head(torch.tanh(self.pooler(h[:, 0])))  # [B, C]

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return zeroed_split(self, features)
