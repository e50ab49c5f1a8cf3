"""Small deterministic models and tensors for the reference tests (tests/test_reference_*.py).

The reference tests run a transcription of the authors' released code and our plug-in on the
same tensors. Every number here comes from a closed-form pattern (no random generator), so the
outputs recorded from the authors' code do not depend on a torch version's random streams.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmbalance.models import MultimodalModel
from mmbalance.models.fusions import ConcatFusion

# 4 samples, 3 classes: audio (4 inputs) and visual (5 inputs) → 3 features each
IN_DIMS = {"audio": 4, "visual": 5}
FEATURE_DIM = 3
NUM_CLASSES = 3
LABELS = torch.tensor([0, 1, 2, 0])


def pattern(*shape: int, phase: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """scale·sin(0.73·k + phase) for k = 0, 1, … laid out in ``shape`` (float32)."""
    n = math.prod(shape)
    return (scale * torch.sin(torch.arange(n, dtype=torch.float64) * 0.73 + phase)).float().reshape(shape)


class LinearEncoder(nn.Module):
    """φ = W·x + b, [B, d_in] → [B, d_out] (an encoder with parameters whose gradient can be scaled)."""

    def __init__(self, d_in: int, d_out: int, phase: float) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)
        self.out_dim = d_out
        with torch.no_grad():
            self.lin.weight.copy_(pattern(d_out, d_in, phase=phase, scale=0.8))
            self.lin.bias.copy_(pattern(d_out, phase=phase + 1.0, scale=0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def linear_model(audio_scale: float = 1.0) -> MultimodalModel:
    """Two linear encoders and the concat head, fixed weights; ``audio_scale`` makes audio dominant."""
    encoders = {m: LinearEncoder(d, FEATURE_DIM, phase=0.3 * i) for i, (m, d) in enumerate(IN_DIMS.items())}
    with torch.no_grad():
        encoders["audio"].lin.weight.mul_(audio_scale)
    fusion = ConcatFusion({m: FEATURE_DIM for m in IN_DIMS}, NUM_CLASSES)
    with torch.no_grad():
        fusion.head.weight.copy_(pattern(NUM_CLASSES, 2 * FEATURE_DIM, phase=2.0, scale=0.9))
        fusion.head.bias.copy_(torch.tensor([0.2, -0.1, 0.05]))
    return MultimodalModel(encoders, fusion)


def linear_inputs() -> dict[str, torch.Tensor]:
    """Inputs of ``linear_model``: audio [4, 4], visual [4, 5]."""
    return {"audio": pattern(4, IN_DIMS["audio"], phase=1.0), "visual": pattern(4, IN_DIMS["visual"], phase=2.5)}


def clone_with_grads(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters also carry copies of the current gradients
    (``copy.deepcopy`` leaves ``.grad`` out)."""
    import copy

    twin = copy.deepcopy(model)
    for p, q in zip(model.parameters(), twin.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()
    return twin
