"""PMR: Prototypical Modal Rebalance.

Fan, Xu, Wang, Zhang & Zhu, CVPR 2023 ("PMR: Prototypical Modal Rebalance for Multimodal
Learning"). Class prototypes (mean training features per class, per modality) define a
non-parametric classifier p(k | φ^m) ∝ exp(−‖φ^m − c^m_k‖₂); the slower modality — the one whose
prototype classifier scores the true classes lower — gets an extra prototypical cross-entropy
(PCE) that pulls its features towards its own prototypes, without going through the fused head.

What it changes in the loop: ``on_epoch_start`` (prototypes from training features) and
``loss`` (fused CE + α·PCE of the slow modality during the modulation epochs).

Formulas (released code ``main_Prototype_grad.py`` @3615e48 read, CREMA-D settings from its
``bash.sh``: α 2.0, ``momentum_coef`` 0, modulation epochs 0–70):

- prototypes c^m_k = mean of φ^m over the class-k samples of the first ⌊``proto_fraction``·n_b⌋
  batches (at least one; code: ``all_num // 10``) of a shuffled pass over the training split in
  evaluation mode, before epoch 0 and after every epoch; c ← (1 − μ)·c_new + μ·c_old
  (μ = ``momentum_coef``) from the estimate after epoch 1 on (the code's ``calculate_prototype``
  skips the momentum while its ``epoch`` argument is 0: before training and after epoch 0);
- PCE^m = CE(−d(φ^m, c^m), y) with d the Euclidean distance;
- per batch, s^m = Σ_i softmax(−d(φ^m_i, c^m))[y_i] (detached) and ρ = s^a / s^v; the code
  adds α·PCE^v when ρ > 1 and α·PCE^a when ρ < 1 (a fixed α, not a function of ρ).

Choices: with more than two modalities every modality whose score s^m is below the largest gets
α·PCE^m (for two modalities exactly the code's rule). The paper's prototype-based entropy
regulariser for the dominant modality is not in the released code and is not implemented here.
A class absent from the prototype sample keeps its previous prototype (the first time: the mean
of all sampled features), where the code would divide by zero.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method
from mmbalance.models import Output


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     previous: torch.Tensor | None = None) -> torch.Tensor:
    """Mean feature per class, [C, D], from ``features`` [N, D] and ``labels`` [N].

    A class with no sample keeps its row of ``previous`` (or the mean of all features).
    """
    feats = features.float()
    sums = torch.zeros(num_classes, feats.shape[1], dtype=feats.dtype, device=feats.device)
    sums.index_add_(0, labels, feats)
    counts = torch.bincount(labels, minlength=num_classes).to(feats.dtype)  # [C]
    protos = sums / counts.clamp(min=1.0)[:, None]
    missing = counts == 0
    if missing.any():
        fill = previous.to(feats) if previous is not None else feats.mean(0, keepdim=True).expand_as(protos)
        protos = torch.where(missing[:, None], fill, protos)
    return protos


def prototype_logits(features: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """−‖φ_i − c_k‖₂ for features [B, D] and prototypes [C, D] → [B, C] (differentiable in φ)."""
    f = features.float()
    sq = f.pow(2).sum(1, keepdim=True) - 2.0 * f @ protos.t() + protos.pow(2).sum(1)[None, :]
    # clamp: rounding can make a zero distance slightly negative, and sqrt'(0) is infinite
    return -sq.clamp(min=1e-12).sqrt()


def slow_mask(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """1.0 for each modality whose prototype score sum (0-d tensor) is below the largest, else 0.0
    (2 modalities: the code's ρ rule); decided on the scores' device."""
    best = torch.stack(list(scores.values())).max()
    return {m: (s < best).to(s.dtype) for m, s in scores.items()}


@METHODS.register("pmr")
class PMR(Method):
    """Fused CE + α·prototypical CE for the slow modality (see the module docstring)."""

    acting = {"key": "boost_*", "noop": 0.0}  # 1 while modality m gets the prototype loss

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.alpha = float(self.cfg.get("alpha", 2.0))
        self.momentum = float(self.cfg.get("momentum_coef", 0.0))
        self.fraction = float(self.cfg.get("proto_fraction", 0.1))
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"pmr: proto_fraction must be in (0, 1], got {self.fraction}")
        self.start, self.end = int(self.cfg.get("modulation_starts", 0)), int(self.cfg.get("modulation_ends", 70))
        self.protos: dict[str, torch.Tensor] = {}

    # ---- prototypes ----------------------------------------------------------------------

    @torch.no_grad()
    def _sample_features(self, trainer) -> tuple[dict[str, list[torch.Tensor]], torch.Tensor]:
        """Features of the first ``proto_fraction`` of a shuffled training pass (evaluation mode)."""
        model, data = trainer.model, trainer.splits["train"]
        n_batches = math.ceil(len(data) / int(trainer.cfg["batch_size"]))
        take = max(1, math.floor(self.fraction * n_batches + 1e-9))  # code: `sample_count >= all_num // 10`
        was_training = model.training
        model.eval()
        feats, labels = {m: [] for m in model.modalities}, []
        for i, (inputs, y) in enumerate(trainer.batches("train", train=self.fraction < 1.0)):
            if i >= take:
                break
            for m, f in model.encode(inputs).items():
                feats[m].append(f.float())
            labels.append(y)
        model.train(was_training)
        return feats, torch.cat(labels)

    def on_epoch_start(self, epoch: int, trainer) -> None:
        """c ← prototypes of the current encoders, blended with the previous ones (momentum) from
        epoch 2 on, i.e. once the estimate follows a trained epoch other than the first."""
        feats, labels = self._sample_features(trainer)
        for m, chunks in feats.items():
            old = self.protos.get(m)
            new = class_prototypes(torch.cat(chunks), labels.to(chunks[0].device), self.ctx.num_classes, old)
            blend = old is not None and epoch >= 2
            self.protos[m] = (1.0 - self.momentum) * new + self.momentum * old.to(new) if blend else new

    # ---- loss ----------------------------------------------------------------------------

    def loss(self, out: Output, labels: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(out.logits, labels)
        if not (self.start <= self.ctx.epoch <= self.end) or not self.protos:
            return loss
        logits = {m: prototype_logits(f, self.protos[m].to(f.device)) for m, f in out.features.items()}
        # score sums as 0-d float64 tensors: the slow modalities are chosen on the device, and a
        # modality that is not slow adds its prototype CE × 0 (exactly nothing, value and gradient)
        scores = {m: torch.softmax(l.detach(), 1).gather(1, labels[:, None]).sum().double() for m, l in logits.items()}
        slow = slow_mask(scores)
        for m in scores:
            loss = loss + self.alpha * F.cross_entropy(logits[m], labels) * slow[m].to(loss.dtype)
        mods = list(scores)
        if len(mods) == 2:
            self.log(rho=scores[mods[0]] / scores[mods[1]].clamp(min=1e-12))
        self.log(**{f"boost_{m}": slow[m] for m in mods})
        return loss

    def state_dict(self) -> dict:
        return {"protos": {m: p.detach().cpu().clone() for m, p in self.protos.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.protos = {m: p.clone() for m, p in state.get("protos", {}).items()}
