"""Greedy: balanced multi-modal learning by conditional learning speed.

Wu, Jastrzębski, Cho & Geras, ICML 2022 ("Characterizing and Overcoming the Greedy Nature of
Learning in Multi-modal Deep Neural Networks"). A cross-modal MMTM block lets each modality's
features be gated by both modalities; the *conditional learning speed* compares, per modality,
how fast the cross-modal ("bypass") weights learn relative to the modality's own encoder
("main"). When the two modalities' speeds drift apart by more than ``alpha``, the next
``window`` steps are re-balancing steps in which the cared-for modality's gate is replaced by
its running average, i.e. its features stop depending on the other modality.

What it changes in the loop: ``modules`` (the MMTM block), ``forward`` (gated features, and the
re-balancing mode), ``after_backward`` (speed bookkeeping on the step's gradients), ``predict``
(the fused head on gated features).

Formulas (the authors' code, nyukat/greedy_multimodal_learning ``src/callbacks.py``
``Bias_Mitigation_Strong`` and ``src/balanced_mmtm.py``, as BalanceBenchmark ``Greedy_trainer.py``
repeats them): with μ(θ) = Σ‖∇θ‖² / Σ‖θ‖² summed over the step's parameters of a group, and
cumulative sums over all non-re-balancing steps, BDR_m = log10(Σ_t μ(bypass_m) / Σ_t μ(main_m))
and speed = BDR_0 − BDR_1. From epoch ``start_epoch`` on (the code's ``starting_epoch``, 2 in its
``configs/training.gin``; the speeds accumulate from the first step), if |speed| > α the
cared-for modality is 0 when speed > 0, else 1, for ``window`` steps. The code's running average
of modality 1's gate averages modality 0's gate (``running_avg_weight_skeleton`` is updated from
``vis_out``); each modality's own gate is averaged here.
Gates: g_m = σ(W_m·ReLU(W_s·[φ_0; φ_1])) and φ'_m = φ_m ⊙ g_m (MMTM with a plain sigmoid, as in
that code), ``ratio`` = 4 sets the squeeze width 2·ΣD/ratio.

Where this differs from the sources: the papers put MMTM blocks between the ResNet stages; the
loop's encoders are opaque, so one MMTM acts on the final features. ``bypass_m`` = the MMTM
excitation layer of m plus the shared squeeze layer (counted for both, as the code does);
``main_m`` = the encoder of m. Defined for two modalities: other counts raise ``ValueError``.
``predict`` also replaces ``out.features`` / ``out.unimodal_logits`` by the gated ones, so the
loop's probe accuracies describe the gated model (the evaluation reads them after ``predict``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


class FeatureMMTM(nn.Module):
    """Multimodal transfer module on feature vectors: squeeze the concatenation, excite each."""

    def __init__(self, dims: dict[str, int], ratio: float = 4.0) -> None:
        super().__init__()
        self.modalities = list(dims)
        total = sum(dims.values())
        hidden = max(1, int(2 * total / ratio))
        self.squeeze = nn.Linear(total, hidden)
        self.excite = nn.ModuleDict({m: nn.Linear(hidden, d) for m, d in dims.items()})

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Gates in (0, 1), modality → [B, D_m]."""
        z = F.relu(self.squeeze(torch.cat([features[m] for m in self.modalities], dim=1)))  # [B, H]
        return {m: torch.sigmoid(self.excite[m](z)) for m in self.modalities}


def relative_speed(params: list[nn.Parameter]) -> float:
    """μ(θ) = Σ‖∇θ‖² / Σ‖θ‖² over the parameters of a group that have a gradient (0 if none)."""
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return 0.0
    g = torch.stack(torch._foreach_norm([p.grad.detach() for p in with_grad])).pow(2).sum()
    w = torch.stack(torch._foreach_norm([p.detach() for p in with_grad])).pow(2).sum()
    return float(g) / max(float(w), 1e-12)


def speed_difference(bypass: list[float], main: list[float]) -> float:
    """speed = log10(bypass_0 / main_0) − log10(bypass_1 / main_1) from cumulative μ sums."""
    bdr = [math.log10(max(b, 1e-30) / max(m, 1e-30)) for b, m in zip(bypass, main)]
    return bdr[0] - bdr[1]


@METHODS.register("greedy")
class Greedy(Method):
    """Conditional-learning-speed balancing with a feature-level MMTM (see the module docstring)."""

    acting = {"key": "rebalancing", "noop": 0.0}  # fraction of steps that are re-balancing steps

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        if len(ctx.modalities) != 2:
            raise ValueError(f"method greedy is defined for two modalities (a pair of conditional learning "
                             f"speeds); got {len(ctx.modalities)}: {ctx.modalities}")
        self.alpha = float(self.cfg.get("alpha", 0.001))
        self.window = int(self.cfg.get("window", 5))
        self.ratio = float(self.cfg.get("ratio", 4))
        self.start_epoch = int(self.cfg.get("start_epoch", 0))  # the code's ``starting_epoch``
        self.mmtm: FeatureMMTM | None = None
        self.fusion = None  # the model's fusion head, for predict (set on first use)
        self.bypass, self.main = [0.0, 0.0], [0.0, 0.0]  # cumulative μ sums per modality
        self.curation, self.curation_step, self.caring = False, 0, 0
        self.avg_gate: dict[str, torch.Tensor] = {}
        self.avg_count = 0

    def modules(self, dims: dict[str, int], num_classes: int) -> dict[str, nn.Module]:
        self.mmtm = FeatureMMTM(dims, self.ratio)
        self.avg_gate = {m: torch.zeros(d) for m, d in dims.items()}
        return {"greedy_mmtm": self.mmtm}

    def _gates(self, features: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        if self.mmtm is None:
            raise RuntimeError("greedy: modules() was not called; add its modules to model.method_modules")
        gates = self.mmtm(features)
        if not train:
            return gates
        # cumulative mean of each gate over training steps, [D_m] (the code's running_avg_weight)
        n = self.avg_count
        for m, g in gates.items():
            self.avg_gate[m] = ((g.detach().mean(0) + self.avg_gate[m].to(g.device) * n) / (n + 1))
        self.avg_count = n + 1
        if self.curation:
            m = self.mmtm.modalities[self.caring]
            gates[m] = self.avg_gate[m].expand_as(gates[m])  # cut the cross-modal path of m
        return gates

    def bind(self, model) -> None:
        self.fusion = model.fusion  # a reloaded model predicts without a training forward first

    def on_epoch_start(self, epoch: int, trainer) -> None:
        self.fusion = trainer.model.fusion

    def forward(self, model, inputs, labels) -> Output:
        self.fusion = model.fusion
        feats = model.encode(inputs)
        gates = self._gates(feats, train=True)
        return model.fuse({m: f * gates[m] for m, f in feats.items()})

    def after_backward(self, model, out, labels) -> None:
        """Count re-balancing steps, or update the speeds and maybe start re-balancing."""
        self.log(rebalancing=float(self.curation))
        if self.curation:
            self.curation_step += 1
            if self.curation_step >= self.window:
                self.curation = False
            return
        squeeze = list(self.mmtm.squeeze.parameters())
        for i, m in enumerate(self.mmtm.modalities):
            self.bypass[i] += relative_speed(list(self.mmtm.excite[m].parameters()) + squeeze)
            self.main[i] += relative_speed(model.modality_parameters(m))
        speed = speed_difference(self.bypass, self.main)
        self.log(speed=speed)
        # before ``start_epoch`` the speeds accumulate but no re-balancing starts (the code's lock)
        if self.ctx.epoch >= self.start_epoch and abs(speed) > self.alpha:
            self.curation, self.curation_step = True, 0
            self.caring = 0 if speed > 0 else 1

    @torch.no_grad()
    def predict(self, out: Output) -> torch.Tensor:
        """Fused logits of the gated features (no re-balancing at test time)."""
        if self.fusion is None:
            raise RuntimeError("greedy: predict needs the model's fusion head; call forward or on_epoch_start first")
        gates = self._gates(out.features, train=False)
        gated = {m: f * gates[m] for m, f in out.features.items()}
        fused, uni = self.fusion(gated)
        out.features, out.unimodal_logits = gated, uni  # probe accuracies of the gated model
        return fused

    def state_dict(self) -> dict:
        return {"bypass": list(self.bypass), "main": list(self.main), "curation": self.curation,
                "curation_step": self.curation_step, "caring": self.caring,
                "avg_gate": {m: g.clone() for m, g in self.avg_gate.items()}, "avg_count": self.avg_count}

    def load_state_dict(self, state: dict) -> None:
        self.bypass, self.main = list(state["bypass"]), list(state["main"])
        self.curation, self.curation_step, self.caring = state["curation"], state["curation_step"], state["caring"]
        self.avg_gate = {m: g.clone() for m, g in state["avg_gate"].items()}
        self.avg_count = state["avg_count"]
