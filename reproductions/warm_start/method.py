"""Shrink-perturb initialisation and the train-to-99%-train-accuracy rule (Ash & Adams 2020).

- :func:`shrink_perturb` — paper §4 ("shrink, perturb, repeat"): every parameter tensor becomes
  ``lambda * theta_prev + sigma * theta_fresh`` where ``theta_fresh`` is a freshly initialised network of
  the same architecture, so each layer's noise carries that layer's own init scale (spec §3, §7).
  ``lambda=1, sigma=0`` is the warm start, ``lambda=0, sigma=1`` a fresh random initialisation.
- :func:`train_to_accuracy` — the paper's stopping criterion (§2 / the official run.py): train with a new
  optimiser until the training accuracy of an epoch, counted as run.py's ``train()`` counts it
  (:func:`official_batch_weights`), reaches 99 %.
- :data:`Variant` — the deliberately broken methods the teeth runs use.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from suite.train import TrainConfig, TrainState, fit

# "correct": the paper's three schemes. Broken variants (teeth only):
#   sp-no-shrink  the shrink-perturb arm neither shrinks nor perturbs (lambda=1, sigma=0): a plain warm start
#   warm-reinit   the warm-start arm secretly reinitialises from scratch every round
#   sp-reinit     the shrink-perturb arm secretly reinitialises (lambda=0, sigma=1): no savings kept
Variant = Literal["correct", "sp-no-shrink", "warm-reinit", "sp-reinit"]
VARIANTS: tuple[str, ...] = get_args(Variant)

# the three initialisation schemes of the online protocol (paper §3-4): (lambda, sigma) of the shrink-perturb map
SCHEMES = ("random", "warm", "shrink_perturb")


def scheme_coefficients(scheme: str, shrink: float, perturb: float, variant: str = "correct") -> tuple[float, float]:
    """(lambda, sigma) of each scheme; random = (0, 1), warm = (1, 0), shrink-perturb = (shrink, perturb)."""
    if scheme == "random":
        return 0.0, 1.0
    if scheme == "warm":
        return (0.0, 1.0) if variant == "warm-reinit" else (1.0, 0.0)
    if scheme == "shrink_perturb":
        if variant == "sp-no-shrink":
            return 1.0, 0.0
        if variant == "sp-reinit":
            return 0.0, 1.0
        return shrink, perturb
    raise ValueError(f"unknown scheme {scheme!r}; use one of {SCHEMES}")


@torch.no_grad()
def shrink_perturb(prev: nn.Module, make_model: Callable[[], nn.Module], shrink: float, perturb: float,
                   keep_buffers: bool = False) -> nn.Module:
    """Paper §4: a fresh model whose every parameter is ``shrink * p_prev + perturb * p_fresh``.

    Like the official code, the returned network is the freshly built one, so its buffers (BatchNorm running
    statistics) are fresh unless ``keep_buffers`` copies ``prev``'s. Parameters pair up in
    ``model.parameters()`` order (the same architecture).
    """
    fresh = make_model()
    dev = next(prev.parameters()).device
    fresh.to(dev)
    for p_new, p_prev in zip(fresh.parameters(), prev.parameters()):
        p_new.copy_(shrink * p_prev + perturb * p_new)
    if keep_buffers:
        for b_new, b_prev in zip(fresh.buffers(), prev.buffers()):
            b_new.copy_(b_prev)
    return fresh


def official_batch_weights(per_epoch: int) -> list[int]:
    """The weight of each minibatch of an epoch in run.py's training accuracy (``train()``, read, not copied).

    run.py keeps counts ``correct``/``total`` that it resets after the batches with index 10, 20, 30, ... (so
    the windows are batches 0-10, 11-20, 21-30, ...), and after EVERY batch adds the window's running counts
    to ``totalAcc``/``totalSamps``; the epoch's accuracy is ``totalAcc / totalSamps``. Batch ``b`` is therefore
    counted once for every batch from ``b`` to the end of its window (or of the epoch): its weight is
    ``min(window end, per_epoch - 1) - b + 1``, and the accuracy is sum(w * correct_b) / sum(w * size_b).
    """
    out = []
    for b in range(per_epoch):
        end = 10 if b <= 10 else 10 * -(-b // 10)
        out.append(min(end, per_epoch - 1) - b + 1)
    return out


@dataclass
class RoundCost:
    """Training cost of one round (to the stopping criterion)."""

    epochs: int
    steps: int
    seconds: float
    train_acc: float  # training accuracy of the last epoch (the one that met, or failed, the criterion)
    reached: bool


def train_to_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float, batch_size: int,
                      optimizer: str, weight_decay: float, target_acc: float, max_epochs: int,
                      generator: torch.Generator, device: torch.device) -> RoundCost:
    """Train with a NEW optimiser (spec §7) until the epoch's training accuracy >= ``target_acc`` (run.py).

    The training accuracy is counted on the fly over the epoch's minibatches (the model is updated while it is
    measured) with run.py's window weighting (:func:`official_batch_weights`), and checked once per epoch;
    ``max_epochs`` is a safety cap.
    """
    n = x.shape[0]
    per_epoch = -(-n // batch_size)
    weights = official_batch_weights(per_epoch)
    correct = torch.zeros((), device=device)  # weighted hits, on the device (one sync per epoch)
    seen = [0, 0]  # [weighted samples, batch index within the epoch]
    acc_box = [0.0]

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        xb, yb = batch
        out = m(xb)
        w = weights[seen[1] % per_epoch]
        correct.add_((out.detach().argmax(1) == yb).sum(), alpha=w)
        seen[0] += w * yb.shape[0]
        seen[1] += 1
        return F.cross_entropy(out.float(), yb)

    def on_step(st: TrainState) -> None:
        if st.step % per_epoch == 0:  # end of an epoch: check the criterion (one sync per epoch)
            acc_box[0] = float(correct) / max(seen[0], 1)
            correct.zero_()
            seen[0] = seen[1] = 0
            if acc_box[0] >= target_acc:
                st.stop = True

    cfg = TrainConfig(steps=max_epochs * per_epoch, batch_size=batch_size, lr=lr, optimizer=optimizer,
                      momentum=0.0, weight_decay=weight_decay, log_every=0, bf16=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    res = fit(model, loss_fn, (x, y), cfg, on_step=on_step, device=device, generator=generator)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    model.eval()
    return RoundCost(epochs=-(-res.step // per_epoch), steps=res.step, seconds=seconds, train_acc=acc_box[0],
                     reached=acc_box[0] >= target_acc)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> float:
    """Held-out accuracy in eval mode, in chunks, on the model's device (returns a Python float)."""
    model.eval()
    hits = torch.zeros((), device=x.device)
    for i in range(0, x.shape[0], chunk):
        hits += (model(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum()
    return float(hits) / max(x.shape[0], 1)
