"""Dropout: standard (neuron) dropout on the unimodal features before fusion.

Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, "Dropout: a simple way to prevent
neural networks from overfitting", JMLR 15 (2014), §4: during training each unit of a layer is
kept independently with a retain probability (their p; our drop rate p is one minus it), a
Bernoulli mask per sample and unit, and the network at test time uses every unit. We use the equivalent "inverted" form, the one
``torch.nn.functional.dropout`` implements: survivors are multiplied by 1/(1 − p) during
training so that the test-time network needs no weight rescaling (E[mask] = 1).

OPM/OGM (Wei, Hu, Du, Wen, TPAMI 2024), §4.3.4 and Tab. 6, compare OPM with this neuron-level
dropout: it drops single units of the network, not whole modalities, and does not look at
which modality dominates. Where the units sit is not stated; we drop units of each modality's
encoder features [B, D_m], the same tensors OPM and ModDrop drop whole, so that the comparison
differs only in what is dropped. The rate is not stated either: params.yaml uses Srivastava
et al.'s default for hidden units (retain 0.5, "close to optimal for a wide range of networks and
tasks", §1; Appendix A.4), i.e. p = 0.5.

The feature dropping here is shared by the scheduled variants (``annealed_dropout``,
``curriculum_dropout``), which override only ``drop_rate``; ``evolutional_dropout`` overrides the
masks.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


def check_rate(method: str, key: str, value: float) -> float:
    """A drop rate in [0, 1) (1 would drop every unit and divide by zero); else a clear error."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"method {method!r}: {key} = {value} must lie in [0, 1)")
    return value


def bernoulli_masks(features: dict[str, torch.Tensor], p: float) -> dict[str, torch.Tensor]:
    """Inverted-dropout masks, each shaped like its features [B, D_m]: 0 with probability p, else
    1/(1 − p) (``F.dropout`` of ones), so that a masked feature keeps its expectation."""
    return {m: F.dropout(torch.ones_like(f), p=p, training=True) for m, f in features.items()}


@METHODS.register("dropout")
class NeuronDropout(Method):
    """Drop single units of each modality's features with a fixed probability ``p``."""

    acting = {"key": "dropped_*", "noop": 0.0}  # fraction of modality m's feature units zeroed in the batch

    method_name = "dropout"

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.p = check_rate(self.method_name, "p", self.cfg.get("p", 0.5))

    def drop_rate(self) -> float:
        """The Bernoulli drop rate of the current step (fixed here; scheduled in subclasses)."""
        return self.p

    def masks(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{m: [B, D_m]} multiplicative masks for this step's features."""
        p = self.drop_rate()
        self.log(rate=p)
        return bernoulli_masks(features, p)

    def forward(self, model, inputs, labels) -> Output:
        feats = model.encode(inputs)  # {m: [B, D_m]}
        keep = self.masks({m: f.detach() for m, f in feats.items()})
        for m, k in keep.items():
            self.log(**{f"dropped_{m}": (k == 0).float().mean()})
        # per-unit masks [B, D_m]: model(inputs, keep=…) takes one [B] value per sample, so the
        # features are masked here and fused as that call would fuse them
        return model.fuse({m: f * keep[m].to(f.dtype) for m, f in feats.items()})
