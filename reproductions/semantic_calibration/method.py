"""Group calibration (GC+TS, GC+ETS) and the partitioned calibration error (PCE).

Yang, Zhan, Gan, "Beyond Probability Partitions: Calibrating Neural Networks with Semantic Aware
Grouping", NeurIPS 2023. Spec: papers/semantic_calibration.md (§N below). Appendix Eq. N refers to
the appendix PDF of the official repository (ThyrixYang/group_calibration).

Reads top to bottom like the method:
1. the PCE family (Def. 2 / appendix Eq. 3) and its special cases (ECE = confidence-bin partition,
   class-wise ECE, constant grouping);
2. the semantic grouping function: a linear map of the penultimate features to G group logits,
   learned jointly with per-group temperatures through the soft mixture likelihood (§3 step 1);
3. the base calibrators, fitted per hard group of the hold-out split (§3 step 3): temperature
   scaling (TS) and ensemble temperature scaling (ETS, Zhang et al. 2020);
4. the ensemble over partitions (§3 step 4).

Everything is vectorised over a leading batch of (partition) and over groups; the only Python loops
run over partitions while learning them (each is its own L-BFGS problem), over the 7 faces of the
3-simplex (ETS weights) and over bisection iterations.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

# Broken variants (teeth; never the method):
# - "random-groups":  the grouping function is left at its random initialisation (step 1 skipped);
# - "swapped-groups": the calibrator fitted on hold-out group g is applied to the eval examples of
#                     group (g + 1) mod G (calibrators used on the wrong semantic group);
# - "shuffled-groups": hold-out group labels are permuted before the per-group fits (groups
#                     ignored at calibration time; spec §6 "groups ignored at calibration time").
Variant = Literal["paper", "random-groups", "swapped-groups", "shuffled-groups"]
VARIANTS: tuple[str, ...] = ("paper", "random-groups", "swapped-groups", "shuffled-groups")


# --------------------------------------------------------------------------- 1. the PCE family

def confidence_bins(conf: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Bin id of each confidence: bin b holds (b/n, (b+1)/n], 0 goes to bin 0 (spec §4, §7; the same
    convention as ``suite.metrics.calibration`` and torchmetrics' ``calibration_error``)."""
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=conf.dtype, device=conf.device)[1:-1]
    return torch.searchsorted(edges, conf.contiguous(), right=False)


def pce(target: torch.Tensor, pred: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Partitioned calibration error, appendix Def. 2 / Eq. 3 with the mean statistic S and L = |a-b|:

        PCE = sum_P p(P) sum_{G in P} p(G) |S(G) - S(f(G))|,   p(P) = 1/#partitions,

    estimated as in appendix Eq. 6: p(G) = |G|/|D|, S(G) = mean of ``target`` over G, S(f(G)) = mean
    of ``pred`` over G. ``target``/``pred``: (N,) or (P, N) per-example statistics (e.g. correctness
    and confidence for the top-label error); ``groups``: (N,) or (P, N) integer group ids."""
    g = groups if groups.dim() == 2 else groups[None]
    P, N = g.shape
    t = target.expand(P, N).to(torch.float64) if target.dim() == 1 else target.to(torch.float64)
    p = pred.expand(P, N).to(torch.float64) if pred.dim() == 1 else pred.to(torch.float64)
    n_g = int(g.max()) + 1 if g.numel() else 1
    zeros = torch.zeros(P, n_g, dtype=torch.float64, device=g.device)
    # sum over a group of (target - pred) = |G| (S(G) - S(f(G))); p(G)|S(G) - S(f(G))| = |sum| / N
    gap = zeros.scatter_add(1, g, t - p)
    return gap.abs().sum(1).div(N).mean()


def top_label_stats(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Appendix Example 3: S(G) = accuracy, S(f(G)) = mean max probability (prediction = argmax)."""
    conf, pred = probs.max(-1)
    return (pred == labels).to(torch.float64), conf.to(torch.float64)


def ece_as_pce(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """ECE = PCE with the grouping g(x) = Bin(max_k f(x)_k) (appendix Example 1/3, Eq. 6)."""
    correct, conf = top_label_stats(probs, labels)
    return pce(correct, conf, confidence_bins(conf, n_bins))


def classwise_ece_as_pce(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Class-wise ECE = PCE over K partitions, partition u grouped by Bin(f(x)_u) with the u-th
    statistic S = frequency of class u (appendix Example 2, Eq. 7)."""
    K = probs.shape[-1]
    onehot = F.one_hot(labels, K).to(torch.float64).T  # (K, N)
    p = probs.to(torch.float64).T
    return pce(onehot, p, confidence_bins(p, n_bins))


def constant_pce(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Top-label PCE with a constant grouping function (appendix Example 5): |accuracy - mean conf|."""
    correct, conf = top_label_stats(probs, labels)
    return pce(correct, conf, torch.zeros_like(labels))


# --------------------------------------------------------------------------- 2. the grouping function

def group_input(features: torch.Tensor, logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Input of the grouping function: the penultimate features (official WNet), or features and
    logits concatenated (the paper's abstract: "based on deep model features and logits")."""
    if kind == "features":
        return features
    if kind == "features+logits":
        return torch.cat([features, logits], 1)
    raise ValueError(f"group_input={kind!r}; use 'features' or 'features+logits'")


def init_grouping(dim: int, n_groups: int, gen: torch.Generator, dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """W in R^{G x D}, no bias, drawn like torch's nn.Linear default (U(-1/sqrt(D), 1/sqrt(D))), as the
    official WNet; a different draw per partition gives a different partition (§3 step 2)."""
    bound = 1.0 / math.sqrt(dim)
    return ((torch.rand(n_groups, dim, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(device, dtype)


def mixture_log_probs(group_logits: torch.Tensor, logits: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """§3 step 1: log q(y|x) = logsumexp_g [log softmax(W h)_g + log softmax(z / tau_g)_y]  -> (N, K)."""
    log_w = torch.log_softmax(group_logits, 1)[:, :, None]                     # (N, G, 1)
    log_p = torch.log_softmax(logits[:, None, :] / tau[None, :, None], 2)      # (N, G, K)
    return torch.logsumexp(log_w + log_p, 1)


def learn_partition(h: torch.Tensor, z: torch.Tensor, y: torch.Tensor, n_groups: int, gen: torch.Generator, *,
                    weight_decay: float = 0.1, max_iter: int = 100, tau_init: float = 1.5,
                    train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One learned partition on D_val (§3 step 1): minimise mean NLL of the soft mixture plus
    ``weight_decay`` * mean(W^2) (the mean, not the sum, §7) over W and tau with one L-BFGS call
    (strong-Wolfe line search, ``max_iter`` iterations, lr 1; official optimize_group_fn).
    Returns (W, tau); the temperatures learned here are discarded by the method (step 3 refits them).
    ``train=False`` returns the random initialisation (the "random-groups" broken variant)."""
    W = init_grouping(h.shape[1], n_groups, gen, h.dtype, h.device)
    tau = torch.full((n_groups,), tau_init, dtype=h.dtype, device=h.device)
    if not train:
        return W, tau
    W.requires_grad_(True)
    tau.requires_grad_(True)
    opt = torch.optim.LBFGS([tau, W], line_search_fn="strong_wolfe", max_iter=max_iter)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.nll_loss(mixture_log_probs(h @ W.T, z, tau), y) + weight_decay * W.pow(2).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return W.detach(), tau.detach()


def hard_groups(W: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Hard assignment argmax_g (W h) for every partition: W (P, G, D), h (N, D) -> (P, N) (§3 step 3, §7)."""
    return (h @ W.transpose(1, 2)).argmax(-1)


# --------------------------------------------------------------------------- 3. base calibrators, per group

def _per_example(param: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """param (B, G), groups (B, N) -> (B, N): each example's group parameter."""
    return param.gather(1, groups)


def _group_sum(x: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """x (B, N, ...) summed per group -> (B, G, ...)."""
    B, N = groups.shape
    idx = groups.reshape(B, N, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.zeros(B, n_groups, *x.shape[2:], dtype=x.dtype, device=x.device).scatter_add(1, idx, x)


def fit_temperature(z: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, n_groups: int,
                    bounds: tuple[float, float] = (0.01, 100.0), iters: int = 50) -> torch.Tensor:
    """Temperature scaling per group (Guo et al. 2017): tau_g = argmin sum_{i in g} NLL(softmax(z_i / tau)).

    z (N, K), y (N,), groups (B, N) -> tau (B, G). The NLL is convex in beta = 1/tau with derivative
    sum_i (E_{softmax(beta z_i)}[z_i] - z_{i,y_i}), increasing in beta; its root is found by bisection
    on log beta inside ``bounds`` (a group that wants tau -> 0 or inf gets the bound). An empty group
    gets tau = 1 (§7). Same optimum as the official L-BFGS on tau, exactly and for all groups at once."""
    B = groups.shape[0]
    zy = z.gather(1, y[:, None]).squeeze(1)                                    # (N,)
    lo = torch.full((B, n_groups), -math.log(bounds[1]), dtype=z.dtype, device=z.device)
    hi = torch.full((B, n_groups), -math.log(bounds[0]), dtype=z.dtype, device=z.device)
    for _ in range(iters):
        mid = (lo + hi) / 2
        beta = _per_example(mid.exp(), groups)                                 # (B, N)
        p = torch.softmax(beta[..., None] * z, -1)                             # (B, N, K)
        d = (p * z).sum(-1) - zy                                               # dNLL_i / dbeta
        up = _group_sum(d, groups, n_groups) > 0                               # optimum below mid
        hi = torch.where(up, mid, hi)
        lo = torch.where(up, lo, mid)
    tau = (-(lo + hi) / 2).exp()
    count = _group_sum(torch.ones_like(groups, dtype=z.dtype), groups, n_groups)
    return torch.where(count > 0, tau, torch.ones_like(tau))


def _brier_per_group(z: torch.Tensor, onehot: torch.Tensor, tau: torch.Tensor, groups: torch.Tensor,
                     n_groups: int) -> torch.Tensor:
    p = torch.softmax(z / _per_example(tau, groups)[..., None], -1)
    return _group_sum((p - onehot).pow(2).mean(-1), groups, n_groups)


def fit_temperature_mse(z: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, n_groups: int,
                        bounds: tuple[float, float] = (0.05, 5.0), iters: int = 50) -> torch.Tensor:
    """ETS's temperature with the MSE (Brier) loss inside [0.05, 5] (official mix_calibration.py:
    temperature_scaling(loss='mse'), L-BFGS-B with those bounds), by golden-section search per group
    (the loss is unimodal in tau on these problems). Empty group: tau = 1."""
    B = groups.shape[0]
    onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
    a = torch.full((B, n_groups), bounds[0], dtype=z.dtype, device=z.device)
    b = torch.full((B, n_groups), bounds[1], dtype=z.dtype, device=z.device)
    r = (math.sqrt(5) - 1) / 2
    c, d = b - r * (b - a), a + r * (b - a)
    fc = _brier_per_group(z, onehot, c, groups, n_groups)
    fd = _brier_per_group(z, onehot, d, groups, n_groups)
    for _ in range(iters):
        left = fc <= fd                                                        # minimum in [a, d]
        b = torch.where(left, d, b)
        a = torch.where(left, a, c)
        new = torch.where(left, b - r * (b - a), a + r * (b - a))
        fn = _brier_per_group(z, onehot, new, groups, n_groups)
        c, d, fc, fd = (torch.where(left, new, d), torch.where(left, c, new),
                        torch.where(left, fn, fd), torch.where(left, fc, fn))
        # left: the new probe is the lower one (old c becomes d); else it is the upper one (old d becomes c)
    tau = (a + b) / 2
    count = _group_sum(torch.ones_like(groups, dtype=z.dtype), groups, n_groups)
    return torch.where(count > 0, tau, torch.ones_like(tau))


_FACES = ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))


def simplex_qp(Q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """argmin_w w^T Q w - 2 c^T w over the 3-simplex, exactly, batched: Q (..., 3, 3), c (..., 3).

    Enumerates the 7 faces: on face S the equality-constrained minimiser solves the KKT system
    [2 Q_SS 1; 1^T 0][w; l] = [2 c_S; 1] (pseudo-inverse for singular Q, e.g. tau = 1 makes two
    components equal); the best feasible (w >= 0) candidate wins. ETS's weight step (official:
    SLSQP on the same objective from (1, 0, 0))."""
    shp = Q.shape[:-2]
    best_w = torch.zeros(*shp, 3, dtype=Q.dtype, device=Q.device)
    best_f = torch.full(shp, float("inf"), dtype=Q.dtype, device=Q.device)
    for face in _FACES:
        s = len(face)
        idx = torch.tensor(face, device=Q.device)
        Qs = Q.index_select(-2, idx).index_select(-1, idx)
        A = torch.zeros(*shp, s + 1, s + 1, dtype=Q.dtype, device=Q.device)
        A[..., :s, :s] = 2 * Qs
        A[..., :s, s] = 1
        A[..., s, :s] = 1
        rhs = torch.cat([2 * c.index_select(-1, idx), torch.ones(*shp, 1, dtype=Q.dtype, device=Q.device)], -1)
        sol = (torch.linalg.pinv(A) @ rhs[..., None])[..., :s, 0]
        w = torch.zeros(*shp, 3, dtype=Q.dtype, device=Q.device)
        w[..., list(face)] = sol
        ok = (sol >= -1e-10).all(-1) & ((sol.sum(-1) - 1).abs() < 1e-6)
        w = w.clamp_min(0)
        w = w / w.sum(-1, keepdim=True)
        f = (w[..., None, :] @ Q @ w[..., :, None])[..., 0, 0] - 2 * (w * c).sum(-1)
        better = ok & (f < best_f - 1e-15)
        best_f = torch.where(better, f, best_f)
        best_w = torch.where(better[..., None], w, best_w)
    return best_w


def ets_components(z: torch.Tensor, tau: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The three ETS members per example: softmax(z/tau_g), softmax(z), uniform -> (B, N, 3, K)."""
    p0 = torch.softmax(z / _per_example(tau, groups)[..., None], -1)
    p1 = torch.softmax(z, -1).expand_as(p0)
    p2 = torch.full_like(p0, 1.0 / z.shape[-1])
    return torch.stack([p0, p1, p2], -2)


def fit_ets(z: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, n_groups: int,
            loss: str = "mse") -> tuple[torch.Tensor, torch.Tensor]:
    """Ensemble temperature scaling per group (Zhang et al. 2020; official ets_calibrate): tau fitted
    with ``loss`` ('mse' = the official default, or 'ce') inside [0.05, 5], then simplex weights w of
    p = w0 softmax(z/tau) + w1 softmax(z) + w2 / K minimising the MSE. Returns tau (B, G), w (B, G, 3);
    an empty group gets w = (0, 1, 0), i.e. the uncalibrated softmax."""
    if loss == "mse":
        tau = fit_temperature_mse(z, y, groups, n_groups)
    elif loss == "ce":
        tau = fit_temperature(z, y, groups, n_groups, bounds=(0.05, 5.0))
    else:
        raise ValueError(f"ets loss {loss!r}; use 'mse' or 'ce'")
    comps = ets_components(z, tau, groups)                                      # (B, N, 3, K)
    onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
    K = z.shape[1]
    count = _group_sum(torch.ones_like(groups, dtype=z.dtype), groups, n_groups)  # (B, G)
    Q = _group_sum(comps @ comps.transpose(-1, -2) / K, groups, n_groups)       # (B, G, 3, 3)
    c = _group_sum((comps * onehot[None, :, None, :]).sum(-1) / K, groups, n_groups)
    safe = count.clamp_min(1)[..., None]
    w = simplex_qp(Q / safe[..., None], c / safe)
    w = torch.where((count > 0)[..., None], w, torch.tensor([0.0, 1.0, 0.0], dtype=z.dtype, device=z.device))
    return torch.where(count > 0, tau, torch.ones_like(tau)), w


def apply_ts(z: torch.Tensor, tau: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """softmax(z / tau_{g(x)}) -> (B, N, K)."""
    return torch.softmax(z / _per_example(tau, groups)[..., None], -1)


def apply_ets(z: torch.Tensor, tau: torch.Tensor, w: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    comps = ets_components(z, tau, groups)                                      # (B, N, 3, K)
    wn = w.gather(1, groups[..., None].expand(*groups.shape, 3))                # (B, N, 3)
    return (wn[..., None] * comps).sum(-2)


# --------------------------------------------------------------------------- 4. group calibration

def calibration_groups(ho_groups: torch.Tensor, ev_groups: torch.Tensor, n_groups: int, variant: str,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Groups used to fit (hold-out) and to apply (eval) the per-group calibrators, with the broken
    variants' changes: "shuffled-groups" permutes the hold-out group labels (the fit ignores the
    grouping), "swapped-groups" applies group g's calibrator to eval group (g + 1) mod G."""
    if variant == "shuffled-groups":
        perm = torch.argsort(torch.rand(ho_groups.shape, generator=gen), 1).to(ho_groups.device)
        ho_groups = ho_groups.gather(1, perm)
    if variant == "swapped-groups":
        ev_groups = (ev_groups + 1) % n_groups
    return ho_groups, ev_groups


def group_calibrate(z_ho: torch.Tensor, y_ho: torch.Tensor, g_ho: torch.Tensor, z_ev: torch.Tensor,
                    g_ev: torch.Tensor, n_groups: int, base: str = "ts", ets_loss: str = "mse") -> torch.Tensor:
    """§3 steps 3-4: for each partition (leading dim of g_ho (P, N_ho) / g_ev (P, N_ev)) fit the base
    calibrator on each hard group of the hold-out split, apply it to the same group of the eval split,
    and average the calibrated probabilities over partitions -> (N_ev, K)."""
    if base == "ts":
        tau = fit_temperature(z_ho, y_ho, g_ho, n_groups)
        return apply_ts(z_ev, tau, g_ev).mean(0)
    if base == "ets":
        tau, w = fit_ets(z_ho, y_ho, g_ho, n_groups, ets_loss)
        return apply_ets(z_ev, tau, w, g_ev).mean(0)
    raise ValueError(f"base calibrator {base!r}; use 'ts' or 'ets'")
