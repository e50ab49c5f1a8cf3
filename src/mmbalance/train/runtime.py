"""Where and how a run computes: device (``train.device``), precision (``train.precision``),
channels-last memory format, moving batches to the device, assembling them ahead of the step
(``train.prefetch``) and compiling the encoders (``train.compile``).

CPU fp32 is the reference path and is left untouched (no copies, no autocast, no prefetch
thread unless asked for), so its results stay bit-for-bit what they were. bf16 autocast applies
on CUDA only (it needs no loss scaler, so ``after_backward`` hooks see the true gradients); on a
CPU the run falls back to fp32.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import warnings
from collections.abc import Iterable, Iterator
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
        return map_tensors((inputs, labels), lambda t: t.to(self.device, non_blocking=True))

    def channels_last(self, inputs: dict) -> dict:
        """On CUDA, 4-D images/spectrograms [B, C, H, W] go channels-last (the CNNs' format)."""
        if not self.cuda:
            return inputs
        return {m: x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.dim() == 4 else x
                for m, x in inputs.items()}

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on the device; channels-last weights for the 2-D CNN encoders on CUDA."""
        if not self.cuda:
            return model
        return model.to(self.device, memory_format=torch.channels_last)

    def prefetched(self, batches: Iterable, depth: int, pin: bool) -> Iterator:
        """The items of ``batches`` (host-side (inputs, labels, keys) batches), assembled ``depth``
        ahead by a background thread, so the host gathers and pins the next batches while the
        device runs this step; same items, same order (the thread is the only user of the
        batches' random generators). ``pin``: page-locked copies, so that ``to_device``'s
        non-blocking copies really overlap. ``depth`` 0: ``batches`` itself, in this thread."""
        if depth <= 0:
            yield from batches
            return
        yield from _Prefetcher(batches, depth, pin if self.cuda else False)


class _Failure:
    """An exception raised in the prefetch thread, re-raised in the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Prefetcher:
    """A bounded queue filled by a daemon thread; iterating it yields the items, re-raises the
    producer's exception, and stops the thread when the consumer stops early."""

    _END = object()

    def __init__(self, items: Iterable, depth: int, pin: bool) -> None:
        self.items, self.pin = items, pin
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="mmbalance-prefetch", daemon=True)

    def __iter__(self) -> Iterator:
        self.thread.start()
        try:
            while (item := self.queue.get()) is not self._END:
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            self.stop.set()
            self.thread.join(timeout=10.0)

    def _produce(self) -> None:
        try:
            for item in self.items:
                if not self._put(map_tensors(item, torch.Tensor.pin_memory) if self.pin else item):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer, which raises it
            self._put(_Failure(e))

    def _put(self, item) -> bool:
        """Queue ``item`` unless the consumer has stopped; False once it has."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def map_tensors(item, fn):
    """``item`` (a batch: tensors, ``SequenceBatch``es, and dicts / tuples of them) with ``fn``
    applied to each tensor; other values (sample keys) unchanged. One walker for pinning and for
    the move to the device, so both see the same batch structure."""
    if isinstance(item, torch.Tensor):
        return fn(item)
    if isinstance(item, SequenceBatch):
        return SequenceBatch(fn(item.x), fn(item.mask))
    if isinstance(item, dict):
        return {k: map_tensors(v, fn) for k, v in item.items()}
    if isinstance(item, tuple):
        return tuple(map_tensors(v, fn) for v in item)
    return item


def compile_encoders(model: torch.nn.Module, cfg: dict) -> torch.nn.Module:
    """With ``train.compile``, compile each encoder in place (``nn.Module.compile``: parameter
    names and state_dict keys stay the same, so checkpoints and saved models do not change).
    ``train.compile_backend`` (default inductor) and ``train.compile_mode`` (e.g.
    max-autotune) are passed to ``torch.compile``. The encoders hold nearly all the compute; the
    method's own code and the fusion head stay eager. Returns ``model``."""
    if not cfg.get("compile"):
        return model
    options = {"backend": str(cfg.get("compile_backend", "inductor")), "mode": cfg.get("compile_mode")}
    for encoder in model.encoders.values():
        encoder.compile(**options)
    return model


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
