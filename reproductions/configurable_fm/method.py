"""The emergent-brick analysis of Xiao et al. (2024), spec §3, for any model whose FFNs end in a
down-projection ``W_down``.

The "neuron activation" a_i(t) of FFN unit i at token t is the input of ``W_down`` (spec §3): for a
ReLU FFN ``relu(W1 x + b1)``, for BERT's FFN ``gelu(W1 x + b1)``, for a gated FFN
``act(W_gate x) * (W_up x)``. One forward pre-hook per ``W_down`` reads it (capture) or multiplies
it by a 0/1 mask (ablation, spec §3.4: "zero the units in N_T (mask a_i = 0)"), so the same code
serves the tiny LM, the MiniLM encoder and a Hugging Face LLM.

1. Sparsity (§3.1): per token, the fraction of units with |a_i| > tau * max_j |a_j|, and the smallest
   fraction of units carrying ``mass`` (90%) of sum_j |a_j|; averaged over tokens and layers.
2. Specialisation (§3.2): f_i(T) = mean_t 1[|a_i(t)| > thr_i], thr_i = per-neuron ``pct`` percentile
   over a neutral corpus; selectivity s_i(T) = f_i(T) - max_{T' != T} f_i(T'); N_T = top-q of s(T).
3. Partitions (§3.3): Jaccard overlap of the N_T; k-means of the units' f_i(.) profiles.
4. Causal test (§3.4): effect matrix Delta[T, T'] = quality of T' unmasked - with N_T masked; controls:
   random units of equal count per layer (several draws), top-q units by weight norm (spec §4).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Literal, Sequence

import torch
from torch import nn

# TEETH ONLY, deliberately broken analyses (README "Teeth"):
#   untrained        the analysed models are untrained: the tiny LM skips training, MiniLM is re-initialised
#   shuffled-labels  the task labels of the analysed sequences are permuted before f_i(T) is counted
#   least-selective  N_T is the q% of units with the LOWEST selectivity for T
Variant = Literal["correct", "untrained", "shuffled-labels", "least-selective"]
VARIANTS: tuple[str, ...] = ("correct", "untrained", "shuffled-labels", "least-selective")


class FFNHooks:
    """Forward pre-hooks on the down-projections ``downs`` (one per layer).

    ``capture = True``: each forward appends the activation a (..., units) of every layer to
    ``self.acts[layer]``. ``masks``: per layer a (units,) 0/1 tensor multiplied into a (or None)."""

    def __init__(self, downs: Sequence[nn.Module]) -> None:
        self.downs = list(downs)
        self.capture = False
        self.acts: list[list[torch.Tensor]] = [[] for _ in self.downs]
        self.masks: list[torch.Tensor | None] = [None] * len(self.downs)
        self._handles = [d.register_forward_pre_hook(self._hook(i)) for i, d in enumerate(self.downs)]

    def _hook(self, layer: int):
        def fn(module: nn.Module, args: tuple[torch.Tensor, ...]):
            a = args[0]
            if self.capture:
                self.acts[layer].append(a.detach())
            m = self.masks[layer]
            if m is not None:
                return (a * m.to(device=a.device, dtype=a.dtype),) + tuple(args[1:])
            return None
        return fn

    def pop(self) -> list[torch.Tensor]:
        """The captured activations of the last forward(s), one (..., units) tensor per layer."""
        out = [torch.cat(a, 0) if len(a) > 1 else a[0] for a in self.acts]
        self.acts = [[] for _ in self.downs]
        return out

    @contextlib.contextmanager
    def masked(self, mask: torch.Tensor | None) -> Iterator[None]:
        """Zero the units where ``mask`` (layers, units) bool is True for the duration of the block."""
        old = self.masks
        if mask is not None:
            self.masks = [(~mask[i]).float() for i in range(len(self.downs))]
        try:
            yield
        finally:
            self.masks = old

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


# --------------------------------------------------------------------------- 1. sparsity

def token_sparsity(a: torch.Tensor, tau: float = 0.1, mass: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token (rows of ``a`` (N, units)): (fraction of units with |a_i| > tau * max_j |a_j|,
    smallest fraction of units whose |a| sum to ``mass`` of the total) - spec §3.1, both in [0, 1]."""
    x = a.abs().float()
    u = x.shape[-1]
    mx = x.max(-1, keepdim=True).values
    rel = (x > tau * mx).float().mean(-1)
    srt = x.sort(-1, descending=True).values
    cum = srt.cumsum(-1)
    total = cum[..., -1:]
    # number of largest units needed: first k with cum_k >= mass * total (k >= 1)
    k = (cum < mass * total - 1e-12 * total).sum(-1) + 1
    k = torch.where(total.squeeze(-1) > 0, k, torch.full_like(k, u))
    return rel, k.float() / u


# --------------------------------------------------------------------------- 2. specialisation

def neuron_thresholds(a: torch.Tensor, pct: float = 0.9) -> torch.Tensor:
    """Per-neuron ``pct`` quantile of |a| over the neutral corpus' tokens: a (N, layers, units) -> (layers, units)."""
    x = a.abs().float()
    k = max(1, min(x.shape[0], math.ceil(pct * x.shape[0])))
    return x.kthvalue(k, dim=0).values


def activation_frequency(a: torch.Tensor, labels: torch.Tensor, n_tasks: int, thr: torch.Tensor) -> torch.Tensor:
    """f_i(T) = mean over T's tokens of 1[|a_i(t)| > thr_i] (spec §3.2): a (N, L, U), labels (N,) -> (K, L, U)."""
    hit = (a.abs().float() > thr).float().flatten(1)
    cnt = torch.zeros(n_tasks, hit.shape[1], device=hit.device).index_add_(0, labels, hit)
    n = torch.bincount(labels, minlength=n_tasks).clamp_min(1).float()
    return (cnt / n[:, None]).view(n_tasks, *a.shape[1:])


def selectivity(f: torch.Tensor) -> torch.Tensor:
    """s_i(T) = f_i(T) - max_{T' != T} f_i(T') (spec §3.2): f (K, ...) -> s (K, ...)."""
    if f.shape[0] < 2:
        raise ValueError("selectivity needs at least two tasks")
    top2 = f.topk(2, dim=0)
    best, second, arg = top2.values[0], top2.values[1], top2.indices[0]
    k = torch.arange(f.shape[0]).view(-1, *([1] * (f.dim() - 1)))
    other_max = torch.where(k == arg, second, best)
    return f - other_max


def n_select(units: int, q: float) -> int:
    """Units per layer in N_T: round(q * units), at least 1 (q = 5% of 256 -> 13, spec §6)."""
    return max(1, int(round(q * units)))


def top_units(score: torch.Tensor, q: float, lowest: bool = False) -> torch.Tensor:
    """Boolean sets: the round(q * units) highest (``lowest``: lowest) scores per layer; score (K, L, U) -> (K, L, U)."""
    n = n_select(score.shape[-1], q)
    idx = score.topk(n, dim=-1, largest=not lowest).indices
    return torch.zeros_like(score, dtype=torch.bool).scatter_(-1, idx, True)


def random_units(n_draws: int, layers: int, units: int, q: float, gen: torch.Generator) -> torch.Tensor:
    """``n_draws`` random sets of round(q * units) units per layer: (n_draws, L, U) bool."""
    n = n_select(units, q)
    idx = torch.rand(n_draws, layers, units, generator=gen).argsort(-1)[..., :n]
    return torch.zeros(n_draws, layers, units, dtype=torch.bool).scatter_(-1, idx, True)


def weight_norm_units(downs: Sequence[nn.Module], q: float) -> torch.Tensor:
    """Control of spec §4: the top-q units per layer by the norm of their ``W_down`` column: (1, L, U)."""
    norms = torch.stack([_down_weight(d).float().norm(dim=0).cpu() for d in downs])
    return top_units(norms[None], q)


def _down_weight(d: nn.Module) -> torch.Tensor:
    """W_down as (out, units) (nn.Linear; HF GPT-2's Conv1D stores it transposed)."""
    w = d.weight.detach()
    return w.t() if type(d).__name__ == "Conv1D" else w


# --------------------------------------------------------------------------- 3. partitions

def jaccard(sets: torch.Tensor) -> torch.Tensor:
    """Pairwise Jaccard overlap of the K sets (K, ...) bool -> (K, K)."""
    x = sets.flatten(1).float()
    inter = x @ x.t()
    size = x.sum(1)
    union = size[:, None] + size[None, :] - inter
    return inter / union.clamp_min(1)


def mean_offdiag(m: torch.Tensor) -> float:
    k = m.shape[0]
    return float((m.sum() - m.diagonal().sum()) / max(1, k * (k - 1)))


def kmeans(x: torch.Tensor, k: int, gen: torch.Generator, iters: int = 50) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding on the rows of x (N, D): cluster index (N,)."""
    n = x.shape[0]
    cent = x[torch.randint(n, (1,), generator=gen)]
    for _ in range(1, k):
        d = torch.cdist(x, cent).min(1).values ** 2
        p = d / d.sum() if d.sum() > 0 else torch.full_like(d, 1.0 / n)
        cent = torch.cat([cent, x[torch.multinomial(p, 1, generator=gen)]])
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        new = torch.cdist(x, cent).argmin(1)
        if _ > 0 and torch.equal(new, assign):
            break
        assign = new
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        cnt = torch.bincount(assign, minlength=k).float()
        cent = torch.where(cnt[:, None] > 0, sums / cnt.clamp_min(1)[:, None], cent)
    return assign


def cluster_purity(sets: torch.Tensor, assign: torch.Tensor, k: int) -> torch.Tensor:
    """For each set (K, L, U) bool: the share of its units in its most common cluster (assign over L*U units)."""
    x = sets.flatten(1).float()
    onehot = torch.nn.functional.one_hot(assign, k).float()
    per = x @ onehot  # (K, clusters)
    return per.max(1).values / x.sum(1).clamp_min(1)


# --------------------------------------------------------------------------- 4. causal test

def effect_matrix(base: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Delta[m, T'] = base[T'] - masked[m, T'] (the drop in quality of task T' under mask m)."""
    return base[None, :] - masked


def ablation_summary(delta: torch.Tensor, random_delta: torch.Tensor, floor: float) -> dict[str, float]:
    """Spec §4 selectivity index diag(Delta) / mean(offdiag(Delta)) and the comparison with random masks.

    ``delta`` (K, K): rows are the masks N_T, columns the evaluated tasks; ``random_delta`` (R, K).
    Ratios divide by max(denominator, ``floor``) so that a vanishing control does not give infinity."""
    k = delta.shape[0]
    diag = delta.diagonal()
    off = (delta.sum(1) - diag) / max(1, k - 1)  # mean drop of the other tasks under N_T
    rnd = random_delta.mean(0)  # mean over draws, per task
    per_task_index = diag / off.clamp_min(floor)
    per_task_vs_random = diag / rnd.clamp_min(floor)
    return {
        "diag_drop": float(diag.mean()),
        "offdiag_drop": float(off.mean()),
        "random_drop": float(rnd.mean()),
        "selectivity_index": float(diag.mean() / max(float(off.mean()), floor)),
        "vs_random": float(diag.mean() / max(float(rnd.mean()), floor)),
        "min_task_index": float(per_task_index.min()),
        "min_task_vs_random": float(per_task_vs_random.min()),
        "diag_is_row_max": float((delta.argmax(1) == torch.arange(k)).float().mean()),
    }
