"""LFM: learning the modality gap with a dynamically weighted alignment objective.

Yang et al., "Facilitating Multimodal Classification via Dynamically Learning Modality Gap",
NeurIPS 2024 (code: njustkmg/NeurIPS24-LFM ``Crema_epoch.py``, ``Crema_epoch_learnable.py``).
The paper integrates an unsupervised cross-modal objective with the supervised one under a
weight that changes during training; the loss is

    L = 2·(α_cls(t)·CE(z/M, y) + α_gap(t)·D(p_1, …, p_M)),   α_gap = 1 − α_cls,

with z the fused logits (the code's 0.5·(o_a + o_v), M = 2) and p_m = softmax of the modality's
logits. D is the code's ``Alignment``: ½[KL(m‖p) + KL(m‖q)] for m = ½(p + q) (``F.kl_div(p.log(),
m)`` is KL(m‖p)); ``divergence: js`` gives the textbook Jensen-Shannon ½[KL(p‖m) + KL(q‖m)].
With more than two modalities D is the mean over modality pairs. Only the loss and, for the
learned schedule, an epoch-start update of the weight change.

Weight schedules (``schedule``):
- ``fitted`` (``Crema_epoch.py``, the README's run): α_cls(t) = Σ_i c_i·tⁱ, the code's degree-5
  fit of its learned weights over a 200-epoch run: 0.20 at t = 0, 0.54 at 100, 1.01 at 183
  (t ∈ [177, 188] exceeds 1, where the code's α_gap turns slightly negative; we clamp α_cls to
  [0, 1]), 0.90 at 200. With ``stretch`` the run's epochs are mapped onto those 200
  (t = epoch·200/epochs), so short runs see the whole schedule; otherwise t = epoch (clamped
  to [0, 200]).
- ``learned`` (``Crema_epoch_learnable.py``): before each epoch, α_gap −= lr_α·g with g the mean
  of the Hessian-vector product H(L_total)·∇L_cls over the model's *first* parameter tensor (as
  the code does), on ``hyper_batch`` held-out samples (the code: 8 drawn from train; here the
  first validation batch); α_gap ∈ [0.05, 0.95] starts at 0.95, lr_α = 1e-4 halves every 20
  epochs.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch.nn import functional as F

from mmbalance.methods.base import METHODS, Method

# α_cls(t) = Σ_i c_i tⁱ: the coefficients of ``getAlpha_Learnable_Fitted`` (α_gap's are 1 − these)
FITTED_CLS = (2.04623704e-01, 3.35472727e-03, 1.22989557e-04, -2.92947416e-06, 2.23835486e-08, -5.39717505e-11)
FIT_EPOCHS = 200  # the run length the polynomial was fitted on (data/crema.json ``epoch_dict``)


def fitted_weights(epoch: int, epochs: int, stretch: bool = True) -> tuple[float, float]:
    """(α_cls, α_gap) of the fitted schedule at ``epoch`` of a run of ``epochs``."""
    t = epoch * FIT_EPOCHS / max(epochs, 1) if stretch else float(epoch)
    t = min(max(t, 0.0), float(FIT_EPOCHS))
    a = min(max(sum(c * t**i for i, c in enumerate(FITTED_CLS)), 0.0), 1.0)
    return a, 1.0 - a


def pair_divergence(z1: torch.Tensor, z2: torch.Tensor, form: str = "code") -> torch.Tensor:
    """Batch-mean divergence between softmax(z1) and softmax(z2) ([B, C] logits each).

    ``code``: ½[KL(m‖p) + KL(m‖q)]; ``js``: ½[KL(p‖m) + KL(q‖m)]; m = ½(p + q).
    """
    log_p, log_q = z1.log_softmax(dim=1), z2.log_softmax(dim=1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)  # log ½(p + q)
    if form == "code":
        m = log_m.exp()
        kl = (m * (log_m - log_p)).sum(1) + (m * (log_m - log_q)).sum(1)
    elif form == "js":
        kl = (log_p.exp() * (log_p - log_m)).sum(1) + (log_q.exp() * (log_q - log_m)).sum(1)
    else:
        raise ValueError(f"method 'lfm': unknown divergence {form!r}; choices: code, js")
    return 0.5 * kl.mean()


def gap_loss(unimodal: dict[str, torch.Tensor], form: str = "code") -> torch.Tensor:
    """Mean pairwise divergence between the modalities' predictions."""
    pairs = list(itertools.combinations(unimodal.values(), 2))
    return sum(pair_divergence(a, b, form) for a, b in pairs) / len(pairs)


def lfm_loss(fused: torch.Tensor, unimodal: dict[str, torch.Tensor], labels: torch.Tensor, a_cls: float, a_gap: float,
             form: str = "code") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, CE(z/M), D): L = 2·(a_cls·CE(fused/M, y) + a_gap·D)."""
    cls = F.cross_entropy(fused / len(unimodal), labels)
    gap = gap_loss(unimodal, form)
    return 2.0 * (a_cls * cls + a_gap * gap), cls, gap


def _head(inputs: dict, n: int) -> dict:
    """The first ``n`` samples of a batch (tensors or ``SequenceBatch`` tuples)."""
    return {m: type(v)(*(t[:n] for t in v)) if isinstance(v, tuple) else v[:n] for m, v in inputs.items()}


@METHODS.register("lfm")
class LFM(Method):
    """CE on the fused logits and a prediction-alignment term, under a moving weight."""

    acting = {"key": "alpha_cls", "noop": 1.0}  # α_cls = 1 (α_gap = 0): no alignment term

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.schedule = self.cfg.get("schedule", "fitted")
        if self.schedule not in ("fitted", "learned"):
            raise ValueError(f"method 'lfm': unknown schedule {self.schedule!r}; choices: fitted, learned")
        self.form = self.cfg.get("divergence", "code")
        if self.form not in ("code", "js"):
            raise ValueError(f"method 'lfm': unknown divergence {self.form!r}; choices: code, js")
        self.stretch = bool(self.cfg.get("stretch", True))
        self.a_gap = float(self.cfg.get("init_gap_weight", 0.95))
        self.lr_alpha = float(self.cfg.get("lr_alpha", 1e-4))
        self.weights = (1.0 - self.a_gap, self.a_gap)

    def on_epoch_start(self, epoch: int, trainer) -> None:
        if self.schedule == "fitted":
            self.weights = fitted_weights(epoch, self.ctx.epochs, self.stretch)
        else:
            self._learned_update(epoch, trainer)
            self.weights = (1.0 - self.a_gap, self.a_gap)

    def loss(self, out, labels) -> torch.Tensor:
        a_cls, a_gap = self.weights
        loss, cls, gap = lfm_loss(out.logits, out.unimodal_logits, labels, a_cls, a_gap, self.form)
        self.log(alpha_cls=a_cls, ce_fused=cls, gap=gap)
        return loss

    def _learned_update(self, epoch: int, trainer) -> None:
        """One hypergradient step on α_gap (``getAlpha_Learnable``), on a held-out batch."""
        model = trainer.model
        split = "val" if "val" in trainer.splits else "train"
        inputs, labels = next(iter(trainer.batches(split)))
        n = min(len(labels), int(self.cfg.get("hyper_batch", 8)))
        inputs, labels = _head(inputs, n), labels[:n]
        params = [p for p in model.parameters() if p.requires_grad]
        model.eval()  # the code's model is in eval mode here after its per-epoch test pass
        out = model(inputs)
        _, cls, gap = lfm_loss(out.logits, out.unimodal_logits, labels, 1.0 - self.a_gap, self.a_gap, self.form)
        total = (1.0 - self.a_gap) * cls + self.a_gap * gap
        g_total = torch.autograd.grad(total, params, create_graph=True, allow_unused=True)
        g_cls = torch.autograd.grad(cls, params, retain_graph=True, create_graph=True, allow_unused=True)
        # the code reads hessian_vector_prod[0]: d/dθ_0 Σ_i ⟨∇_i L_total, ∇_i L_cls⟩ for the model's
        # first parameter tensor θ_0 (∇L_cls held fixed)
        used = [i for i, (a, b) in enumerate(zip(g_total, g_cls)) if a is not None and b is not None and a.requires_grad]
        hvp = None
        if used:
            hvp = torch.autograd.grad([g_total[i] for i in used], params[0], grad_outputs=[g_cls[i] for i in used],
                                      allow_unused=True)[0]
        model.train()
        grad = float(hvp.mean()) if hvp is not None else 0.0
        if epoch % int(self.cfg.get("halve_every", 20)) == 0 and epoch != 0:
            self.lr_alpha /= 2.0
        self.a_gap = min(0.95, max(0.05, self.a_gap - self.lr_alpha * grad))
        self.log(alpha_hypergrad=grad)

    def state_dict(self) -> dict:
        return {"a_gap": self.a_gap, "lr_alpha": self.lr_alpha}

    def load_state_dict(self, state: dict) -> None:
        self.a_gap = float(state.get("a_gap", self.a_gap))
        self.lr_alpha = float(state.get("lr_alpha", self.lr_alpha))
