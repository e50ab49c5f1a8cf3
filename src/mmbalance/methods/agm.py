"""AGM: Adaptive Gradient Modulation.

Li, Li, Hu, Lei, Li & Zhou, ICCV 2023 ("Boosting Multi-modal Model Performance with Adaptive
Gradient Modulation"). The fused output is split into mono-modal contributions by Shapley values
over modality-zeroed passes of the fusion head; each contribution's gradient is scaled by a
coefficient that pushes every modality's mono-modal score towards its running-average standing
relative to the others, so a modality that is currently ahead is slowed and one behind is sped up.

What it changes in the loop: ``forward`` (coalition passes of the fusion head and a
gradient-scaled recombination of the contributions, whose value equals the fused logits).

Formulas (released code ``run/CREMAD_main.py`` / ``model/CREMAD_net.py`` read):

- contributions: with f(S) the fusion head on the features of the modalities in S (the others
  zeroed), c_m = Shapley_m(f) + f(∅)/M, so Σ_m c_m = f(all). For two modalities this is the
  code's m_a = ½(f(a,v) − f(0,v) + f(a,0));
- mono-modal score s_m = mean_i −log max(softmax(c_m)_i[y_i], 1e−8) (lower is better), and its
  running mean S̄_m over all training iterations so far;
- r_m = exp(mean_{k≠m} s_k − s_m) now, r̄_m the same with S̄ (before this step's update)
  (two modalities: the code's exp(s_v − s_a); its MOSEI form exp(2(s̄ − s_m)) is the same);
- k_m = exp(α·min(r̄_m − r_m, 10)) and the training logits Σ_m [c_m with gradient × k_m];
- after backward, if an entry of the fusion head's weight gradient (``fc_out.weight``; weight
  matrices only, not biases) exceeds ``grad_clip`` in magnitude, every gradient is clipped to
  total norm ``grad_clip`` (the code's rule, with 1.0).

Where this differs from the code: the code zeroes the *inputs* and reruns the encoders in
evaluation mode for each coalition; here the encoder *features* are zeroed and only the fusion
head is rerun (the loop's feature-dropping convention: one batched head pass over the 2^M
coalitions instead of extra encoder passes). For the linear concat head c_m is then exactly W_m·φ_m + b/M, the loop's
unimodal logit. Any number of modalities (exact Shapley over all 2^M coalitions).
Defaults: α = 1.0 and the modulation epochs are the code's argument defaults (BalanceBenchmark
uses α 0.1). The code counts epochs from 1, so its ``--modulation_starts 0 --modulation_ends 20``
modulate its epochs 1–20, our epochs 0–19 (``modulation_ends: 19``). After its last modulation
epoch the code's backward hooks keep the last coefficients; here the contributions are then
left unscaled.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import product

import torch

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output

_LOG_FLOOR = -math.log(1e-8)  # the code scores a true-class probability below 1e-8 as 1e-8


@lru_cache(maxsize=8)
def shapley_matrix(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalition masks [2^n, n] (0/1) and Shapley weights [n, 2^n]: φ_m = Σ_S W[m, S]·f(S)."""
    masks = torch.tensor(list(product((0.0, 1.0), repeat=n)))  # row S: which modalities are kept
    size = masks.sum(1)  # |S|
    weights = torch.zeros(n, masks.shape[0])
    fact = math.factorial
    for s, row in enumerate(masks.tolist()):
        k = int(size[s])
        for m in range(n):
            if row[m]:  # S = T ∪ {m}, |T| = k − 1: + |T|!(n−|T|−1)!/n!
                weights[m, s] += fact(k - 1) * fact(n - k) / fact(n)
            else:  # S = T, m ∉ T: − |T|!(n−|T|−1)!/n!
                weights[m, s] -= fact(k) * fact(n - k - 1) / fact(n)
    return masks, weights


def contributions(fuse, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """c_m = Shapley_m + f(∅)/M, each [B, C], from one batched pass of ``fuse`` over every coalition.

    ``fuse``: features {m: [N, D_m]} → logits [N, C]; ``features``: {m: [B, D_m]}.
    """
    mods = list(features)
    masks, weights = shapley_matrix(len(mods))
    b = next(iter(features.values())).shape[0]
    stacked = {m: (f[None] * masks[:, i, None, None].to(f)).flatten(0, 1) for i, (m, f) in enumerate(features.items())}
    f_s = fuse(stacked).view(masks.shape[0], b, -1)  # [2^M, B, C]; row 0 is the empty coalition
    phi = torch.einsum("ms,sbc->mbc", weights.to(f_s), f_s)  # [M, B, C]
    base = f_s[0] / len(mods)
    return {m: phi[i] + base for i, m in enumerate(mods)}


def mono_scores(contrib: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """s_m = mean_i −log max(p_m,i[y_i], 1e−8), [M] (detached)."""
    logp = torch.stack([torch.log_softmax(c.detach().float(), dim=1) for c in contrib.values()])  # [M, B, C]
    nll = -logp.gather(2, labels[None, :, None].expand(logp.shape[0], -1, 1)).squeeze(2)  # [M, B]
    return nll.clamp(max=_LOG_FLOOR).mean(1)


def relative_ratio(scores: torch.Tensor) -> torch.Tensor:
    """r_m = exp(mean_{k≠m} s_k − s_m) for scores [M] → [M]."""
    n = scores.shape[0]
    others = (scores.sum() - scores) / (n - 1)
    return torch.exp(others - scores)


def agm_coefficients(scores: torch.Tensor, running: torch.Tensor, alpha: float, cap: float = 10.0) -> torch.Tensor:
    """k_m = exp(α·min(r̄_m − r_m, cap)) with r from this batch's ``scores`` and r̄ from ``running``."""
    return torch.exp(alpha * (relative_ratio(running) - relative_ratio(scores)).clamp(max=cap))


def scale_grad(x: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """Value x, gradient k·∂x (the code's backward hook); ``k`` a number or a 0-d tensor."""
    return x.detach() + k * (x - x.detach())


@METHODS.register("agm")
class AGM(Method):
    """Shapley mono-modal contributions with adaptive gradient scales (see the module docstring)."""

    acting = {"key": "k_*", "noop": 1.0}  # gradient scale of each modality

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        if len(ctx.modalities) < 2:
            raise ValueError(f"method agm needs at least two modalities; got {ctx.modalities}")
        self.alpha = float(self.cfg.get("alpha", 1.0))
        self.cap = float(self.cfg.get("max_exponent", 10.0))
        self.clip = float(self.cfg.get("grad_clip", 1.0))
        self.start, self.end = int(self.cfg.get("modulation_starts", 0)), int(self.cfg.get("modulation_ends", 19))
        self.running = torch.zeros(len(ctx.modalities))  # S̄_m, running mean of the scores
        self.iteration = 0

    def forward(self, model, inputs, labels) -> Output:
        feats = model.encode(inputs)
        base = model.fuse(feats)
        contrib = contributions(model.fusion.fuse, feats)
        scores = mono_scores(contrib, labels)  # [M], on the device: no host read in the step
        self.running = self.running.to(scores.device)
        coeff = agm_coefficients(scores, self.running, self.alpha, self.cap)  # [M]
        self.iteration += 1
        self.running = self.running + (scores - self.running) / self.iteration  # S̄ ← S̄(t−1)/t + s/t
        if not self.start <= self.ctx.epoch <= self.end:
            return base
        logits = sum(scale_grad(c, k) for c, k in zip(contrib.values(), coeff))
        self.log(**{f"k_{m}": k for m, k in zip(contrib, coeff)}, **{f"score_{m}": s for m, s in zip(contrib, scores)})
        return Output(logits=logits, features=feats, unimodal_logits=base.unimodal_logits, aux_logits=base.aux_logits)

    def after_backward(self, model, out, labels) -> None:
        """The code's clipping: total norm ``grad_clip`` when a fusion-head weight-gradient entry
        exceeds it (run/CREMAD_main.py tests ``fc_out.weight.grad`` only)."""
        if self.clip <= 0:
            return
        head = [p.grad for p in model.fusion.parameters() if p.grad is not None and p.dim() > 1]
        if not head:
            return
        params = [p for p in model.parameters() if p.grad is not None]
        exceeds = torch.stack([g.abs().max() for g in head]).max() > self.clip  # 0-d bool, on the device
        total = torch.nn.utils.get_total_norm([p.grad for p in params])
        # clip_grad_norm_ chosen on the device: with a total norm of 0 its factor
        # min(1, clip / (0 + 1e-6)) is exactly 1, which leaves the gradients as they are
        torch.nn.utils.clip_grads_with_norm_(params, self.clip, torch.where(exceeds, total, torch.zeros_like(total)))

    def state_dict(self) -> dict:
        return {"running": self.running.detach().cpu().clone(), "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.running = state["running"].clone()
        self.iteration = int(state["iteration"])
