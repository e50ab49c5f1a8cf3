"""X-vector audio encoder (Snyder et al., ICASSP 2018), registered as ``xvector``: OPM/OGM Tab. 8.

The OPM/OGM paper (TPAMI 2024) combines its modulation with "task-oriented" emotion-recognition
methods on CREMA-D, among them X-vector [61] (Pappagari et al., ICASSP 2020, "x-vectors meet
emotions"), which uses Snyder et al.'s network. A spectrogram [N, 1, F, T] is read as F input
channels over T frames:

- five frame-level TDNN layers, 1-D convolutions over time (Kaldi's recipe: affine, ReLU, then
  BatchNorm), with contexts [t-2, t+2], {t-2, t, t+2}, {t-3, t, t+3}, {t}, {t} (kernel sizes
  5, 3, 3, 1, 1, dilations 1, 2, 3, 1, 1; widths 512, 512, 512, 512, 1500 in the paper). No padding,
  as in Kaldi: each output frame sees exactly its ±7 input frames, so T frames give T − 14;
- statistics pooling: the mean and the standard deviation over time, concatenated [N, 2·1500];
- segment6, an affine layer to the 512-d embedding. The x-vector is taken, as in the paper, at
  segment6's affine output, before its ReLU / BatchNorm; segment7 and the speaker softmax are left
  out, since the model's own classifier heads (fused and unimodal) take the embedding instead.

The x-vector has no 2-D convolutional stages (``FrameAveraging.stages`` is None), so the
intermediate-fusion backbones (MMTM, mmFormer) refuse it with their usual error.
"""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.encoders import ENCODERS, FrameAveraging, input_pooled

__all__ = ["KERNELS", "DILATIONS", "PAPER_WIDTHS", "XVector", "context", "statistics_pooling", "xvector"]

# Snyder et al. Tab. 1, frame1 … frame5: contexts [t-2, t+2], {t-2, t, t+2}, {t-3, t, t+3}, {t}, {t}
KERNELS = (5, 3, 3, 1, 1)
DILATIONS = (1, 2, 3, 1, 1)
PAPER_WIDTHS = (512, 512, 512, 512, 1500)
# Floor of the variance before its square root: d sqrt(v) / dv = 1 / (2 sqrt(v)) is infinite at a
# constant channel (v = 0); clamping gives those entries a zero gradient instead.
VARIANCE_FLOOR = 1e-5


def context() -> int:
    """The frame layers' one-sided context in input frames: Σ (k − 1) / 2 · d = 2 + 2 + 3 = 7."""
    return sum((k - 1) // 2 * d for k, d in zip(KERNELS, DILATIONS))


def statistics_pooling(h: torch.Tensor, floor: float = VARIANCE_FLOOR) -> torch.Tensor:
    """Frame-level features [N, C, T] → [N, 2C]: the mean over T, then the standard deviation
    (population variance, floored at ``floor`` before the square root so that gradients stay finite)."""
    var, mean = torch.var_mean(h, dim=-1, correction=0)  # each [N, C]
    return torch.cat([mean, var.clamp_min(floor).sqrt()], dim=-1)


class XVector(nn.Module):
    """The x-vector network on a spectrogram [N, 1, F, T] → embedding [N, embed_dim]."""

    def __init__(self, freq_bins: int, widths: list[int], embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = freq_bins
        for width, k, d in zip(widths, KERNELS, DILATIONS):
            # Kaldi's order: affine (with bias, since the BatchNorm comes after the ReLU), ReLU, BatchNorm
            layers += [nn.Conv1d(prev, width, k, dilation=d), nn.ReLU(inplace=True), nn.BatchNorm1d(width)]
            prev = width
        self.frames = nn.Sequential(*layers)
        self.segment6 = nn.Linear(2 * prev, embed_dim)  # the x-vector: affine output, before any nonlinearity
        self.freq_bins = freq_bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segment6(statistics_pooling(self.frame_features(x)))  # [N, 2·widths[-1]] → [N, embed_dim]

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Spectrogram [N, 1, F, T] → frame-level features [N, widths[-1], T − 14] (frame5's output)."""
        self.check(x)
        return self.frames(x.squeeze(1))  # [N, F, T]: the frequency bins are the TDNN's input channels

    def check(self, x: torch.Tensor) -> None:
        """A clear error for an input the TDNN cannot read (torch's own would name a conv's weight shape)."""
        need = 2 * context() + 1
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"xvector encoder: expects a spectrogram [N, 1, F, T], got {tuple(x.shape)}")
        if x.shape[2] != self.freq_bins:
            raise ValueError(f"xvector encoder: built for {self.freq_bins} frequency bins (freq_bins or input_size[0]), "
                             f"got a spectrogram with {x.shape[2]} ({tuple(x.shape)})")
        if x.shape[3] < need:
            raise ValueError(f"xvector encoder: the frame layers span {need} frames (±{context()}), "
                             f"got a spectrogram of {x.shape[3]} ({tuple(x.shape)})")


@ENCODERS.register("xvector")
def xvector(in_channels: int, widths: list[int] = PAPER_WIDTHS, embed_dim: int = 512, input_size: list[int] | None = None,
            freq_bins: int | None = None) -> FrameAveraging:
    """Snyder et al.'s x-vector network (defaults: the paper's widths 512, 512, 512, 512, 1500 and
    512-d embedding) on a 1-channel spectrogram. ``input_size`` [F', T'] average-pools the input
    first, as the other encoders do, and then F' is the TDNN's input width; without it,
    ``freq_bins`` (e.g. 257 for a 512-point FFT) must be given, since the first layer's weights
    have to exist when the optimizer is built."""
    if in_channels != 1:
        raise ValueError(f"xvector encoder: reads a 1-channel spectrogram [N, 1, F, T], got in_channels={in_channels} "
                         "(use it for the spectrogram modality only)")
    if len(widths) != len(KERNELS) or any(int(w) < 1 for w in widths):
        raise ValueError(f"xvector encoder: widths needs {len(KERNELS)} positive frame-layer widths, got {list(widths)}")
    bins = _freq_bins(input_size, freq_bins)
    body = XVector(bins, [int(w) for w in widths], int(embed_dim))
    return FrameAveraging(input_pooled(body, input_size), int(embed_dim))


def _freq_bins(input_size: list[int] | None, freq_bins: int | None) -> int:
    """The TDNN's input width: ``input_size[0]`` when the input is pooled, else ``freq_bins``."""
    if input_size:
        if freq_bins is not None and int(freq_bins) != int(input_size[0]):
            raise ValueError(f"xvector encoder: freq_bins {freq_bins} disagrees with input_size {list(input_size)} "
                             "(the pooled spectrogram has input_size[0] bins; give one of the two)")
        return int(input_size[0])
    if freq_bins is None:
        raise ValueError("xvector encoder: needs the spectrogram's frequency bins to build its first layer: set "
                         "freq_bins (e.g. 257) or input_size [F', T'] (the spectrogram is pooled to F' bins)")
    return int(freq_bins)
