"""Block-importance criteria: data-driven scores at initialisation (SNIP, GraSP; Algorithm 2) and
after training (KL, expectABS, random; Algorithm 1), the per-block aggregation (an implementation
choice the paper leaves open, spec §3) and the selection of the p blocks to remove.

Convention: every function here returns an IMPORTANCE per block (higher = keep). GraSP's raw score
is the opposite (highest GraSP score = least important), so its importance is the negated score.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError, UnknownNameError

from .blocks import removable_blocks

AGGREGATIONS = ("sum", "mean")
INIT_CRITERIA = ("snip", "grasp", "random")
TRAINED_CRITERIA = ("kl", "expectabs", "random")
Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


def block_conv_weights(net: nn.Module) -> list[list[nn.Parameter]]:
    """The conv weights of each block (conv1, conv2 and a projection conv if present)."""
    return [[m.weight for m in b.modules() if isinstance(m, nn.Conv2d)] for b in net.blocks]


def scored_params(net: nn.Module) -> list[nn.Parameter]:
    """Every conv/linear weight (what SNIP/GraSP score; biases and BN parameters are not scored)."""
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return F.cross_entropy(net(x) / temperature, y)


# --------------------------------------------------------------------------- per-weight scores

def snip_scores(net: nn.Module, batches: Batches) -> dict[nn.Parameter, torch.Tensor]:
    """SNIP (Lee et al. 2019): s = |theta * dL/dtheta| at the current weights, L averaged over
    ``batches`` (spec §3). BatchNorm uses batch statistics (train mode), as at training time."""
    params = scored_params(net)
    net.train()
    grads = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        gs = torch.autograd.grad(_loss(net, x, y), params)
        for acc, g in zip(grads, gs):
            acc.add_(g, alpha=1.0 / len(batches))
    return {p: (p.detach() * g).abs() for p, g in zip(params, grads)}


def hessian_gradient_product(net: nn.Module, batches: Batches, params: Sequence[nn.Parameter],
                             temperature: float = 1.0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(g, H g) with g = dL/dtheta and H the Hessian of L (GraSP, Wang et al. 2020, Eq. 8): first
    pass collects g over all batches, second pass differentiates g(theta)^T stop_grad(g) (double
    backprop), so H g = d/dtheta [ g(theta) . g ]."""
    g = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        gs = torch.autograd.grad(_loss(net, x, y, temperature), params)
        for acc, gi in zip(g, gs):
            acc.add_(gi, alpha=1.0 / len(batches))
    hg = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        gs = torch.autograd.grad(_loss(net, x, y, temperature), params, create_graph=True)
        z = sum((gi * gc).sum() for gi, gc in zip(gs, g)) / len(batches)
        for acc, h in zip(hg, torch.autograd.grad(z, params)):
            acc.add_(h)
    return g, hg


def grasp_scores(net: nn.Module, batches: Batches, temperature: float = 1.0,
                 sign: float = 1.0) -> dict[nn.Parameter, torch.Tensor]:
    """GraSP (Wang et al. 2020, Eq. 8): s = -theta * (H g). Removing weight q changes ||g||^2 by
    about 2 s_q, so the HIGHEST s are the least important (their removal preserves gradient flow
    best). ``sign=-1`` flips the convention (TEST-ONLY teeth, spec §7 pitfall)."""
    params = scored_params(net)
    net.train()
    _, hg = hessian_gradient_product(net, batches, params, temperature)
    return {p: -sign * p.detach() * h for p, h in zip(params, hg)}


# --------------------------------------------------------------------------- block aggregation

def aggregate(net: nn.Module, scores: dict[nn.Parameter, torch.Tensor], how: str = "sum") -> torch.Tensor:
    """One number per block from per-weight scores over the block's conv weights (spec §3: the
    paper does not say; ``sum`` is the default, ``mean`` normalises by the block's weight count)."""
    if how not in AGGREGATIONS:
        raise UnknownNameError(f"unknown block aggregation {how!r}; use one of {AGGREGATIONS}")
    out = []
    for ws in block_conv_weights(net):
        tot = sum(float(scores[w].sum()) for w in ws)
        out.append(tot / sum(w.numel() for w in ws) if how == "mean" else tot)
    return torch.tensor(out, dtype=torch.float64)


def init_importance(net: nn.Module, criterion: str, batches: Batches, how: str = "sum",
                    temperature: float = 1.0, generator: torch.Generator | None = None,
                    grasp_sign: float = 1.0) -> torch.Tensor:
    """Block importance at initialisation (Algorithm 2): SNIP sum (low = remove), minus GraSP sum
    (high GraSP = remove), or random."""
    if criterion == "snip":
        return aggregate(net, snip_scores(net, batches), how)
    if criterion == "grasp":
        return -aggregate(net, grasp_scores(net, batches, temperature, grasp_sign), how)
    if criterion == "random":
        return torch.rand(len(net.blocks), generator=generator, dtype=torch.float64)
    raise UnknownNameError(f"unknown init criterion {criterion!r}; use one of {INIT_CRITERIA}")


@torch.no_grad()
def trained_importance(net: nn.Module, criterion: str, x: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Block importance of a TRAINED network (Algorithm 1), eval mode:
    - ``kl``: KL(p_dense || p_without_i) of the class posteriors when block i is skipped;
    - ``expectabs``: E|f_i(y_{i-1})|, the mean absolute output of block i's residual branch
      (our reading of expectABS; it needs no labels);
    - ``random``: uniform scores."""
    n = len(net.blocks)
    if criterion == "random":
        return torch.rand(n, generator=generator, dtype=torch.float64)
    if criterion not in TRAINED_CRITERIA:
        raise UnknownNameError(f"unknown after-training criterion {criterion!r}; use one of {TRAINED_CRITERIA}")
    net.eval()
    ins: list[torch.Tensor] = []
    h = F.relu(net.bn(net.conv(x))) if hasattr(net, "bn") else net.stem(x)
    for b in net.blocks:
        ins.append(h)
        h = b(h)
    if criterion == "expectabs":
        return torch.tensor([float(b.residual(a).abs().mean()) for b, a in zip(net.blocks, ins)],
                            dtype=torch.float64)
    logp = F.log_softmax(net.fc(h.mean((2, 3))), -1)
    out = []
    removable = set(removable_blocks(net))
    for i in range(n):  # skip block i: continue from its input
        if i not in removable:  # shape-changing block: cannot be skipped, never selected
            out.append(float("inf"))
            continue
        z = ins[i]
        for b in list(net.blocks)[i + 1:]:
            z = b(z)
        logq = F.log_softmax(net.fc(z.mean((2, 3))), -1)
        out.append(float((logp.exp() * (logp - logq)).sum(-1).mean()))
    return torch.tensor(out, dtype=torch.float64)


def select_blocks(net: nn.Module, importance: torch.Tensor, p: int) -> list[int]:
    """The p least important REMOVABLE blocks (non-removable blocks are never candidates)."""
    cand = removable_blocks(net)
    if not 0 <= p <= len(cand):
        raise ConfigError(f"cannot remove p={p} blocks: only {len(cand)} are removable; use p <= {len(cand)}")
    imp = importance[cand]
    order = torch.argsort(imp, stable=True)
    return sorted(cand[int(j)] for j in order[:p])


# --------------------------------------------------------------------------- filter scores (C3)

def inner_filter_importance(net: nn.Module, scores: dict[nn.Parameter, torch.Tensor],
                            higher_is_worse: bool) -> list[torch.Tensor]:
    """Per inner filter of each block (conv1 output channel): sum of its conv1 kernel's scores plus
    the matching conv2 input slice (the weights that go with the filter)."""
    out = []
    for b in net.blocks:
        s = scores[b.conv1.weight].sum((1, 2, 3)) + scores[b.conv2.weight].sum((0, 2, 3))
        out.append(-s if higher_is_worse else s)
    return out


def select_filters(importances: list[torch.Tensor], n_filters: int) -> dict[int, list[int]]:
    """The ``n_filters`` globally least important inner filters, keeping >= 1 filter per block."""
    importances = [s.detach().cpu() for s in importances]  # a few hundred scores: rank them on the host
    blk = torch.cat([torch.full((len(s),), i) for i, s in enumerate(importances)])
    fil = torch.cat([torch.arange(len(s)) for s in importances])
    val = torch.cat([s.double() for s in importances])
    best = torch.stack([s.double().argmax() for s in importances])
    protect = fil == best[blk]
    val = torch.where(protect, torch.full_like(val, float("inf")), val)
    if n_filters > int((~protect).sum()):
        raise ConfigError(f"cannot remove {n_filters} filters; at most {int((~protect).sum())}")
    chosen = torch.argsort(val, stable=True)[:n_filters]
    out: dict[int, list[int]] = {}
    for j in chosen.tolist():
        out.setdefault(int(blk[j]), []).append(int(fil[j]))
    return out


LossFn = Callable[[nn.Module], torch.Tensor]


def grad_norm_after_removal(net: nn.Module, batches: Batches, scores: dict[nn.Parameter, torch.Tensor],
                            frac: float, highest: bool) -> float:
    """||dL/dtheta|| after zeroing the fraction ``frac`` of scored weights with the highest (or lowest)
    score (global ranking): the GraSP sign check of spec §7."""
    import copy

    params = scored_params(net)
    flat = torch.cat([scores[p].flatten() for p in params])
    k = max(1, int(frac * flat.numel()))
    thr_idx = torch.topk(flat, k, largest=highest).indices
    mask = torch.ones_like(flat)
    mask[thr_idx] = 0
    clone = copy.deepcopy(net)
    cparams = scored_params(clone)
    off = 0
    with torch.no_grad():
        for p in cparams:
            p.mul_(mask[off:off + p.numel()].view_as(p))
            off += p.numel()
    clone.train()
    g = [torch.zeros_like(p) for p in cparams]
    for x, y in batches:
        for acc, gi in zip(g, torch.autograd.grad(_loss(clone, x, y), cparams)):
            acc.add_(gi, alpha=1.0 / len(batches))
    return float(torch.sqrt(sum((gi ** 2).sum() for gi in g)))
