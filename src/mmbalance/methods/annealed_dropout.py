"""Annealed dropout: neuron dropout whose rate falls linearly to zero over training.

Rennie, Goel & Thomas, "Annealed dropout training of deep networks", IEEE SLT 2014: the dropout
rate starts high and is annealed to zero, so that training moves from an ensemble of thinned
networks to the full network ("exploration" to "fine tuning"). Linear schedule, per epoch t:

    p(t) = p₀ · max(0, 1 − t/N)

with p₀ the initial rate and N the number of epochs over which it reaches 0.

OPM/OGM (Wei, Hu, Du, Wen, TPAMI 2024), §4.3.4 and Tab. 6, compare with it without stating p₀, N
or where the units sit. We drop units of each modality's encoder features before fusion, as
``dropout`` does (inverted dropout, survivors × 1/(1 − p(t))), with p₀ = 0.5 (Srivastava et al.'s
hidden-unit rate; our choice) and, by default (``anneal_epochs: null``), N = the run's epochs − 1:
the first epoch drops at p₀ and the last one trains the full network.
"""

from __future__ import annotations

from mmbalance.methods.base import METHODS
from mmbalance.methods.dropout import NeuronDropout, check_rate


def annealed_rate(p0: float, epoch: int, anneal_epochs: int) -> float:
    """p₀ · max(0, 1 − epoch/N) with N = ``anneal_epochs`` (epoch counted from 0)."""
    return p0 * max(0.0, 1.0 - epoch / max(int(anneal_epochs), 1))


@METHODS.register("annealed_dropout")
class AnnealedDropout(NeuronDropout):
    """Neuron dropout on the unimodal features at a linearly annealed rate."""

    method_name = "annealed_dropout"

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.p0 = check_rate(self.method_name, "p0", self.cfg.get("p0", 0.5))
        n = self.cfg.get("anneal_epochs")
        if n is not None and int(n) < 1:
            raise ValueError(f"method {self.method_name!r}: anneal_epochs = {n} must be a positive number of epochs or null")

    def anneal_epochs(self) -> int:
        """N: ``anneal_epochs``, or the run's epochs − 1 (read when used: the loop may set it late)."""
        n = self.cfg.get("anneal_epochs")
        return int(n) if n is not None else max(int(self.ctx.epochs) - 1, 1)

    def drop_rate(self) -> float:
        return annealed_rate(self.p0, self.ctx.epoch, self.anneal_epochs())
