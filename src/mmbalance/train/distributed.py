"""PyTorch DDP plumbing for the one training loop: process group, rank helpers and collectives.

A run is distributed when ``torchrun`` started it (``WORLD_SIZE`` > 1 in the environment).
Every helper is the identity in a single process, so the single-process path is unchanged.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """True inside a process that ``torchrun`` started (it sets ``LOCAL_RANK``/``WORLD_SIZE``)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch_under_torchrun(script: str, nproc: int) -> None:
    """With ``nproc`` > 1 and outside torchrun, replace this process by ``torchrun --standalone
    --nproc_per_node nproc`` running ``script`` with this process's arguments (a stage's main
    re-executing itself as ``nproc`` DDP ranks); otherwise return and run as this process."""
    if nproc <= 1 or launched_by_torchrun():
        return
    # "--": the script's own options are not torchrun's (it would take --run for its --run-path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "--",
           os.path.abspath(script), *sys.argv[1:]]
    sys.stdout.flush()
    os.execv(sys.executable, cmd)


def init(device: torch.device) -> None:
    """Join the process group torchrun set up: NCCL for CUDA devices, gloo on CPU."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) < 2 or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=30))


def shutdown() -> None:
    """Leave the process group (end of the stage)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Number of processes (1 outside DDP)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's global rank: the process group's, else torchrun's ``RANK`` (a rank whose
    group is already shut down, at the end of a stage, is still that rank), else 0."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def local_rank() -> int:
    """This process's index on its node (selects its GPU)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Rank 0 writes results, checkpoints, models and curves (also after the group is shut down)."""
    return rank() == 0


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable, any size), in rank order; ``[obj]`` outside DDP."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor of any leading length from every rank ([N_r, ...] → [Σ N_r, ...]).

    Used where a method's statistic must be the same on every rank (e.g. GMM-AL's gaps before
    its fit); the result is on ``t``'s device, rows in rank order.
    """
    if world_size() == 1:
        return t
    parts = all_gather_objects(t.detach().cpu())
    return torch.cat(parts).to(t.device)


def all_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` holds on every rank (streamed epochs stop together when one rank runs dry)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def average_gradients(params) -> None:
    """Average ``.grad`` over ranks in place.

    DDP has already averaged the raw gradients during backward; this second average runs only
    after a method's ``after_backward`` changed them with coefficients from the rank's own
    sub-batch, so every replica takes the same optimizer step (replicas never drift apart).
    """
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
