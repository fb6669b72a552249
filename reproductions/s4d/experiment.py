"""Training and evaluation of one S4D classifier with the suite's training loop (``suite.train.fit``).

Optimiser (§3 / repo configs): AdamW; the SSM parameters (log_dt, A, B) get their own lr and no
weight decay (:func:`suite.models.ssm.ssm_param_groups`), and, as in the official code
(``train.optimizer_param_grouping``: ``bias_weight_decay`` / ``normalization_weight_decay`` false,
src/utils/optim_groups.py ``add_optimizer_hooks``), biases and the parameters of embedding and
BatchNorm / LayerNorm modules get no weight decay either (:func:`param_groups`); cosine schedule with
warmup. The last partial batch of an epoch is dropped (official ``loader.drop_last: True``).
Model selection as in the S4 code: the test accuracy at the evaluation with the best validation
accuracy (when ``eval_every`` > 0; otherwise the final model).

A split is an in-memory ``ArrayDataset`` or, for the full-length LRA Text / Retrieval / Path-X, a
``DiskSplit`` read per batch: training draws its batches through ``suite.data.stream.EpochLoader``
(a ``stream.loader``: reader processes and pinned memory on CUDA), evaluation reads batch by batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from suite.models.ssm import ssm_param_groups
from suite.data import stream
from suite.data.base import ArrayDataset
from suite.data.stream import DiskSplit, EpochLoader
from suite.errors import ConfigError
from suite.train import DATA_ORDER_OFFSET, TrainConfig, fit

Prep = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class OptimConfig:
    epochs: int = 15
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 0.05
    warmup_frac: float = 0.1
    grad_clip: float | None = None
    eval_every: int = 0  # steps; 0 = only at the end
    checkpoint_every: int = 0
    workers: int = 0  # reader processes of a DiskSplit on CUDA
    drop_last: bool = True  # official configs/loader/default.yaml ``drop_last: True``
    schedule_steps: int | None = None  # the cosine's horizon when it is not the training length


Split = ArrayDataset | DiskSplit

# modules whose parameters get no weight decay (official add_optimizer_hooks: nn.Embedding always, the
# normalisation layers when ``normalization_weight_decay`` is false, as in configs/config.yaml)
NO_DECAY_MODULES = (nn.Embedding, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.SyncBatchNorm,
                    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as in the official code: :func:`ssm_param_groups` (log_dt, A, B: own lr, weight decay 0),
    and its ``default`` group split into ``default`` (weight decay ``weight_decay``: linear / conv weights,
    C, D) and ``no-decay`` (weight decay 0: every parameter whose name ends in ``bias`` and every parameter
    of an embedding or normalisation module; official src/utils/optim_groups.py ``add_optimizer_hooks``
    with ``bias_weight_decay`` / ``normalization_weight_decay`` false, configs/config.yaml)."""
    no_decay: set[int] = set()
    for mod in model.modules():
        for pname, p in mod.named_parameters(recurse=False):
            if pname.endswith("bias") or isinstance(mod, NO_DECAY_MODULES):
                no_decay.add(id(p))
    out: list[dict[str, Any]] = []
    for g in ssm_param_groups(model, lr, weight_decay):
        if g["name"] != "default":
            out.append(g)
            continue
        keep = [p for p in g["params"] if id(p) not in no_decay]
        free = [p for p in g["params"] if id(p) in no_decay]
        out += [dict(g, params=ps, **extra) for ps, extra in
                ((keep, {}), (free, {"weight_decay": 0.0, "name": "no-decay"})) if ps]
    return out


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Optimiser steps of one epoch over ``n`` examples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def _batches(ds: Split, batch: int, n: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) of the first ``n`` (default all) examples of ``ds`` in order, ``batch`` at a time."""
    if isinstance(ds, DiskSplit):
        yield from stream.batches(ds, batch, n)
        return
    stop = len(ds) if n is None else min(n, len(ds))
    for i in range(0, stop, batch):
        yield ds.x[i:min(i + batch, stop)], ds.y[i:min(i + batch, stop)]


@torch.no_grad()
def mean_loss(model: nn.Module, ds: Split, prep: Prep, n: int = 512, batch: int = 256,
              device: torch.device | str = "cpu") -> float:
    """Cross-entropy of the first ``n`` examples of ``ds`` in eval mode."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for xb, yb in _batches(ds, batch, n):
        x, y = prep(xb.to(device)), yb.to(device)
        total += float(F.cross_entropy(model(x), y, reduction="sum"))
        count += len(yb)
    model.train(was)
    return total / max(1, count)


@torch.no_grad()
def accuracy(model: nn.Module, ds: Split, prep: Prep, batch: int = 256,
             device: torch.device | str = "cpu") -> float:
    """Fraction of correct argmax predictions on ``ds`` (in chunks of ``batch``)."""
    was = model.training
    model.eval()
    correct = 0
    for xb, yb in _batches(ds, batch):
        x = prep(xb.to(device))
        correct += int((model(x).argmax(-1) == yb.to(device)).sum())
    model.train(was)
    return correct / max(1, len(ds))


def train_classifier(model: nn.Module, train: Split, val: Split, test: Split,
                     opt: OptimConfig, ctx: Any, prep: Prep, name: str) -> dict[str, Any]:
    """Train with AdamW + the official groups (:func:`param_groups`); returns val/test accuracy (test at
    the best val eval) and the train loss (first 512 examples, eval mode) before and after training."""
    if opt.drop_last and len(train) < opt.batch_size:
        raise ConfigError(f"{name}: {len(train)} training examples give no full batch of {opt.batch_size} "
                          f"(the last partial batch is dropped); lower the batch size")
    total = opt.epochs * steps_per_epoch(len(train), opt.batch_size, opt.drop_last)
    tcfg = TrainConfig(epochs=opt.epochs, batch_size=opt.batch_size, lr=opt.lr, optimizer="adamw",
                       weight_decay=opt.weight_decay, schedule="cosine",
                       warmup_steps=int(opt.warmup_frac * total), grad_clip=opt.grad_clip,
                       eval_every=opt.eval_every, checkpoint_every=opt.checkpoint_every, log_every=50,
                       drop_last=opt.drop_last, schedule_steps=opt.schedule_steps)
    groups = param_groups(model, opt.lr, opt.weight_decay)
    dev = ctx.device

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(m(prep(batch[0])), batch[1])

    def eval_fn(m: nn.Module) -> dict[str, float]:
        return {"val_acc": accuracy(m, val, prep, device=dev), "test_acc": accuracy(m, test, prep, device=dev)}

    model.to(dev)
    loss_before = mean_loss(model, train, prep, device=dev)
    if isinstance(train, DiskSplit):  # read from disk per batch; the order from the fit's data-order stream
        gen = ctx.generator(DATA_ORDER_OFFSET)
        data: Any = EpochLoader(train, opt.batch_size, gen, drop_last=opt.drop_last,
                                **stream.loader_options(dev, opt.workers))
        res = fit(model, loss_fn, data, tcfg, ctx=ctx, eval_fn=eval_fn, param_groups=groups, name=name, generator=gen)
    else:
        res = fit(model, loss_fn, (train.x, train.y), tcfg, ctx=ctx, eval_fn=eval_fn, param_groups=groups, name=name)
    best = max(res.evals, key=lambda e: (e["val_acc"], e["step"])) if res.evals else {}
    return {"val_acc": best.get("val_acc", float("nan")), "test_acc": best.get("test_acc", float("nan")),
            "final_test_acc": res.final_eval.get("test_acc", float("nan")),
            "train_loss_before": loss_before, "train_loss_after": mean_loss(model, train, prep, device=dev),
            "steps": res.step,
            "steps_per_s": res.steps_per_s}


__all__ = ["OptimConfig", "param_groups", "steps_per_epoch", "mean_loss", "accuracy", "train_classifier"]
