"""OPM: On-the-fly Prediction Modulation (Wei, Hu, Du, Wen, TPAMI 2024, §3.2.1, Alg. 1).

What it changes in the loop: the forward pass. Each step the discrepancy ratio ρ^m of every
modality (Eq. 6–7, from the unimodal true-class softmax scores of the batch) sets the drop
probability of that modality (Eq. 8); the features of a dominant modality (ρ^m > 1) are then
zeroed per sample with that probability before fusion, so the weaker modalities decide more of
the prediction and receive more of the gradient.

Paper defaults: q^m for step t+1 comes from ρ^m of step t (``q_from: previous``); every step may
drop (``p_exe: 1``); dropped features are zeroed without rescaling the survivors
(``rescale: none``). The released code (GeWu-Lab/BML_TPAMI2024, models/Classifier.py) differs:
q from the current batch (``q_from: current``), dropping executed at a step with probability 0.7
(``p_exe: 0.7``), every feature divided by 1 − θ with θ the feature-size-weighted mean of the q^m
(``rescale: code``), and no dropping through epoch 5 (``start_epoch: 6``).

The helpers here (unimodal scores with a chosen bias split, ratio/difference discrepancy, the
z(·) map) are shared with the OGM variants in ``mmbalance.methods.ogm``; they cover the paper's
ablations Tab. 14 (bias split γ^m) and Tab. 15 (ratio vs difference, tanh(x − 1) vs sigmoid).
"""

from __future__ import annotations

import torch

from mmbalance.methods.base import METHODS, Method, true_class_scores
from mmbalance.methods.ogm_ge import discrepancy_ratios, float64, like
from mmbalance.models import Output
from mmbalance.models.fusions import ConcatFusion

Z_FUNCTIONS = {
    # z(·) of Eq. 8 / Eq. 11: monotone, maps ρ > 1 into (0, 1) (Tab. 15 compares the two)
    # (on 0-d float64 tensors; torch's tanh may differ from Python's math.tanh in the last bit)
    "tanh": lambda x: torch.tanh(x - 1.0),
    "sigmoid": lambda x: 1.0 / (1.0 + torch.exp(-x)),
}


class HostCopy:
    """A small tensor copied to the host now and read later, without waiting then for the device's
    other queued work: on CUDA a non-blocking copy into pinned memory and an event recorded after
    it, which ``get`` waits for; elsewhere the tensor itself."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.value, self.event = tensor.detach(), None
        if tensor.is_cuda:
            # pinned: a copy into pageable memory would make the host wait for the device here
            self.value = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.value.copy_(tensor.detach(), non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()

    def get(self) -> torch.Tensor:
        """The copy on the host, once it has arrived."""
        if self.event is not None:
            self.event.synchronize()
        return self.value


def require_modalities(method: str, modalities: list[str]) -> None:
    """The discrepancy ratio compares a modality with the others: at least two are needed."""
    if len(modalities) < 2:
        raise ValueError(f"method {method!r} needs at least 2 modalities, got {modalities}")


def check_choice(method: str, cfg: dict, key: str, default: str, choices: tuple[str, ...]) -> None:
    """Raise at construction (not mid-training) when a params option names no known choice."""
    value = cfg.get(key, default)
    if value not in choices:
        raise ValueError(f"method {method!r}: {key} must be one of {', '.join(choices)}; got {value!r}")


def in_epoch_range(cfg: dict, epoch: int) -> bool:
    """``start_epoch`` ≤ epoch ≤ ``end_epoch`` (both inclusive; a missing or null end = no end)."""
    end = cfg.get("end_epoch")
    return int(cfg.get("start_epoch", 0)) <= epoch and (end is None or epoch <= int(end))


def z_value(x: float | torch.Tensor, name: str = "tanh") -> float | torch.Tensor:
    """z(x) of Eq. 8/11: ``tanh`` = tanh(x − 1) (the paper's choice), ``sigmoid`` = sigmoid(x);
    a tensor for a tensor (float64, on its device), a number for a number."""
    if name not in Z_FUNCTIONS:
        raise ValueError(f"unknown z function {name!r}; choices: {', '.join(sorted(Z_FUNCTIONS))}")
    return like(x, Z_FUNCTIONS[name](float64(x)))


def discrepancy(scores: dict[str, torch.Tensor], measure: str = "ratio", inverse: bool = False) -> dict[str, torch.Tensor]:
    """Discrepancy of each modality from its [B] true-class scores s^m.

    ``ratio`` (Eq. 7): ρ^m = 1/(M−1) Σ_{j≠m} S^m / S^j with S^m = Σ_i s_i^m.
    ``difference`` (Tab. 15): ρ^m = 1/(M−1) Σ_{j≠m} (S^m − S^j).
    ``inverse=True`` swaps the roles (how much the others exceed m: 1/(M−1) Σ_{j≠m} S^j / S^m,
    resp. the negated difference); for two modalities the inverse ratio of the weak modality is the
    dominant one's ρ (used by OGM*, which boosts the weak modality). Each value is a 0-d float64
    tensor on the scores' device (see ``discrepancy_ratios``).
    """
    if measure == "ratio":
        if not inverse:
            return discrepancy_ratios(scores)
        sums = {m: s.sum().double() for m, s in scores.items()}
        return {m: sum(sums[j] / sums[m].clamp(min=1e-12) for j in sums if j != m) / (len(sums) - 1) for m in sums}
    if measure == "difference":
        sums = {m: s.sum().double() for m, s in scores.items()}
        sign = -1.0 if inverse else 1.0
        return {m: sign * sum(sums[m] - sums[j] for j in sums if j != m) / (len(sums) - 1) for m in sums}
    raise ValueError(f"unknown discrepancy measure {measure!r}; choices: difference, ratio")


def unimodal_scores(model, out: Output, labels: torch.Tensor, bias_split: list[float] | None = None) -> dict[str, torch.Tensor]:
    """True-class softmax score s_i^m of each modality's share of the prediction (Eq. 6), [B] each.

    ``bias_split`` = None uses ``out.unimodal_logits`` (for the concat head W_m·φ_m + b/M, the
    paper's split). A list [γ^1, …, γ^M] (in model modality order) uses W_m·φ_m + γ^m·b instead
    (Tab. 14); this is defined only for the linear concat head, whose bias b is read as the fused
    logits of all-zero features.
    """
    if bias_split is None:
        return true_class_scores(out, labels)
    mods = list(out.unimodal_logits)
    if not isinstance(model.fusion, ConcatFusion):
        raise ValueError(f"bias_split needs the linear concat head; this model's fusion is {type(model.fusion).__name__}")
    if len(bias_split) != len(mods):
        raise ValueError(f"bias_split has {len(bias_split)} values for the {len(mods)} modalities {mods}")
    with torch.no_grad():
        zeros = {m: f[:1].detach() * 0 for m, f in out.features.items()}
        bias = model.fuse(zeros).logits[0]  # [C]: W·0 + b = b
        shifted = {m: out.unimodal_logits[m].detach() + (float(g) - 1.0 / len(mods)) * bias for m, g in zip(mods, bias_split)}
    return true_class_scores(Output(out.logits, out.features, shifted), labels)


def any_positive(values: list[float | torch.Tensor]) -> bool:
    """Whether some value is > 0: one host read for all the tensors among them (one device)."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if any(v > 0 for v in values if not isinstance(v, torch.Tensor)):
        return True
    return bool(torch.stack(tensors).gt(0).any()) if tensors else False


def drop_probability(rho: float | torch.Tensor, q_base: float = 0.5, lam: float = 0.5, z: str = "tanh") -> float | torch.Tensor:
    """Eq. 8: q = q_base·(1 + λ·z(ρ)) if ρ > 1, else 0; kept within [0, 1] (the paper caps at 1).
    A tensor for a tensor (float64, on its device), a number for a number."""
    r = float64(rho)
    q = (q_base * (1.0 + lam * z_value(r, z))).clamp(min=0.0, max=1.0)
    return like(rho, torch.where(r > 1.0, q, torch.zeros_like(q)))


def drop_masks(q: dict[str, float | torch.Tensor], batch: int, device: torch.device, rescale: str = "none",
               dims: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Per-sample keep masks, each [B] float: 0 = features dropped, else the survivor's scale.

    Each modality m is dropped independently per sample with probability q^m (one vectorised draw
    [M, B]). A sample that would lose every modality keeps the modality with the lowest q (the
    first such in order). Under Eq. 8 this cannot happen (the modality with the smallest batch score
    has ρ ≤ 1, hence q = 0); the guard matters for user-set probabilities. The released code
    instead removes such samples from the loss.

    ``rescale``: ``none`` (paper), ``per_modality`` (survivors of m × 1/(1 − q^m), inverted
    dropout), ``code`` (every feature × 1/(1 − θ), θ = Σ_m D_m q^m / Σ_m D_m, as the released code).
    Everything stays on ``device``: the q^m may be device tensors, and nothing is read back.
    """
    mods = list(q)
    q64 = torch.stack([float64(q[m]).to(device) for m in mods])  # [M]
    probs = q64.float()  # [M]
    keep = torch.rand(len(mods), batch, device=device) >= probs[:, None]  # [M, B], P(keep) = 1 − q
    lost = ~keep.any(dim=0)  # [B] samples with every modality dropped
    safest = torch.arange(len(mods), device=device) == q64.argmin()  # [M]: the first with the lowest q
    keep |= safest[:, None] & lost[None, :]
    if rescale == "none":
        scale = torch.ones(len(mods), device=device)
    elif rescale == "per_modality":
        scale = torch.where(probs < 1.0, 1.0 / (1.0 - probs.clamp(max=1.0 - 1e-6)), torch.ones_like(probs))
    elif rescale == "code":
        d = torch.tensor([float((dims or {}).get(m, 1)) for m in mods], device=device)
        theta = ((d * probs).sum() / d.sum()).double()  # 0-d
        scale = (1.0 / (1.0 - theta).clamp(min=1e-6)).float().expand(len(mods))
    else:
        raise ValueError(f"unknown rescale {rescale!r}; choices: code, none, per_modality")
    return {m: keep[i].to(torch.float32) * scale[i] for i, m in enumerate(mods)}


@METHODS.register("opm")
class OPM(Method):
    """Drop the dominant modality's features per sample with probability q^m (Eq. 8)."""

    acting = {"key": "dropped_*", "noop": 0.0}  # fraction of the batch whose modality m is dropped

    method_name = "opm"
    defaults: dict = {}  # a registered variant's settings; its params block overrides them

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__({**self.defaults, **(cfg or {})}, ctx)
        require_modalities(self.method_name, ctx.modalities)
        for key, default, choices in (("q_from", "previous", ("previous", "current")), ("rescale", "none", ("none", "code", "per_modality")),
                                      ("z", "tanh", tuple(Z_FUNCTIONS)), ("measure", "ratio", ("ratio", "difference"))):
            check_choice(self.method_name, self.cfg, key, default, choices)
        self._q: dict[str, torch.Tensor] = {}  # q for the next step (q_from: previous), 0-d each
        self._q_host: HostCopy | None = None  # the same q^m, [M], copied to the host when computed
        self._rho: dict[str, torch.Tensor] = {}  # ρ of the current batch before dropping, 0-d each
        self._pre_drop_scores: dict[str, torch.Tensor] = {}

    def _probabilities(self, rho: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.cfg
        return {m: drop_probability(r, float(c.get("q_base", 0.5)), float(c.get("lam", 0.5)), c.get("z", "tanh")) for m, r in rho.items()}

    def _step_probabilities(self, rho: dict[str, torch.Tensor]) -> tuple[dict[str, float | torch.Tensor], HostCopy | None]:
        """The q^m to apply at this step, and their host copy when one was started a step earlier
        (q_from: previous; None otherwise); remembers Eq. 8 of this batch's ρ for the next step."""
        q_next = self._probabilities(rho)
        previous = self.cfg.get("q_from", "previous") == "previous"
        if previous:
            q = {m: self._q.get(m, 0.0) for m in q_next}  # paper: q_t from ρ_{t−1} (0 at the first step)
        else:
            q = q_next  # released code: q from this batch
        # q_t reached the host during the previous step (a copy started when it was computed), so
        # deciding whether to draw masks from it waits for nothing on the device
        known = self._q_host if previous else None
        self._q, self._q_host = q_next, HostCopy(torch.stack(list(q_next.values()))) if previous else None
        return q, known

    def _executes(self, q: dict[str, float | torch.Tensor], known: HostCopy | None = None) -> bool:
        """Whether dropping runs at this step: in the epoch range, some q > 0, and the p_exe draw.

        "Some q > 0" is OPM's one host read per step (all the q^m in one comparison): it decides
        whether the masks are drawn, and with them the random stream of the rest of the run. With
        q from the previous step it reads that step's host copy; with q from this batch (the
        released code) it waits for the device."""
        if not in_epoch_range(self.cfg, self.ctx.epoch):
            return False
        positive = bool(known.get().gt(0).any()) if known is not None else any_positive(list(q.values()))
        if not positive:
            return False
        p_exe = float(self.cfg.get("p_exe", 1.0))
        return p_exe >= 1.0 or float(torch.rand(())) < p_exe

    def forward(self, model, inputs, labels) -> Output:
        feats = model.encode(inputs)  # {m: [B, D_m]}
        out = model.fuse(feats)  # undropped pass: Alg. 1 measures ρ_t before dropping
        scores = unimodal_scores(model, out, labels, self.cfg.get("bias_split"))
        self._pre_drop_scores = scores  # {m: [B]}, detached; OPM+OGM modulates gradients from them
        self._rho = discrepancy(scores, self.cfg.get("measure", "ratio"))
        q, known = self._step_probabilities(self._rho)
        keep = drop_masks(q, len(labels), labels.device, self.cfg.get("rescale", "none"), model.feature_dims) if self._executes(q, known) else None
        self._log_step(q, keep)
        if keep is None:
            return out
        # the semantics of model(inputs, keep=…): features multiplied by the [B] mask
        return model.fuse({m: f * keep[m].to(f.dtype).unsqueeze(1) for m, f in feats.items()})

    def _log_step(self, q: dict[str, float | torch.Tensor], keep: dict[str, torch.Tensor] | None) -> None:
        """ρ^m, the q^m in effect (0 outside the epoch range) and the fraction of samples dropped."""
        modulated = in_epoch_range(self.cfg, self.ctx.epoch)
        for m in q:
            frac = (keep[m] == 0).float().mean() if keep is not None else 0.0
            self.log(**{f"rho_{m}": self._rho[m], f"q_{m}": q[m] if modulated else 0.0, f"dropped_{m}": frac})

    def state_dict(self) -> dict:
        return {"q": {m: float(v) for m, v in self._q.items()}}

    def load_state_dict(self, state: dict) -> None:
        self._q = dict(state.get("q", {}))
        self._q_host = None  # the restored q^m are numbers, read without the device


@METHODS.register("opm_code")
class OPMCode(OPM):
    """OPM as the released BML code runs it: q from the current batch, dropping executed with
    probability 0.7 per step, features × 1/(1 − θ), no dropping through epoch 5."""

    method_name = "opm_code"
    defaults = {"q_from": "current", "p_exe": 0.7, "rescale": "code", "start_epoch": 6}
