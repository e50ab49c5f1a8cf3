"""OGM-GE: On-the-fly Gradient Modulation with Generalisation Enhancement.

Peng et al., CVPR 2022; Wei et al., TPAMI 2024 (journal form). After backward, the gradient of
the dominant modality's encoder is scaled by k < 1 (computed from how much more confident that
modality is on the true class), and Gaussian noise with the gradient's own spread is added.
"""

from __future__ import annotations

import torch

from mmbalance.methods.base import METHODS, Method, true_class_scores


def discrepancy_ratios(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ρ^m = 1/(M−1) Σ_{j≠m} Σ_i s_i^m / Σ_i s_i^j (TPAMI Eq. 7); ``scores`` are [B] each.

    Each ρ^m is a 0-d float64 tensor on the scores' device, so that the step never waits for the
    device to read it (the sums in the scores' dtype, the ratios in float64, as Python floats)."""
    sums = {m: s.sum().double() for m, s in scores.items()}
    mods = list(sums)
    return {m: sum(sums[m] / sums[j].clamp(min=1e-12) for j in mods if j != m) / (len(mods) - 1) for m in mods}


def float64(x: float | torch.Tensor) -> torch.Tensor:
    """``x`` as a float64 tensor (a tensor stays on its device)."""
    return torch.as_tensor(x, dtype=torch.float64)


def like(x: float | torch.Tensor, value: torch.Tensor) -> float | torch.Tensor:
    """``value`` as the caller passed ``x``: a tensor for a tensor (stays on the device, no host
    read), a Python float for a number (formula tables, tests)."""
    return value if isinstance(x, torch.Tensor) else float(value)


FORMS = ("code", "cvpr", "paper")


def modulation_coefficient(rho: float | torch.Tensor, alpha: float, form: str = "paper") -> float | torch.Tensor:
    """k for a modality with discrepancy ratio ρ.

    ``paper`` (TPAMI Eq. 11, the journal's OGM): 1 − α·tanh(ρ − 1) if ρ > 1, floored at 0; else 1.
    ``cvpr`` (Peng et al. CVPR 2022 Eq. 10, OGM-GE) and ``code`` (its released code,
    1 − tanh(α·relu(ρ))): 1 − tanh(α·ρ) if ρ > 1; else 1 — the same value, since ρ > 1.
    A tensor ρ gives a tensor k on its device (float64), a number a number.
    """
    if form not in FORMS:
        raise ValueError(f"unknown OGM coefficient form {form!r}; choices: {', '.join(FORMS)}")
    r = float64(rho)
    if form == "paper":
        k = (1.0 - alpha * torch.tanh(r - 1.0)).clamp(min=0.0)
    else:
        k = 1.0 - torch.tanh(alpha * r.clamp(min=0.0))
    return like(rho, torch.where(r > 1, k, torch.ones_like(k)))


@METHODS.register("ogm_ge")
class OGMGE(Method):
    """Scale the dominant encoder's gradient by k and add N(0, std(grad)²) noise (GE)."""

    acting = {"key": "k_*", "noop": 1.0}  # gradient coefficient of each encoder

    def after_backward(self, model, out, labels) -> None:
        epoch = self.ctx.epoch
        if not self.cfg.get("start_epoch", 0) <= epoch <= self.cfg.get("end_epoch", 10**9):
            return
        rho = discrepancy_ratios(true_class_scores(out, labels))
        alpha, form = float(self.cfg.get("alpha", 0.8)), self.cfg.get("form", "paper")
        for m, r in rho.items():
            k = modulation_coefficient(r, alpha, form)
            self.log(**{f"rho_{m}": r, f"k_{m}": k})
            self._modulate(model.modality_parameters(m), k)

    def _modulate(self, params: list[torch.nn.Parameter], k: float | torch.Tensor) -> None:
        """g ← k·g (+ N(0, std(g)²) noise) on each gradient, all on the device (``k`` a 0-d tensor
        or a number)."""
        noise = self.cfg.get("noise", True)
        # the released code touches 4-D conv weights only (scaling and noise alike); an encoder
        # without convolutions (MOSI's sequence Transformers) would then never be modulated, so
        # there every weight is modulated, as the TPAMI paper's form does
        has_conv = any(p.grad is not None and p.grad.dim() == 4 for p in params)
        conv_only = self.cfg.get("noise_on", "all") == "conv" and has_conv
        for p in params:
            if p.grad is None:
                continue
            g = p.grad
            if conv_only and g.dim() != 4:
                continue
            # GE: h ~ N(0, σ²) with σ the spread of the current (unscaled) gradient tensor, a 0-d
            # float64 tensor (σ + 1e-8 in float64 as before, cast to the gradient's dtype in the product)
            std = (g.std().double() if g.numel() > 1 else g.new_zeros((), dtype=torch.float64)) if noise else None
            g.mul_(k)
            if noise:
                g.add_(torch.randn_like(g) * (std + 1e-8))
