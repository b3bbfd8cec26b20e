"""Data-parallel training under ``torchrun``: gloo on CPU, NCCL on CUDA.

Each rank computes the meta-gradient of its share of the meta-batch; :func:`average_gradients` all-reduces the
gradients (the mean over ranks equals the gradient of the global meta-batch, since every task loss is a mean over
episodes), :func:`average_buffers` keeps the BatchNorm running statistics identical on every rank, and
:func:`broadcast_module` starts every rank from rank 0's weights. Without ``torchrun`` (no ``WORLD_SIZE``) all of
this is a no-op on one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    """This process's rank, the world size and the device it trains on."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """True on the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world > 1


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when present, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def init(device: str | None = None) -> Context:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(device=pick_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Context(rank, world, dev)


def shutdown(ctx: Context) -> None:
    """Wait for every rank (rank 0 may still be writing files), then leave the process group."""
    if ctx.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(params: Iterable[nn.Parameter], ctx: Context) -> None:
    """Replace every gradient by its mean over ranks (one flat all-reduce).

    Every rank runs the same tasks, so the set of parameters that received a gradient is the same on all ranks.
    """
    if not ctx.distributed:
        return
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def average_buffers(module: nn.Module, ctx: Context) -> None:
    """Mean of the floating-point buffers (BatchNorm running statistics) over ranks."""
    if not ctx.distributed:
        return
    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf /= ctx.world


def broadcast_module(module: nn.Module, ctx: Context) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, 0)


def all_mean(value: float, ctx: Context) -> float:
    """Mean of a scalar over ranks (for logging)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t) / ctx.world
