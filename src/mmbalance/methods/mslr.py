"""MSLR: modality-specific learning rates.

Yao & Mihalcea, "Modality-specific Learning Rates for Effective Multimodal Additive Late-fusion",
Findings of ACL 2022. Each modality's encoder is optimised with its own learning rate
lr·scale_m while the fusion head (and any method module) keeps the base lr: only the optimizer's
parameter groups change. With ``fusion: sum`` (the paper's additive late fusion, and the model
the public code trains) each modality's own classifier joins its encoder's group, as the code
scales ``audio_cls`` with ``audio_net``; the concat head is shared and stays at the base lr.

``strategy: keep`` holds the scales fixed. ``strategy: dynamic`` follows the only public
implementation (AGM_ICCV2023 ``run/CREMAD_main.py``, which also gives the CREMA-D scales 0.9
audio / 1.1 visual): after each epoch, once ``window`` epochs have been seen, scale_m is
multiplied by the latest ratio acc_m / mean(acc_m over the previous ``window`` epochs), acc_m
being the modality's probe accuracy (that code reads the test split; we read validation). The
code scales gradients, which leaves weight decay unscaled; scaling the group lr scales it too.
"""

from __future__ import annotations

from torch import nn

from mmbalance.methods.base import METHODS, Method


def modality_lrs(base_lr: float, modalities: list[str], scales: dict[str, float]) -> dict[str, float]:
    """lr per modality encoder: base_lr·scales[m] (1 for a modality without a scale)."""
    return {m: base_lr * float(scales.get(m, 1.0)) for m in modalities}


def dataset_scales(cfg: dict, dataset: str | None) -> dict[str, float]:
    """``scales`` with ``scales_by_dataset.<dataset>`` merged over it (modality → lr scale)."""
    scales = {str(m): float(s) for m, s in (cfg.get("scales") or {}).items()}
    per = (cfg.get("scales_by_dataset") or {}).get(dataset) or {}
    return {**scales, **{str(m): float(s) for m, s in per.items()}}


def own_head(model, modality: str) -> list:
    """The modality's own classifier when the fusion has one per modality (``sum``: the additive
    late fusion of the MSLR paper; the code scales ``audio_cls`` with ``audio_net``), else none:
    a shared head (``concat``) keeps the base lr."""
    heads = getattr(model.fusion, "heads", None)
    if isinstance(heads, nn.ModuleDict) and modality in heads:
        return [p for p in heads[modality].parameters() if p.requires_grad]
    return []


def dynamic_ratio(acc: float, memory: list[float]) -> float:
    """AGM's MSLR update: the current probe accuracy over the mean of the remembered ones."""
    mean = sum(memory) / len(memory)
    return acc / mean if mean > 0 else 1.0


@METHODS.register("mslr")
class MSLR(Method):
    """Encoder of modality m at lr·scale_m (optionally adapted per epoch); fusion head at lr."""

    acting = {"key": "lr_ratio_*", "noop": 1.0}  # encoder lr / fusion-head lr

    def __init__(self, cfg: dict, ctx) -> None:
        super().__init__(cfg, ctx)
        self.scales = dataset_scales(self.cfg, ctx.dataset)
        self.strategy = self.cfg.get("strategy", "keep")
        if self.strategy not in ("keep", "dynamic"):
            raise ValueError(f"method 'mslr': unknown strategy {self.strategy!r}; choices: dynamic, keep")
        if self.strategy == "keep" and all(self.scales.get(m, 1.0) == 1.0 for m in ctx.modalities):
            # every encoder at the base lr: the run would be Concat under another name
            raise ValueError(f"method 'mslr': no learning-rate scale differs from 1 for the modalities "
                             f"{', '.join(ctx.modalities)} of dataset {ctx.dataset!r}; set methods.mslr.scales "
                             f"or scales_by_dataset.{ctx.dataset}")
        self.window = int(self.cfg.get("window", 5))
        self.ratio = {m: 1.0 for m in ctx.modalities}
        self.memory: dict[str, list[float]] = {m: [] for m in ctx.modalities}

    def param_groups(self, model, cfg: dict) -> list[dict]:
        lrs = modality_lrs(float(cfg["lr"]), model.modalities, self.scales)
        groups = [{"params": model.modality_parameters(m) + own_head(model, m), "lr": lrs[m] * self.ratio.get(m, 1.0),
                   "modality": m} for m in model.modalities]
        encoder_ids = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_ids]
        return groups + [{"params": rest}]  # fusion head and method modules: base lr

    def on_epoch_start(self, epoch: int, trainer) -> None:
        # the last group is the fusion head's (base lr, with the same schedule decay)
        head_lr = trainer.optimizer.param_groups[-1]["lr"]
        for group in trainer.optimizer.param_groups:
            if "modality" in group:
                m = group["modality"]
                self.log(**{f"lr_{m}": group["lr"], f"lr_ratio_{m}": group["lr"] / head_lr if head_lr > 0 else 1.0})

    def on_epoch_end(self, epoch: int, trainer) -> None:
        if self.strategy != "dynamic":
            return
        split = "val" if "val" in trainer.splits else "train"
        probe = trainer.evaluate(split)["probe_acc"]
        trainer.model.train()
        old = dict(self.ratio)
        for m, acc in probe.items():
            mem = self.memory.setdefault(m, [])
            if len(mem) >= self.window:
                self.ratio[m] = dynamic_ratio(acc, mem)
                mem.pop(0)
            mem.append(float(acc))
        lrs = modality_lrs(float(trainer.cfg["lr"]), list(probe), self.scales)
        for group in trainer.optimizer.param_groups:
            m = group.get("modality")
            if m is not None:
                # keep whatever decay the lr schedule has applied so far: lr = base·scale·ratio·decay
                decay = group["lr"] / (lrs[m] * old[m]) if lrs[m] * old[m] > 0 else 1.0
                group["lr"] = lrs[m] * self.ratio[m] * decay

    def state_dict(self) -> dict:
        return {"ratio": dict(self.ratio), "memory": {m: list(v) for m, v in self.memory.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.ratio = dict(state.get("ratio", self.ratio))
        self.memory = {m: list(v) for m, v in state.get("memory", self.memory).items()}
