"""Curriculum dropout: neuron dropout whose retain probability falls from 1 to θ̄ over training.

Morerio, Cavazza, Volpi, Vidal & Murino, "Curriculum Dropout", ICCV 2017, Eq. (scheduled retain
probability): at training iteration t every unit is kept with probability

    θ(t) = (1 − θ̄) · exp(−γ t) + θ̄,

so training starts without dropout (θ(0) = 1) and the noise grows towards the standard rate θ̄
("starting easy"). The released code (github.com/pmorerio/curriculum-dropout,
mnist/evaluate_mnist.py, ``mode = scheduled_dropout``) evaluates θ at every gradient step i with
γ = 0.001 per step (mnist/experiments/sdo/input_configuration) and θ̄ = 0.5 for fully connected
layers (``p_fc``).

OPM/OGM (Wei, Hu, Du, Wen, TPAMI 2024), §4.3.4 and Tab. 6, compare with it without stating θ̄, γ
or where the units sit. We drop units of each modality's encoder features before fusion, as
``dropout`` does (inverted dropout: drop rate 1 − θ(t), survivors × 1/θ(t)), t = the loop's
global step (``ctx.step``). θ̄ = 0.5 (fully connected layers in the released code). γ is set
relative to the run's length T (steps per epoch × epochs): γ = ``gamma_T`` / T, gamma_T = 10 our
choice, so that the gap θ(t) − θ̄ halves every 7 % of the run and is e⁻¹⁰ of its start at the end
(the released code's fixed 0.001 per step covers ~64k MNIST steps, γ·T ≈ 64, and would hardly
move in runs of a few thousand steps); a ``gamma`` value replaces it with a fixed per-step rate.
"""

from __future__ import annotations

import math

from mmbalance.methods.base import METHODS
from mmbalance.methods.dropout import NeuronDropout


def curriculum_retain(step: int, theta_bar: float, gamma: float) -> float:
    """θ(t) = (1 − θ̄)·exp(−γ t) + θ̄: 1 at t = 0, θ̄ as t → ∞."""
    return (1.0 - theta_bar) * math.exp(-gamma * step) + theta_bar


def steps_per_epoch(trainer) -> int:
    """Training steps of one epoch: the number of global batches of the training split."""
    return max(1, math.ceil(len(trainer.splits["train"]) / int(trainer.cfg["batch_size"])))


@METHODS.register("curriculum_dropout")
class CurriculumDropout(NeuronDropout):
    """Neuron dropout on the unimodal features with a retain probability decaying from 1 to θ̄."""

    method_name = "curriculum_dropout"

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.theta_bar = float(self.cfg.get("theta_bar", 0.5))
        if not 0.0 < self.theta_bar <= 1.0:
            raise ValueError(f"method {self.method_name!r}: theta_bar = {self.theta_bar} must lie in (0, 1] (a retain probability)")
        for key in ("gamma", "gamma_T"):
            value = self.cfg.get(key)
            if value is not None and float(value) <= 0:
                raise ValueError(f"method {self.method_name!r}: {key} = {value} must be positive")
        self.total_steps: int | None = None  # T, known once the loop hands over its trainer

    def on_epoch_start(self, epoch: int, trainer) -> None:
        self.total_steps = steps_per_epoch(trainer) * int(self.ctx.epochs)

    def gamma(self) -> float:
        """γ per step: ``gamma`` if set, else ``gamma_T`` / T."""
        if self.cfg.get("gamma") is not None:
            return float(self.cfg["gamma"])
        if self.total_steps is None:
            raise RuntimeError(f"method {self.method_name!r}: γ = gamma_T / T needs the run's length; "
                               "on_epoch_start sets it before the first step")
        return float(self.cfg.get("gamma_T", 10.0)) / self.total_steps

    def drop_rate(self) -> float:
        return 1.0 - curriculum_retain(self.ctx.step, self.theta_bar, self.gamma())
