"""ARL: Asymmetric Representation Learning (Wei, Luo, Luo, ICCV 2025, "Improving Multimodal
Learning via Imbalanced Learning", §3.2, Eq. 4, 17–22, Tab. 5).

What it changes in the loop: the forward pass also computes each modality's unimodal logits p^m
by zeroing every other modality's features (no extra parameters); the loss adds their
cross-entropy (unimodal regularisation, UR, Eq. 21–22); after backward each encoder's gradient g
becomes g + g·a^m (asymmetric learning, AL, with the gradient residual, GR, Eq. 19–20).

- q^m = 1 / H̄^m, the inverse of the batch-mean prediction entropy of p^m (Eq. 17 is written as
  1/Σ σ log σ, which is negative; its magnitude is used).
- d^m = Σ_i σ(p_i^m)_{y_i}, the batch's summed true-class probability (Eq. 4 with s = p; the
  ratio d^{m0}/d^{m1} of batch sums rather than of a single sample).
- [a^{m0}, a^{m1}] = softmax([T·q^{m0}/q^{m1}, T·d^{m0}/d^{m1}]) (Eq. 18): m0 is accelerated when
  its dependency ratio is below its inverse-variance ratio.
- loss = CE(fused) + γ(u^{m0} + u^{m1}), u^m = CE(p^m, y) (Eq. 22).
- The temperature T is per dataset (§4.1: 8 on CREMA-D, 4 on AVE, KS, MOSI, UCF-101): ``T`` is
  the default and ``T_by_dataset`` (e.g. ``{cremad: 8}``) overrides it for the run's dataset
  (``MethodContext.dataset``, the shard index's name).

Ablation switches (Tab. 5): ``ur`` (the γ term), ``al`` (the coefficients a^m), ``gr`` (the
residual: g + g·a^m with it, g·a^m without). With ``al`` off the encoder gradients are left as
they are whatever ``gr`` says (the residual of an unmodulated gradient is the gradient itself).

More than two modalities: the paper reports MOSI (3 modalities) without the formula. Eq. 18 is
written relative to m1 (it is not symmetric in m0, m1), so the generalisation keeps a reference
modality r (``reference``, default the last modality): a^m = softmax_m(T·(q^m/q^r − d^m/d^r)).
For two modalities with r = m1 this is exactly Eq. 18 (softmax is shift-invariant).

``variant: code`` reproduces the released code (shicaiwei123/ICCV2025-ARL@358af4f,
main_arl_variance.py + models/backbone.py): through epoch 5 the loss is CE_f + Σ_m CE_m and
gradients are untouched; afterwards CE_f + γ Σ_m CE_m and every encoder's gradient × 1.5 (its
GradScale weight stays at 0.5: the coefficients are computed but never applied); gradient norm
clipped at 40. The coefficients of Eq. 18 are still logged in that variant.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


def zeroed_logits(model, feats: dict[str, torch.Tensor], grad: bool = True) -> dict[str, torch.Tensor]:
    """p^m: the fused logits with every modality but m zeroed, [B, C] each.

    For the concat head this is W_m·φ_m + b with the FULL bias b, as the ARL code computes it;
    ``Output.unimodal_logits`` uses the b/M split of the OPM/OGM papers instead.
    ``grad=False`` computes them without a graph (only the coefficients need them then).
    """
    src = feats if grad else {m: f.detach() for m, f in feats.items()}
    with contextlib.nullcontext() if grad else torch.no_grad():
        return {m: model.fuse({k: f if k == m else torch.zeros_like(f) for k, f in src.items()}).logits for m in src}


def inverse_entropy(logits: torch.Tensor) -> torch.Tensor:
    """q = 1 / mean_i H(σ(p_i)) (Eq. 17, magnitude), a 0-d tensor; ``logits`` [B, C]."""
    logp = torch.log_softmax(logits.detach().float(), dim=1)
    entropy = -(logp.exp() * logp).sum(dim=1).mean()
    return 1.0 / entropy.clamp_min(1e-8)


def dependency(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d = Σ_i σ(p_i)_{y_i} (Eq. 4's per-modality term summed over the batch), a 0-d tensor."""
    return torch.softmax(logits.detach().float(), dim=1).gather(1, labels[:, None]).sum()


def arl_coefficients(q: dict[str, torch.Tensor], d: dict[str, torch.Tensor], T: float, reference: str) -> dict[str, torch.Tensor]:
    """a^m = softmax_m(T·(q^m/q^r − d^m/d^r)) (Eq. 18 for two modalities with r = m1), 0-d tensors."""
    mods = list(q)
    logits = torch.stack([T * (q[m] / q[reference] - d[m] / d[reference].clamp_min(1e-12)) for m in mods])
    return dict(zip(mods, torch.softmax(logits, dim=0)))


def temperature(cfg: dict, dataset: str | None) -> float:
    """T of Eq. 18 for ``dataset``: ``T_by_dataset[dataset]`` if listed, else ``T`` (default 4)."""
    by_dataset = cfg.get("T_by_dataset") or {}
    return float(by_dataset.get(dataset, cfg.get("T", 4.0)))


@METHODS.register("arl")
class ARL(Method):
    """Unimodal regularisation with zeroed-feature logits and residual asymmetric gradient scaling."""

    acting = {"key": "arl_scale_*", "noop": 1.0}  # encoder gradient multiplier

    method_name = "arl"
    defaults: dict = {}  # a registered variant's settings; its params block overrides them

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__({**self.defaults, **(cfg or {})}, ctx)
        name = self.method_name
        if len(ctx.modalities) < 2:
            raise ValueError(f"method {name!r} needs at least 2 modalities, got {ctx.modalities}")
        self.variant = self.cfg.get("variant", "paper")
        if self.variant not in ("paper", "code"):
            raise ValueError(f"method {name!r}: variant must be 'paper' or 'code', got {self.variant!r}")
        self.reference = self.cfg.get("reference") or ctx.modalities[-1]
        if self.reference not in ctx.modalities:
            raise ValueError(f"method {name!r}: reference {self.reference!r} is not one of {ctx.modalities}")
        self.T = temperature(self.cfg, ctx.dataset)
        self._uni: dict[str, torch.Tensor] = {}

    def _warmup(self) -> bool:
        """Epochs trained with CE_f + Σ CE_m and unmodulated gradients (code: epochs 0–5)."""
        warmup = self.cfg.get("warmup_epochs")  # null: the variant's own (paper 0, code 6)
        return self.ctx.epoch < int(warmup if warmup is not None else 6 if self.variant == "code" else 0)

    def _unimodal_weight(self) -> float:
        """Weight of Σ_m u^m in the loss: 1 in warm-up, γ with UR (always in the code), else 0."""
        if self._warmup():
            return 1.0
        if self.variant == "code" or self.cfg.get("ur", True):
            return float(self.cfg.get("gamma", 4.0))
        return 0.0

    def forward(self, model, inputs, labels) -> Output:
        feats = model.encode(inputs)  # {m: [B, D_m]}
        self._uni = zeroed_logits(model, feats, grad=self._unimodal_weight() > 0)
        return model.fuse(feats)

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        fused = F.cross_entropy(out.logits, labels)
        weight = self._unimodal_weight()
        self.log(arl_uni_weight=weight)
        if weight == 0.0:
            return fused
        return fused + weight * sum(F.cross_entropy(p, labels) for p in self._uni.values())

    def _scales(self, a: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        """Gradient multiplier per encoder for this step."""
        if self._warmup():
            return {m: 1.0 for m in a}
        if self.variant == "code":
            return {m: 1.0 + float(self.cfg.get("code_grad_scale", 0.5)) for m in a}
        if not self.cfg.get("al", True):
            return {m: 1.0 for m in a}
        residual = 1.0 if self.cfg.get("gr", True) else 0.0
        return {m: residual + v for m, v in a.items()}  # Eq. 19–20: g + g·a^m

    def after_backward(self, model, out, labels) -> None:
        q = {m: inverse_entropy(p) for m, p in self._uni.items()}
        d = {m: dependency(p, labels) for m, p in self._uni.items()}
        a = arl_coefficients(q, d, self.T, self.reference)
        scales = self._scales(a)
        for m, s in scales.items():
            if not (isinstance(s, float) and s == 1.0):
                for p in model.modality_parameters(m):
                    if p.grad is not None:
                        p.grad.mul_(s)
        clip = self.cfg.get("clip_grad_norm")  # null: the variant's own (paper none, code 40); 0: none
        clip = (40.0 if self.variant == "code" else 0.0) if clip is None else float(clip)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip))
        self._log(q, d, a, scales)

    def diagnostics(self) -> dict:
        """The temperature the run used (it depends on the dataset)."""
        return {"T": self.T}

    def _log(self, q, d, a, scales) -> None:
        """Per-step diagnostics (the paper's Fig. 3): ratios to the reference, coefficients, multipliers."""
        r = self.reference
        values = {}
        for m in q:
            values[f"arl_a_{m}"] = a[m]
            values[f"arl_scale_{m}"] = scales[m]
            if m != r:
                values[f"arl_q_ratio_{m}"] = q[m] / q[r]
                values[f"arl_d_ratio_{m}"] = d[m] / d[r].clamp_min(1e-12)
        device = next(iter(q.values())).device
        # float32 0-d tensors, kept on the device (the loop reads diagnostics once per epoch)
        self.log(**{k: torch.as_tensor(v, dtype=torch.float32, device=device) for k, v in values.items()})


# Registered rows of the paper's ablation (Tab. 5: UR, AL, GR) and the released code's behaviour,
# so that each is a method with its own results; "GR only" is plain ``concat`` (see the module
# docstring). Each params block may override the settings given here.


@METHODS.register("arl_ur")
class ARLUnimodalRegularisation(ARL):
    """Tab. 5 row UR: the γ-weighted unimodal losses only, gradients untouched."""

    acting = {"key": "arl_uni_weight", "noop": 0.0}  # weight of Σ_m u^m in the loss

    method_name = "arl_ur"
    defaults = {"ur": True, "al": False, "gr": False}


@METHODS.register("arl_al")
class ARLAsymmetric(ARL):
    """Tab. 5 row AL: encoder gradients g·a^m (no residual), fused loss only."""

    method_name = "arl_al"
    defaults = {"ur": False, "al": True, "gr": False}


@METHODS.register("arl_al_gr")
class ARLAsymmetricResidual(ARL):
    """Tab. 5 row AL + GR: encoder gradients g + g·a^m, fused loss only."""

    method_name = "arl_al_gr"
    defaults = {"ur": False, "al": True, "gr": True}


@METHODS.register("arl_ur_al")
class ARLRegularisedAsymmetric(ARL):
    """Tab. 5 row UR + AL: unimodal losses and gradients g·a^m (no residual)."""

    method_name = "arl_ur_al"
    defaults = {"ur": True, "al": True, "gr": False}


@METHODS.register("arl_code")
class ARLCode(ARL):
    """ARL as the released code runs it (``variant: code``; see the module docstring)."""

    method_name = "arl_code"
    defaults = {"variant": "code"}
