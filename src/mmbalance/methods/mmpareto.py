"""MMPareto: Pareto integration of the multimodal and unimodal gradients of each encoder.

Wei & Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance", ICML 2024
(code: GeWu-Lab/MMPareto_ICML2024 ``code/MMPareto.py``). The loss is CE(fused) + Σ_m CE(h_m(φ_m))
with a unimodal head h_m per modality; after backward, each encoder's gradient is replaced by an
integration of g_mm = ∇_θm CE(fused) and g_u = ∇_θm CE(h_m(φ_m)):

- no conflict (cos(g_mm, g_u) > 0): equal weights ½, ½;
- conflict (cos ≤ 0): the min-norm (MGDA) weights a, 1 − a = argmin ‖a·g_mm + (1 − a)·g_u‖,
  whose combination has the same positive inner product with both gradients;
- g = 2(a_mm·g_mm + a_u·g_u), rescaled to at least the norm of the plain sum g_mm + g_u, then
  multiplied by γ (1.5 in the code): the enhanced magnitude the paper argues helps generalisation.

As in the code, the cosine and the weights use the whole encoder's gradient and the magnitude
rule is applied per parameter tensor (``rescale: tensor``; ``rescale: encoder`` applies it to
the whole encoder vector). Cost: one extra backward pass through the encoders per step (the
unimodal gradients, taken with ``torch.autograd.grad`` in ``forward``); g_mm is then the total
gradient minus g_u, since CE(h_j(φ_j)) for j ≠ m does not depend on θ_m.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method


# The weights, cosines and norms are 0-d tensors on the gradients' device, chosen there with
# torch.where: reading them back each step would make every step wait for the device. The inner
# products are float64, as the released code's Python floats.


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """⟨a, b⟩ in float64, 0-d."""
    return (a.double() * b.double()).sum()


def _min_norm(v11: torch.Tensor, v12: torch.Tensor, v22: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, 1 − a) from the inner products ⟨g1,g1⟩, ⟨g1,g2⟩, ⟨g2,g2⟩ (see ``min_norm_weights``)."""
    denom = v11 + v22 - 2.0 * v12  # ‖g1 − g2‖²
    a = ((v22 - v12) / denom).clamp(min=0.0, max=1.0)
    a = torch.where(denom > 0.0, a, torch.full_like(a, 0.5))  # identical gradients: any convex weight
    return a, 1.0 - a


def min_norm_weights(g1: torch.Tensor, g2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-task MGDA in closed form: a = argmin_{a∈[0,1]} ‖a·g1 + (1 − a)·g2‖²
    = clip(⟨g2 − g1, g2⟩ / ‖g1 − g2‖², 0, 1); returns (a, 1 − a), 0-d float64 tensors."""
    return _min_norm(_dot(g1, g1), _dot(g1, g2), _dot(g2, g2))


def pareto_weights(g_mm: torch.Tensor, g_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a_mm, a_u, cos): ½, ½ when cos(g_mm, g_u) > 0, else the min-norm weights (flat vectors);
    0-d float64 tensors."""
    v11, v12, v22 = _dot(g_mm, g_mm), _dot(g_mm, g_u), _dot(g_u, g_u)
    n_mm, n_u = v11.sqrt(), v22.sqrt()
    cos = torch.where((n_mm > 0) & (n_u > 0), v12 / (n_mm * n_u), torch.ones_like(v12))
    a_mm, a_u = _min_norm(v11, v12, v22)
    half = torch.full_like(cos, 0.5)
    return torch.where(cos > 0, half, a_mm), torch.where(cos > 0, half, a_u), cos


def integrate(g_mm: list[torch.Tensor], g_u: list[torch.Tensor], a_mm: float | torch.Tensor, a_u: float | torch.Tensor, gamma: float,
              per_tensor: bool = True) -> list[torch.Tensor]:
    """New gradients: g = 2(a_mm·g_mm + a_u·g_u), scaled by max(‖g_mm + g_u‖/‖g‖, 1), times γ.

    ``per_tensor``: the norms are taken per tensor (the released code) or over the whole list.
    """
    new = [2.0 * (a_mm * x + a_u * y) for x, y in zip(g_mm, g_u)]
    ref = [x + y for x, y in zip(g_mm, g_u)]  # the plain sum: the code's "three_norm" gradient
    if per_tensor:
        return [n * _boost(n.norm(), r.norm()) * gamma for n, r in zip(new, ref)]
    k = _boost(_norm(new), _norm(ref))
    return [n * k * gamma for n in new]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def _norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((t.double() ** 2).sum() for t in tensors))


def _boost(new_norm: torch.Tensor, ref_norm: torch.Tensor) -> torch.Tensor:
    """max(‖ref‖/‖new‖, 1): never shrink below the plain sum's magnitude (1 when ‖new‖ = 0); 0-d."""
    return torch.where((new_norm > 0) & (ref_norm > new_norm), ref_norm / new_norm, torch.ones_like(new_norm))


@METHODS.register("mmpareto")
class MMPareto(Method):
    """CE(fused) + Σ_m CE(unimodal); each encoder's gradient replaced by the Pareto integration."""

    # ‖integrated gradient‖ / ‖g_mm + g_u‖ per encoder: 1 for the plain sum (the uni-modal loss)
    acting = {"key": "grad_boost_*", "noop": 1.0}

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.gamma = float(self.cfg.get("gamma", 1.5))
        self.head = self.cfg.get("unimodal_head", "own")
        self.rescale = self.cfg.get("rescale", "tensor")
        if self.head not in ("own", "share"):
            raise ValueError(f"method 'mmpareto': unknown unimodal_head {self.head!r}; choices: own, share")
        if self.rescale not in ("tensor", "encoder"):
            raise ValueError(f"method 'mmpareto': unknown rescale {self.rescale!r}; choices: encoder, tensor")
        self._uni_logits: dict[str, torch.Tensor] = {}
        self._uni_grads: dict[str, list[torch.Tensor]] = {}

    def modules(self, dims: dict[str, int], num_classes: int) -> dict[str, nn.Module]:
        """The code's ``head_audio`` / ``head_video``: one linear head per modality."""
        if self.head != "own":
            return {}
        return {f"uni_head_{m}": nn.Linear(d, num_classes) for m, d in dims.items()}

    def forward(self, model, inputs, labels):
        out = model(inputs)
        if self.head == "own":
            self._uni_logits = {m: model.method_modules[f"uni_head_{m}"](f) for m, f in out.features.items()}
        else:
            self._uni_logits = dict(out.unimodal_logits)
        # g_u for every encoder in one extra backward (CE_m touches only θ_m and h_m); the graph
        # is kept for the loop's backward of the total loss
        uni_loss = sum(F.cross_entropy(z, labels) for z in self._uni_logits.values())
        params = {m: model.modality_parameters(m) for m in model.modalities}
        flat = [p for m in model.modalities for p in params[m]]
        grads = torch.autograd.grad(uni_loss, flat, retain_graph=True, allow_unused=True)
        it = iter(grads)
        self._uni_grads = {m: [g if g is not None else torch.zeros_like(p) for p, g in zip(ps, it)]
                           for m, ps in params.items()}
        return out

    def loss(self, out, labels) -> torch.Tensor:
        uni = {m: F.cross_entropy(z, labels) for m, z in self._uni_logits.items()}
        for m, v in uni.items():
            self.log(**{f"ce_{m}": v})
        return F.cross_entropy(out.logits, labels) + sum(uni.values())

    def after_backward(self, model, out, labels) -> None:
        for m in model.modalities:
            params = model.modality_parameters(m)
            total = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            g_u = self._uni_grads[m]
            g_mm = [t - u for t, u in zip(total, g_u)]
            a_mm, a_u, cos = pareto_weights(_flat(g_mm), _flat(g_u))
            self.log(**{f"cos_{m}": cos, f"conflict_{m}": (cos <= 0).double(), f"w_mm_{m}": a_mm})
            new = integrate(g_mm, g_u, a_mm, a_u, self.gamma, per_tensor=self.rescale == "tensor")
            plain = _norm(total)  # the step's gradient before integration: g_mm + g_u
            self.log(**{f"grad_boost_{m}": torch.where(plain > 0, _norm(new) / plain, torch.ones_like(plain))})
            for p, g in zip(params, new):
                p.grad = g
        self._uni_grads, self._uni_logits = {}, {}
