"""IPRM: Instantaneous Probe-and-Rebalance multimodal learning.

Yang, Wu & Jiang, IJCAI 2025 ("Towards Equilibrium"). The fused prediction comes from a head on
the *geodesic mixup* (slerp on the unit sphere, Eq. 1) of the L2-normalised unimodal features.
Every step runs two passes over the same encoder features:

1. probe (no gradient): mix with the EMA weight λ_t, compare each modality's prediction with the
   mixed one, ω^a = KL(P^v‖P̄) / (KL(P^a‖P̄) + KL(P^v‖P̄)) (Eq. 2);
2. rebalance: mix again with λ̂_t = ω_t (Eq. 3) and train CE(fused) + Σ_o CE_o.

Then λ_{t+1} = α·λ_t + (1 − α)·ω_t (Eq. 4), λ_1 = 0.5.

What it changes in the loop: ``forward`` (two passes, own fused head), ``loss`` and ``predict``
(the fused head on the mixed features; ``test_logits: sum`` adds the unimodal logits, as the
released code does).

Choices where the paper is silent (each a param):

- Unimodal heads h_o: the model's concat head split W_o·φ_o + b/M (``out.unimodal_logits``).
  The released code has one ``Linear`` per modality with its own bias; the split differs only in
  that the bias is shared. Using the split keeps every model parameter trained and makes the
  loop's probe accuracy the accuracy of IPRM's own unimodal heads.
- Features of different sizes are projected (one ``Linear`` per modality) to ``proj_dim``
  (default: the largest size) before normalising; with equal sizes there is no projection (the
  code's 512/512 case).
- More than two modalities: the paper's Tri-CLS strategy (``pairs: all``): every pair of
  modalities has its own mixup head and its own λ; the loss sums the pair CEs, the prediction
  averages the pair logits. ``pairs: random`` is its Single-CLS variant (one shared head, one
  random pair per step).
- Evaluation mixes with the current EMA state λ (``eval_lambda: ema``); ``eval_lambda: probe``
  uses the λ of the last training probe instead, one EMA step earlier, as the released code does
  (njustkmg/IJCAI25-IPRM@0bb457f main_av.py ``valid``: ``slerp(a, v, lam_a_list[-1], …)``).
  The ``iprm__code`` params block runs the code's evaluation (``test_logits: sum``,
  ``eval_lambda: probe``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output

# Clamp of cos θ: acos has an infinite derivative at ±1 (identical/opposite directions).
_COS_EPS = 1e-6


def slerp(za: torch.Tensor, zb: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """Geodesic mixup of unit vectors (Eq. 1): sin(λθ)/sin θ · za + sin((1−λ)θ)/sin θ · zb.

    ``za``, ``zb``: [B, D] L2-normalised; ``lam``: weight of ``za`` (scalar or [B]). θ [B] is the
    angle between the two; λ = 1 gives ``za``, λ = 0 gives ``zb``.
    """
    lam = torch.as_tensor(lam, dtype=za.dtype, device=za.device)
    cos = (za * zb).sum(dim=1).clamp(-1.0 + _COS_EPS, 1.0 - _COS_EPS)
    theta = torch.acos(cos)[:, None]  # [B, 1]
    sin = torch.sin(theta) + 1e-8  # as in the released code
    lam = lam.reshape(-1, 1) if lam.dim() else lam
    return torch.sin(lam * theta) / sin * za + torch.sin((1 - lam) * theta) / sin * zb


def linear_mix(za: torch.Tensor, zb: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """Linear mixup λ·za + (1 − λ)·zb of the same normalised features (the "w/ L-Mixup" row)."""
    lam = torch.as_tensor(lam, dtype=za.dtype, device=za.device)
    lam = lam.reshape(-1, 1) if lam.dim() else lam
    return lam * za + (1 - lam) * zb


def kl_to_fused(uni_logits: torch.Tensor, fused_logits: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL(P^o ‖ P̄) = mean_i Σ_k p^o_ik (log p^o_ik − log p̄_ik); logits [B, C] → scalar."""
    log_po = F.log_softmax(uni_logits.float(), dim=1)
    log_pf = F.log_softmax(fused_logits.float(), dim=1)
    return (log_po.exp() * (log_po - log_pf)).sum(dim=1).mean()


def strength_weight(kl_a: torch.Tensor, kl_b: torch.Tensor) -> torch.Tensor:
    """ω^a = KL_b / (KL_a + KL_b) (Eq. 2): the modality closer to the fused prediction gets more
    weight; 0.5 when both divergences vanish."""
    total = kl_a + kl_b
    return torch.where(total > 1e-12, kl_b / total.clamp_min(1e-12), torch.full_like(total, 0.5))


def ema_update(lam: torch.Tensor, omega: torch.Tensor, alpha: float) -> torch.Tensor:
    """λ_{t+1} = α·λ_t + (1 − α)·ω_t (Eq. 4); α = 0 is the "w/o EMA" row (λ_{t+1} = ω_t)."""
    return alpha * lam + (1 - alpha) * omega


@dataclass
class IPRMOutput(Output):
    """``Output`` plus the logits of each pair's mixup head ([B, C] each), which the loss sums."""

    pair_logits: list[torch.Tensor] = field(default_factory=list)


@METHODS.register("iprm")
class IPRM(Method):
    """Two-pass probe-and-rebalance with geodesic mixup fusion (see the module docstring)."""

    acting = {"key": "lambda_*", "noop": 0.5}  # mixing weight of the first modality of each pair

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        if len(ctx.modalities) < 2:
            raise ValueError(f"method iprm mixes pairs of modalities; got {ctx.modalities}")
        self.mix = {"slerp": slerp, "linear": linear_mix}.get(self.cfg.get("mixup", "slerp"))
        if self.mix is None:
            raise ValueError(f"iprm: unknown mixup {self.cfg.get('mixup')!r}; choices: linear, slerp")
        self.pair_mode = self.cfg.get("pairs", "all")
        if self.pair_mode not in ("all", "random"):
            raise ValueError(f"iprm: unknown pairs {self.pair_mode!r}; choices: all, random")
        self.test_logits = self.cfg.get("test_logits", "fused")
        if self.test_logits not in ("fused", "sum"):
            raise ValueError(f"iprm: unknown test_logits {self.test_logits!r}; choices: fused, sum")
        self.eval_lambda = self.cfg.get("eval_lambda", "ema")
        if self.eval_lambda not in ("ema", "probe"):
            raise ValueError(f"iprm: unknown eval_lambda {self.eval_lambda!r}; choices: ema, probe")
        self.two_pass = bool(self.cfg.get("two_pass", True))
        self.alpha = self._alpha(self.cfg.get("alpha", "auto"), ctx.modalities)
        if not self.cfg.get("ema", True):
            self.alpha = 0.0  # Eq. 4 without EMA: λ_{t+1} = ω_t
        self.lam0 = float(self.cfg.get("lambda0", 0.5))
        self.pairs: list[tuple[str, str]] = list(combinations(ctx.modalities, 2))
        # λ of the first modality of each pair (the second's is 1 − λ), a 0-dim tensor each
        self.lam = {p: torch.tensor(self.lam0) for p in self.pairs}
        self.probe_lam = dict(self.lam)  # λ_t of the last training probe (eval_lambda: probe)
        self.heads: nn.ModuleDict | None = None
        self.proj: nn.ModuleDict | None = None

    @staticmethod
    def _alpha(value, modalities: list[str]) -> float:
        """EMA α: a number, or ``auto`` = 0.8 for audio-visual data, 0.7 otherwise (paper §5.1)."""
        if value == "auto":
            return 0.8 if set(modalities) == {"audio", "visual"} else 0.7
        alpha = float(value)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"iprm: alpha must be in [0, 1), got {alpha}")
        return alpha

    # ---- modules -------------------------------------------------------------------------

    def modules(self, dims: dict[str, int], num_classes: int) -> dict[str, nn.Module]:
        """Mixup head(s) on the common feature size, and projections when sizes differ."""
        size = self.cfg.get("proj_dim")
        if size is None and len(set(dims.values())) == 1:
            size, self.proj = next(iter(dims.values())), None
        else:
            size = int(size or max(dims.values()))
            self.proj = nn.ModuleDict({m: nn.Linear(d, size) for m, d in dims.items()})
        if self.pair_mode == "random":
            self.heads = nn.ModuleDict({"shared": nn.Linear(size, num_classes)})
        else:
            self.heads = nn.ModuleDict({_key(p): nn.Linear(size, num_classes) for p in self.pairs})
        out = {"iprm_heads": self.heads}
        if self.proj is not None:
            out["iprm_proj"] = self.proj
        return out

    def _head(self, pair: tuple[str, str]) -> nn.Module:
        return self.heads["shared" if self.pair_mode == "random" else _key(pair)]

    def _normalised(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """z̄^o = z^o / ‖z^o‖₂ (after the projection, if any), [B, D] each."""
        if self.proj is not None:
            features = {m: self.proj[m](f) for m, f in features.items()}
        return {m: F.normalize(f.float(), dim=1) for m, f in features.items()}

    def _fused(self, zbar: dict[str, torch.Tensor], pair: tuple[str, str], lam) -> torch.Tensor:
        """h(f(z̄^i, z̄^j, λ)) for one pair, [B, C]."""
        i, j = pair
        return self._head(pair)(self.mix(zbar[i], zbar[j], lam))

    # ---- training ------------------------------------------------------------------------

    def forward(self, model, inputs, labels) -> IPRMOutput:
        """Probe with λ_t (no gradient), then train the mixup with λ̂_t = ω_t."""
        if self.heads is None:
            raise RuntimeError("iprm: modules() was not called; add its modules to model.method_modules")
        base = model.fuse(model.encode(inputs))  # features and unimodal logits W_o·φ_o + b/M
        zbar = self._normalised(base.features)
        pairs = self.pairs
        if self.pair_mode == "random" and len(pairs) > 1:
            pairs = [pairs[int(torch.randint(len(pairs), (1,)))]]
        pair_logits = [self._step_pair(zbar, base.unimodal_logits, p) for p in pairs]
        return IPRMOutput(logits=torch.stack(pair_logits).mean(0), features=base.features,
                          unimodal_logits=base.unimodal_logits, pair_logits=pair_logits)

    def _step_pair(self, zbar, uni_logits, pair) -> torch.Tensor:
        """One pair's probe/rebalance; returns the trained fused logits [B, C]."""
        i, j = pair
        lam_t = self.lam[pair] = self.lam[pair].to(zbar[i].device)
        self.probe_lam[pair] = lam_t
        if self.two_pass:
            with torch.no_grad():  # instantaneous probing: reuse the encoder features
                probe = self._fused(zbar, pair, lam_t)
            omega = strength_weight(kl_to_fused(uni_logits[i].detach(), probe),
                                    kl_to_fused(uni_logits[j].detach(), probe))
            fused = self._fused(zbar, pair, omega)  # rebalanced learning with λ̂_t = ω_t
        else:  # "One-Pass": learn with λ_t, ω_t only feeds λ_{t+1}
            fused = self._fused(zbar, pair, lam_t)
            with torch.no_grad():
                omega = strength_weight(kl_to_fused(uni_logits[i].detach(), fused.detach()),
                                        kl_to_fused(uni_logits[j].detach(), fused.detach()))
        self.lam[pair] = ema_update(lam_t, omega, self.alpha)
        # float32 as before; kept on the device (the loop reads diagnostics once per epoch)
        self.log(**{f"lambda_{i}_vs_{j}": lam_t.float(), f"omega_{i}_vs_{j}": omega.float()})
        return fused

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        """Σ_pairs CE(fused) + Σ_o CE(h_o(z^o)) (paper §3; Tri-CLS sums the pair heads)."""
        fused = out.pair_logits if isinstance(out, IPRMOutput) and out.pair_logits else [out.logits]
        loss = sum(F.cross_entropy(f, labels) for f in fused)
        return loss + sum(F.cross_entropy(u, labels) for u in out.unimodal_logits.values())

    # ---- evaluation ----------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, out: Output) -> torch.Tensor:
        """Mean over pairs of h(f(z̄^i, z̄^j, λ)) with the EMA λ (or the last probe's); ``sum`` adds
        Σ_o unimodal logits."""
        zbar = self._normalised(out.features)
        lam = self.lam if self.eval_lambda == "ema" else self.probe_lam
        fused = torch.stack([self._fused(zbar, p, lam[p].to(out.logits.device)) for p in self.pairs]).mean(0)
        if self.test_logits == "sum":
            fused = fused + sum(u.float() for u in out.unimodal_logits.values())
        return fused

    def state_dict(self) -> dict:
        return {"lambda": {_key(p): float(v) for p, v in self.lam.items()},
                "probe_lambda": {_key(p): float(v) for p, v in self.probe_lam.items()}}

    def load_state_dict(self, state: dict) -> None:
        for p in self.pairs:
            if _key(p) in state.get("lambda", {}):
                self.lam[p] = torch.tensor(float(state["lambda"][_key(p)]))
            if _key(p) in state.get("probe_lambda", {}):
                self.probe_lam[p] = torch.tensor(float(state["probe_lambda"][_key(p)]))


def _key(pair: tuple[str, str]) -> str:
    """ModuleDict-safe name of a modality pair."""
    return f"{pair[0]}__{pair[1]}"
