"""OGM (journal form), OGM* and OPM+OGM (Wei, Hu, Du, Wen, TPAMI 2024, §3.2.2, §4.3.9, §4.4.2).

What they change in the loop: ``after_backward``. Each step the discrepancy ratio ρ^m (Eq. 6–7)
sets a gradient multiplier k^m for modality m's encoder; OGM adds the GE noise
h ~ N(0, σ²) (σ = spread of each gradient tensor) to every encoder, as ``ogm_ge`` does.

- ``ogm``: Eq. 11, k^m = 1 − α·z(ρ^m) for ρ^m > 1 (floored at 0), else 1; z(x) = tanh(x − 1).
  ``form: code`` switches to the released code's k = 1 − tanh(α·relu(ρ)) (BML code/main.py, the
  same form as the CVPR code), ``noise_on: conv`` to its conv-weights-only scaling and noise.
- ``ogm_star`` (OGM*, §4.4.2, Tab. 13): the dominant modality's gradient is left unchanged and
  each weak modality's is raised. The paper gives no formula; the default mirrors Eq. 11:
  k^m = 1 + α·z(ρ̃^m) when ρ̃^m > 1, with ρ̃^m = 1/(M−1) Σ_{j≠m} S^j / S^m how much the others
  exceed m (for two modalities ρ̃ of the weak modality is the dominant one's ρ). ``form: code``
  uses the released code's constant multiplier 4 (``boost``; BML code/main.py ``use_OGM_plus``).
  Noise is off by default (the paper: the dominant gradient "remains unchanged"); the released
  code adds it (``noise: true``).
- ``opm_ogm`` (OPM+OGM, Tab. 7/11/12): OPM's feature dropping in the forward pass and OGM's
  modulation after backward, both from the ρ of the batch measured before dropping.

The coefficient helpers reuse ``mmbalance.methods.ogm_ge`` (Eq. 11 and the code form) and the
scores / discrepancy / z(·) helpers of ``mmbalance.methods.opm`` (ablations Tab. 14–15).
"""

from __future__ import annotations

import torch

from mmbalance.methods.base import METHODS
from mmbalance.methods.ogm_ge import OGMGE, float64, like, modulation_coefficient
from mmbalance.methods.opm import Z_FUNCTIONS, OPM, check_choice, discrepancy, in_epoch_range, require_modalities, unimodal_scores, z_value


def gradient_coefficient(rho: float | torch.Tensor, alpha: float, form: str = "paper", z: str = "tanh") -> float | torch.Tensor:
    """OGM's k for a modality with discrepancy ρ (Eq. 11; ``form: code`` = the released code's form).

    With z = tanh(x − 1) (or ``form: code``) this is ``ogm_ge.modulation_coefficient``; the
    ``sigmoid`` z of Tab. 15 gives 1 − α·sigmoid(ρ) for ρ > 1, floored at 0. A tensor for a
    tensor (float64, on its device), a number for a number.
    """
    if form == "code" or z == "tanh":
        return modulation_coefficient(rho, alpha, form)
    if form != "paper":
        raise ValueError(f"unknown OGM coefficient form {form!r}; choices: code, paper")
    r = float64(rho)
    k = (1.0 - alpha * z_value(r, z)).clamp(min=0.0)
    return like(rho, torch.where(r > 1.0, k, torch.ones_like(k)))


def boost_coefficient(rho_inverse: float | torch.Tensor, alpha: float, form: str = "paper", z: str = "tanh",
                      boost: float = 4.0) -> float | torch.Tensor:
    """OGM*'s multiplier for a modality whom the others exceed by ρ̃ (1 when ρ̃ ≤ 1).

    ``paper``: 1 + α·z(ρ̃) (Eq. 11 mirrored; the paper states no formula); ``code``: the constant
    ``boost`` (4 in the released code). A tensor for a tensor, a number for a number.
    """
    r = float64(rho_inverse)
    if form == "paper":
        k = 1.0 + alpha * z_value(r, z)
    elif form == "code":
        k = torch.full_like(r, float(boost))
    else:
        raise ValueError(f"unknown OGM* coefficient form {form!r}; choices: code, paper")
    return like(rho_inverse, torch.where(r > 1.0, k, torch.ones_like(k)))


@METHODS.register("ogm")
class OGM(OGMGE):
    """Scale each encoder's gradient by k^m (Eq. 11) and add GE noise (Eq. 16)."""

    method_name = "ogm"
    log_rho = True  # OPM+OGM logs ρ in its forward pass already
    defaults: dict = {}  # a registered variant's settings; its params block overrides them

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__({**self.defaults, **(cfg or {})}, ctx)
        require_modalities(self.method_name, ctx.modalities)
        for key, default, choices in (("form", "paper", ("paper", "code", "cvpr")), ("noise_on", "all", ("all", "conv")),
                                      ("z", "tanh", tuple(Z_FUNCTIONS)), ("measure", "ratio", ("ratio", "difference"))):
            check_choice(self.method_name, self.cfg, key, default, choices)

    def _scores(self, model, out, labels) -> dict[str, torch.Tensor]:
        """True-class scores s^m, [B] each, that ρ is computed from."""
        return unimodal_scores(model, out, labels, self.cfg.get("bias_split"))

    def _coefficients(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """k^m of each modality, 0-d float64 tensors on the scores' device."""
        rho = discrepancy(scores, self.cfg.get("measure", "ratio"))
        if self.log_rho:
            self.log(**{f"rho_{m}": r for m, r in rho.items()})
        alpha, form, z = float(self.cfg.get("alpha", 0.8)), self.cfg.get("form", "paper"), self.cfg.get("z", "tanh")
        return {m: gradient_coefficient(r, alpha, form, z) for m, r in rho.items()}

    def after_backward(self, model, out, labels) -> None:
        if not in_epoch_range(self.cfg, self.ctx.epoch):
            return
        for m, k in self._coefficients(self._scores(model, out, labels)).items():
            self.log(**{f"k_{m}": k})
            # ogm_ge: g ← k·g (+ N(0, std(g)²)); k = 1 without noise leaves g exactly as it is, so
            # the step need not read k back from the device to skip it
            self._modulate(model.modality_parameters(m), k)


@METHODS.register("ogm_code")
class OGMCode(OGM):
    """OGM as the released BML code runs it (scripts/train_ogm.sh, main.py): k = 1 − tanh(α·relu(ρ)),
    scaling and GE noise on 4-D conv weights only, modulation in epochs 6–60 (0–5 are warm-up)."""

    method_name = "ogm_code"
    defaults = {"form": "code", "noise_on": "conv", "start_epoch": 6, "end_epoch": 60}


@METHODS.register("ogm_star")
class OGMStar(OGM):
    """OGM*: leave the dominant gradient, raise each weak modality's by 1 + α·z(ρ̃^m)."""

    method_name = "ogm_star"

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.cfg.setdefault("noise", False)  # read by ogm_ge's _modulate

    def _coefficients(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        measure = self.cfg.get("measure", "ratio")
        if self.log_rho:
            self.log(**{f"rho_{m}": r for m, r in discrepancy(scores, measure).items()})
        inverse = discrepancy(scores, measure, inverse=True)
        c = self.cfg
        alpha, form, z, boost = float(c.get("alpha", 0.8)), c.get("form", "paper"), c.get("z", "tanh"), float(c.get("boost", 4.0))
        return {m: boost_coefficient(r, alpha, form, z, boost) for m, r in inverse.items()}


@METHODS.register("opm_ogm")
class OPMOGM(OPM, OGM):
    """OPM's dropping in the forward pass (``OPM.forward``), OGM after backward (``OGM.after_backward``).

    Both use ρ_t of the batch measured before any feature is dropped (Alg. 1 and Alg. 2 compute
    the same ρ_t after the feed-forward); one ``start_epoch``/``end_epoch`` range governs both.
    """

    method_name = "opm_ogm"
    log_rho = False

    def _scores(self, model, out, labels) -> dict[str, torch.Tensor]:
        return self._pre_drop_scores
