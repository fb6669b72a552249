"""Several processes (ranks) in one run, with ``torch.distributed``: what a reproduction calls, and what the runner
uses to set the group up.

A run whose resolved :class:`~suite.spec.Resources` have ``processes > 1`` runs as that many ranks (the runner
spawns them on this machine; on Slurm they are the job's tasks). Every rank calls the reproduction's ``run(cfg,
ctx)`` with ``ctx.device`` its own device (``cuda:LOCAL_RANK`` on GPUs). Inside ``run``::

    from suite import distributed as D

    prompts = D.shard(all_prompts)                       # this rank's items: all_prompts[rank::world]
    rows = [r for part in D.gather(score(prompts)) for r in part]   # every rank's results, rank order
    loss = D.all_mean(loss)                              # a tensor averaged over the ranks
    model = D.wrap(model, "ddp")                         # or "fsdp" (FSDP2 fully_shard)

Every function is the identity (or trivial) when no group is initialised, so the same code runs as one process
(``processes=1``, tests, the rehearsal). The group uses nccl on CUDA and gloo on the CPU, env:// rendezvous
(``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and a timeout on every collective
(``$SUITE_DIST_TIMEOUT_S``, default 1800 s), so that a dead rank cannot hang the others forever.
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 1800.0
ENV_KEYS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")


def initialized() -> bool:
    """Whether a ``torch.distributed`` group is set up in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if initialized() else 1


def is_main() -> bool:
    """Rank 0 (the one that owns the run folder and its record); True when not distributed."""
    return rank() == 0


def local_rank() -> int:
    """The rank on this node (its GPU index); 0 when not distributed."""
    return int(os.environ.get("LOCAL_RANK", "0")) if initialized() else 0


def timeout_s() -> float:
    return float(os.environ.get("SUITE_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))


def env_world_size() -> int:
    """``WORLD_SIZE`` of the environment (the launcher's or Slurm task's rendezvous), 1 when unset."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def shard(seq: Sequence[T]) -> Sequence[T]:
    """This rank's items of ``seq``: ``seq[rank::world]`` (all of it when not distributed)."""
    return seq[rank()::world_size()]


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` when not distributed."""
    if not initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank; ``obj`` itself when not distributed."""
    if not initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks (a new tensor on ``t``'s device); ``t`` when not distributed."""
    if not initialized():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over the ranks (floating point); ``t`` when not distributed."""
    if not initialized():
        return t
    out = t.detach().clone() if t.is_floating_point() else t.detach().double()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def barrier() -> None:
    """Wait for every rank (bounded by the group's timeout); nothing when not distributed."""
    if initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def wrap(model: nn.Module, kind: str = "ddp", *, shard_children: Callable[[nn.Module], bool] | None = None
         ) -> nn.Module:
    """``model`` ready for data-parallel training across the ranks; ``model`` itself when not distributed.

    ``"ddp"``: :class:`~torch.nn.parallel.DistributedDataParallel` (``device_ids`` = the model's GPU on cuda); the
    caller feeds each rank its own shard. ``"fsdp"``: FSDP2 — ``fully_shard`` on every submodule for which
    ``shard_children(module)`` is true (e.g. ``lambda m: isinstance(m, Block)``), innermost first, then on the
    root. The model must already be on ``ctx.device``."""
    if kind not in ("ddp", "fsdp"):
        raise ValueError(f"wrap: kind must be 'ddp' or 'fsdp', got {kind!r}")
    if not initialized():
        return model
    if kind == "ddp":
        param = next(model.parameters(), None)
        on_gpu = param is not None and param.device.type == "cuda"
        return nn.parallel.DistributedDataParallel(model, device_ids=[param.device.index] if on_gpu else None)
    from torch.distributed.fsdp import fully_shard

    if shard_children is not None:
        picked = [m for _, m in model.named_modules() if m is not model and shard_children(m)]
        for m in reversed(picked):  # reversed pre-order: children before their parents
            fully_shard(m)
    return fully_shard(model)


def init(device: torch.device | str) -> torch.device:
    """Join the group the environment describes (env:// rendezvous) and return this rank's device:
    ``cuda:LOCAL_RANK`` on CUDA (nccl), ``device`` otherwise (gloo). With ``WORLD_SIZE`` unset or 1 nothing is
    initialised and ``device`` is returned as is."""
    device = torch.device(device)
    if initialized() or env_world_size() <= 1:
        return device
    missing = [k for k in ENV_KEYS if k not in os.environ]
    if missing:
        raise RuntimeError(f"distributed run: the rendezvous environment lacks {missing}")
    timeout = datetime.timedelta(seconds=timeout_s())
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", init_method="env://", timeout=timeout)
    else:
        dist.init_process_group("gloo", init_method="env://", timeout=timeout)
    return device


def shutdown() -> None:
    """Leave the group (nothing when none is initialised)."""
    if initialized():
        dist.destroy_process_group()


__all__ = ["initialized", "rank", "world_size", "is_main", "local_rank", "shard", "gather", "broadcast", "all_sum",
           "all_mean", "barrier", "wrap", "init", "shutdown", "env_world_size", "timeout_s"]
