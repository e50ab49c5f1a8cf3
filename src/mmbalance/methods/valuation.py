"""Modality valuation: re-sampling by sample-level (or modality-level) Shapley contribution.

Wei, Feng, Wang & Hu, CVPR 2024 ("Enhancing Multimodal Cooperation via Sample-level Modality
Valuation"). Each modality's contribution to each sample's prediction is its Shapley value in
the game whose players are the modalities; samples on which a modality contributes little are
re-sampled with only that modality's input, so the weak modality gets extra training exactly
where it lags. The modality-level variant estimates one contribution per modality on a part of
the training set and re-samples a share of all samples for the modality that contributes less.

What it changes in the loop: ``forward`` (the predictions of every modality subset, by zeroing
the other modalities' features), ``loss`` (fused CE plus the CE of the re-sampled copies),
``on_epoch_start`` (modality level: the per-epoch estimate on ``part_ratio`` of the training set).

Formulas (released code @7ed12b0 ``code/sample_level.py``, ``code/modality_level.py`` and
``code/datasets/dataloader.py``):

- value of a modality subset S for a sample: v(S) = |S| if the model with only S's inputs (the
  others' features zeroed, the code's ``exec_drop``) predicts the label, else 0; v(∅) = 0;
- Shapley value φ^m = Σ_{S ⊆ M∖{m}} |S|!(|M|−|S|−1)!/|M|! · (v(S ∪ {m}) − v(S)); for two
  modalities the code's (v_a + v_av − v_v)/2 with v_av ∈ {0, 2};
- sample level: a sample gets k copies keeping only modality m, k = 1 for 0.4 < φ^m < 1, 2 for
  −0.1 < φ^m < 0.4, 3 for φ^m < −0.1, 0 otherwise;
- modality level: φ̄^m = mean φ^m over a random ``part_ratio`` of the training samples, gap
  g^m = 1 − φ̄^m, d = α·(2/3)·mean over modality pairs |g^m − g^{m'}| (two modalities: the code's
  |g^a − g^v|·2/3·α); ⌊d·N⌋ random samples get one copy keeping only the modality with the largest
  gap;
- re-sampling starts after ``warmup_epochs`` epochs of plain fused training (the code re-samples
  from its ``warmup``-th epoch on).

In the loop: the code builds a new, longer training set each epoch from the model of the previous
epoch. The loop keeps its training set, so the copies are made inside each batch from the step's
own forward pass: the contributions come from the current model on the batch, the copies reuse
the batch's features (one encoder pass; no new augmentation), and each copy weighs as much as a
sample (the batch loss is Σ CE over samples and copies divided by the batch size B), so an epoch
gives the same total gradient weight to originals and copies as the code's re-sampled epoch, in
the same number of steps. Modality level: E[copies] = d·B per batch (⌊d·B⌋ plus one with
probability of the fractional part), drawn with replacement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


@dataclass
class ValuationOutput(Output):
    """``Output`` plus each modality's shapley value φ^m [B] (detached) and the logits of the
    model with only modality m's features, [B, C] each (differentiable)."""

    shapley: dict[str, torch.Tensor] = field(default_factory=dict)
    alone: dict[str, torch.Tensor] = field(default_factory=dict)


def subsets(modalities: list[str]) -> list[frozenset]:
    """Every non-empty subset of the modalities."""
    return [frozenset(c) for r in range(1, len(modalities) + 1) for c in combinations(modalities, r)]


def shapley_values(correct: dict[frozenset, torch.Tensor], modalities: list[str]) -> dict[str, torch.Tensor]:
    """φ^m per sample from ``correct[S]`` ([B] bool: the model with only S predicts the label) with
    v(S) = |S|·correct[S], v(∅) = 0."""
    n = len(modalities)

    def value(s: frozenset) -> torch.Tensor:
        return len(s) * correct[s].float() if s else torch.zeros(())

    phi = {}
    for m in modalities:
        others = [k for k in modalities if k != m]
        phi[m] = sum(math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
                     * (value(s | {m}) - value(s)) for s in [frozenset(), *subsets(others)])
    return phi


def sample_copies(phi: torch.Tensor) -> torch.Tensor:
    """Copies of each sample for its modality with Shapley value ``phi`` [B] → [B] (0 … 3)."""
    copies = torch.zeros_like(phi)
    copies = torch.where((phi > 0.4) & (phi < 1.0), 1.0, copies)
    copies = torch.where((phi > -0.1) & (phi < 0.4), 2.0, copies)
    return torch.where(phi < -0.1, 3.0, copies)


def modality_difference(mean_phi: dict[str, float], alpha: float) -> tuple[float, str]:
    """d = α·(2/3)·mean_pairs |g^m − g^{m'}| with g = 1 − φ̄, and the modality with the largest gap."""
    gap = {m: 1.0 - v for m, v in mean_phi.items()}
    pairs = list(combinations(gap, 2))
    d = alpha * 2.0 / 3.0 * sum(abs(gap[a] - gap[b]) for a, b in pairs) / max(len(pairs), 1)
    return d, max(gap, key=gap.get)


def subset_logits(model, features: dict[str, torch.Tensor], keep: frozenset) -> torch.Tensor:
    """Fused logits with the features of every modality outside ``keep`` zeroed, [B, C]."""
    return model.fuse({m: f if m in keep else torch.zeros_like(f) for m, f in features.items()}).logits


def valuate(model, out: Output, labels: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(φ^m [B] per modality, the only-m logits [B, C] per modality) for one forward pass."""
    mods = list(out.features)
    alone = {m: subset_logits(model, out.features, frozenset([m])) for m in mods}
    correct = {}
    with torch.no_grad():
        for s in subsets(mods):
            if len(s) == len(mods):
                logits = out.logits
            else:
                logits = alone[next(iter(s))] if len(s) == 1 else subset_logits(model, out.features, s)
            correct[s] = logits.detach().argmax(1) == labels
    return shapley_values(correct, mods), alone


@METHODS.register("valuation")
class Valuation(Method):
    """Fused CE + CE of contribution-driven single-modality copies (see the module docstring)."""

    acting = {"key": "resample_ratio", "noop": 0.0}  # copies per sample in the batch

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.level = self.cfg.get("level", "sample")
        if self.level not in ("sample", "modality"):
            raise ValueError(f"valuation: unknown level {self.level!r}; choices: modality, sample")
        self.warmup = int(self.cfg.get("warmup_epochs", 2))
        self.part_ratio, self.alpha = float(self.cfg.get("part_ratio", 0.2)), float(self.cfg.get("alpha", 1.0))
        if not 0.0 < self.part_ratio <= 1.0:
            raise ValueError(f"valuation: part_ratio must be in (0, 1], got {self.part_ratio}")
        self.difference, self.keep = 0.0, None  # modality level: d and the modality the copies keep

    def _active(self) -> bool:
        return self.ctx.epoch >= self.warmup

    @torch.no_grad()
    def on_epoch_start(self, epoch: int, trainer) -> None:
        """Modality level: φ̄^m on ``part_ratio`` of a shuffled training pass (evaluation mode) → d."""
        if self.level != "modality" or epoch < self.warmup:
            return
        model = trainer.model
        n_batches = math.ceil(len(trainer.splits["train"]) / int(trainer.cfg["batch_size"]))
        take, sums, count = max(1, math.ceil(self.part_ratio * n_batches)), {}, 0
        was_training = model.training
        model.eval()
        for i, (inputs, y) in enumerate(trainer.batches("train", train=True)):
            if i >= take:
                break
            with trainer.rt.autocast():
                phi, _ = valuate(model, model(inputs), y)
            for m, v in phi.items():
                sums[m] = sums.get(m, 0.0) + float(v.sum())
            count += len(y)
        model.train(was_training)
        self.difference, self.keep = modality_difference({m: s / count for m, s in sums.items()}, self.alpha)

    def forward(self, model, inputs, labels) -> ValuationOutput:
        out = model(inputs)
        phi, alone = valuate(model, out, labels)
        return ValuationOutput(out.logits, out.features, out.unimodal_logits, phi, alone)

    def _copies(self, out: ValuationOutput) -> dict[str, torch.Tensor]:
        """Copies per sample [B] for each modality kept alone."""
        if not self._active():
            return {}
        if self.level == "sample":
            return {m: sample_copies(phi) for m, phi in out.shapley.items()}
        b = out.logits.shape[0]
        expected = self.difference * b
        n = int(expected) + int(torch.rand(()) < expected - int(expected))
        idx = torch.randint(b, (n,), device=out.logits.device)
        return {self.keep: torch.bincount(idx, minlength=b).float()}

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        """[Σ_b CE(z_b) + Σ_m Σ_b copies^m_b·CE(z^{only m}_b)] / B."""
        b = len(labels)
        total = F.cross_entropy(out.logits, labels, reduction="sum")
        n_copies = torch.zeros((), device=out.logits.device)
        for m, k in self._copies(out).items():
            total = total + (k * F.cross_entropy(out.alone[m], labels, reduction="none")).sum()
            n_copies = n_copies + k.sum()
        self.log(resample_ratio=n_copies / b, **{f"contrib_{m}": v.mean() for m, v in out.shapley.items()})
        return total / b
