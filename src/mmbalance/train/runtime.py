"""Where and how a run computes: device (``train.device``), precision (``train.precision``),
channels-last memory format, and moving batches to the device.

CPU fp32 is the reference path and is left untouched (no copies, no autocast), so its results
stay bit-for-bit what they were. bf16 autocast applies on CUDA only (it needs no loss scaler,
so ``after_backward`` hooks see the true gradients); on a CPU the run falls back to fp32.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch

from mmbalance.models import SequenceBatch
from mmbalance.train import distributed as dist

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Runtime:
    """The resolved device and precision of a run."""

    device: torch.device
    bf16: bool

    @property
    def cuda(self) -> bool:
        """True on a GPU (channels-last, pinned memory, autocast)."""
        return self.device.type == "cuda"

    def autocast(self):
        """bf16 autocast on CUDA when asked for, else a no-op context."""
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, inputs: dict, labels: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """Move a batch to the device (nothing to do on the CPU)."""
        if not self.cuda:
            return inputs, labels
        return {m: self._move(x) for m, x in inputs.items()}, labels.to(self.device, non_blocking=True)

    def channels_last(self, inputs: dict) -> dict:
        """On CUDA, 4-D images/spectrograms [B, C, H, W] go channels-last (the CNNs' format)."""
        if not self.cuda:
            return inputs
        return {m: x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.dim() == 4 else x
                for m, x in inputs.items()}

    def _move(self, x):
        if isinstance(x, SequenceBatch):
            return SequenceBatch(x.x.to(self.device, non_blocking=True), x.mask.to(self.device, non_blocking=True))
        return x.to(self.device, non_blocking=True)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on the device; channels-last weights for the 2-D CNN encoders on CUDA."""
        if not self.cuda:
            return model
        return model.to(self.device, memory_format=torch.channels_last)


def resolve(cfg: dict) -> Runtime:
    """``train.device`` (auto|cpu|cuda) and ``train.precision`` (fp32|bf16) → a ``Runtime``.

    Under DDP each process takes the GPU of its ``LOCAL_RANK``. Asking for ``cuda`` without a GPU
    is an error; ``auto`` falls back to the CPU.
    """
    name, precision = str(cfg.get("device", "cpu")), str(cfg.get("precision", "fp32"))
    if name not in DEVICES:
        raise ValueError(f"train.device {name!r} unknown; choices: {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision {precision!r} unknown; choices: {', '.join(PRECISIONS)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but torch sees no CUDA GPU (use 'auto' or 'cpu')")
    use_cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", dist.local_rank()) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if precision == "bf16" and not use_cuda:
        warnings.warn("train.precision bf16 applies on CUDA only; this CPU run uses fp32", stacklevel=2)
    return Runtime(device, precision == "bf16" and use_cuda)
