"""A fine-grained mixture-of-experts FFN built from a dense FFN (Dynamic-DINO, Lu et al. ICCV 2025, §3;
spec §3). Self-contained, shareable piece: any paper that upcycles a dense FFN into a sparse MoE
(granularity decomposition, function-preserving initialisation, top-K routing, Switch load balancing,
routing statistics) can use it; it depends on torch only.

Dense FFN: F(x) = W2 act(W1 x + b1) + b2, W1: (D_h, d), W2: (d, D_h).
Granularity decomposition with N copies and granularity k: E = N*k experts of hidden width D_h/k;
expert e = (copy c, slice j) holds W1[S_j], b1[S_j], W2[:, S_j] (pre-trained weight allocation); b2 is
kept once, outside the experts (spec §7). Router g = W_r x + b_r (E logits), top-K experts with K = k,
gates = K * softmax over the K chosen logits (so equal gates are 1):
    y = b2 + sum_{e in topK(x)} K * softmax_e * W2_e act(W1_e x + b1_e).
Router initialisation (spec §3, our concrete rule; the paper's exact rule is not public): W_r = 0,
b_r(c, j) = -c * delta, so at step 0 every token picks copy 0's k slices with equal gates and y == F(x).

``forward`` evaluates all E experts' hidden units in one matmul and zeroes the unselected ones through
their gates (fast on CPU and GPU, identical numbers); ``forward_sparse`` runs only the selected experts
(loop over experts, not samples) and is checked equal to it. Activated FFN parameters per token are
``activated_params()`` = those of the dense FFN (k experts of D_h/k units).
"""
from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

ExpertInit = Literal["allocate", "random"]
RouterInit = Literal["preserve", "random"]


class FineGrainedMoE(nn.Module):
    """Top-K MoE FFN with ``n_copies * granularity`` experts of width ``hidden // granularity``.

    Parameters are stored concatenated over experts: ``w1`` (E*h, d), ``b1`` (E*h), ``w2`` (d, E*h),
    ``b2`` (d); expert ``e = c * k + j`` owns rows/columns ``e*h : (e+1)*h``.
    ``gate_scale``: multiply the softmax gates by K (spec §3; without it the layer outputs F(x)/K at init).
    ``last`` holds the routing of the latest forward (indices (T, K), router probabilities (T, E)) for
    the load-balancing loss and the routing statistics.
    """

    def __init__(self, dim: int, hidden: int, n_copies: int, granularity: int, top_k: int | None = None,
                 act: Callable[[torch.Tensor], torch.Tensor] | None = None, gate_scale: bool = True,
                 delta: float = 1e-3) -> None:
        super().__init__()
        if hidden % granularity:
            raise ValueError(f"FFN hidden width {hidden} is not divisible by granularity {granularity}")
        self.dim, self.hidden, self.n, self.k = dim, hidden, n_copies, granularity
        self.top_k = granularity if top_k is None else top_k
        self.e, self.h = n_copies * granularity, hidden // granularity
        self.act = act if act is not None else nn.GELU()
        self.gate_scale, self.delta = gate_scale, delta
        self.w1 = nn.Parameter(torch.empty(self.e * self.h, dim))
        self.b1 = nn.Parameter(torch.empty(self.e * self.h))
        self.w2 = nn.Parameter(torch.empty(dim, self.e * self.h))
        self.b2 = nn.Parameter(torch.zeros(dim))
        self.router = nn.Linear(dim, self.e)
        self.last: dict[str, torch.Tensor] = {}
        self.reset_experts(None)
        self.reset_router("random")

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def reset_experts(self, gen: torch.Generator | None) -> None:
        """Fresh experts (nn.Linear's default init, per expert fan-in): the no-allocation baseline."""
        b1_bound, b2_bound = 1 / math.sqrt(self.dim), 1 / math.sqrt(self.h)
        dev = self.w1.device
        self.w1.copy_(_uniform(self.w1.shape, b1_bound, gen).to(dev))
        self.b1.copy_(_uniform(self.b1.shape, b1_bound, gen).to(dev))
        self.w2.copy_(_uniform(self.w2.shape, b2_bound, gen).to(dev))
        self.b2.zero_()

    @torch.no_grad()
    def allocate(self, fc1: nn.Linear, fc2: nn.Linear) -> None:
        """Pre-trained weight allocation (spec §3): expert (c, j) <- slice S_j of the dense FFN, every copy c."""
        w1, b1 = fc1.weight.detach(), fc1.bias.detach() if fc1.bias is not None else torch.zeros(self.hidden)
        w2, b2 = fc2.weight.detach(), fc2.bias.detach() if fc2.bias is not None else torch.zeros(self.dim)
        if w1.shape != (self.hidden, self.dim) or w2.shape != (self.dim, self.hidden):
            raise ValueError(f"dense FFN shapes {tuple(w1.shape)}, {tuple(w2.shape)} do not match MoE "
                             f"(hidden {self.hidden}, dim {self.dim})")
        # the slices S_1..S_k are contiguous, so copy c is the whole dense FFN in expert order c*k .. c*k+k-1
        self.w1.copy_(w1.repeat(self.n, 1).to(self.w1))
        self.b1.copy_(b1.repeat(self.n).to(self.b1))
        self.w2.copy_(w2.repeat(1, self.n).to(self.w2))
        self.b2.copy_(b2.to(self.b2))

    @torch.no_grad()
    def reset_router(self, mode: RouterInit, gen: torch.Generator | None = None, noise: float = 0.0) -> None:
        """``preserve``: W_r = noise * N(0, 1) (0 by default), b_r(c, j) = -c * delta: copy 0's k slices win
        at step 0 (spec §3). ``random``: nn.Linear's default init (sparse upcycling with a random router)."""
        dev = self.router.weight.device
        if mode == "preserve":
            w = torch.randn(self.router.weight.shape, generator=gen) * noise if noise > 0 else \
                torch.zeros(self.router.weight.shape)
            copy = torch.arange(self.e) // self.k
            self.router.weight.copy_(w.to(dev))
            self.router.bias.copy_((-copy.float() * self.delta).to(dev))
        elif mode == "random":
            bound = 1 / math.sqrt(self.dim)
            self.router.weight.copy_(_uniform(self.router.weight.shape, bound, gen).to(dev))
            self.router.bias.copy_(_uniform(self.router.bias.shape, bound, gen).to(dev))
        else:
            raise ValueError(f"router init {mode!r}: use 'preserve' or 'random'")

    @classmethod
    def from_dense(cls, fc1: nn.Linear, fc2: nn.Linear, act: Callable[[torch.Tensor], torch.Tensor],
                   n_copies: int, granularity: int, top_k: int | None = None, experts: ExpertInit = "allocate",
                   router: RouterInit = "preserve", gate_scale: bool = True, delta: float = 1e-3,
                   router_noise: float = 0.0, gen: torch.Generator | None = None) -> "FineGrainedMoE":
        moe = cls(fc1.in_features, fc1.out_features, n_copies, granularity, top_k, act, gate_scale, delta)
        moe.to(device=fc1.weight.device, dtype=fc1.weight.dtype)
        if experts == "allocate":
            moe.allocate(fc1, fc2)
        elif experts == "random":
            moe.reset_experts(gen)
        else:
            raise ValueError(f"expert init {experts!r}: use 'allocate' or 'random'")
        moe.reset_router(router, gen, router_noise)
        return moe

    # ------------------------------------------------------------------ routing and forward
    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(top-K indices (T, K), gates (T, K), router probabilities over all E (T, E)) for flat x (T, d)."""
        logits = self.router(x).float()
        top, idx = logits.topk(self.top_k, dim=-1)
        gates = torch.softmax(top, dim=-1)  # softmax over the K chosen logits (spec §7), not over all E
        if self.gate_scale:
            gates = gates * self.top_k
        return idx, gates, torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.dim)
        idx, gates, probs = self.route(flat)
        self.last = {"idx": idx.detach(), "probs": probs}
        dense_gates = torch.zeros(flat.shape[0], self.e, device=x.device, dtype=gates.dtype)
        dense_gates = dense_gates.scatter(1, idx, gates).to(flat.dtype)
        hid = self.act(F.linear(flat, self.w1, self.b1)).view(-1, self.e, self.h)
        hid = (hid * dense_gates[:, :, None]).view(-1, self.e * self.h)
        return F.linear(hid, self.w2, self.b2).view(shape)

    @torch.no_grad()
    def forward_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """Only the selected experts run (the compact subnet of inference): loop over experts."""
        shape = x.shape
        flat = x.reshape(-1, self.dim)
        idx, gates, _ = self.route(flat)
        out = self.b2.expand(flat.shape[0], -1).clone()
        for e in range(self.e):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            rows = slice(e * self.h, (e + 1) * self.h)
            h = self.act(F.linear(flat[tok], self.w1[rows], self.b1[rows]))
            out.index_add_(0, tok, F.linear(h, self.w2[:, rows]) * gates[tok, slot, None].to(flat.dtype))
        return out.view(shape)

    # ------------------------------------------------------------------ accounting
    def activated_params(self) -> int:
        """FFN parameters one token uses: K experts (W1_e, b1_e, W2_e) + b2 (router excluded)."""
        return self.top_k * (2 * self.h * self.dim + self.h) + self.dim

    def total_params(self) -> int:
        return self.e * (2 * self.h * self.dim + self.h) + self.dim

    def balance_loss(self) -> torch.Tensor:
        """Switch-style load balancing E * sum_e f_e P_e (f_e: share of routed slots, P_e: mean router prob)."""
        idx, probs = self.last["idx"], self.last["probs"]
        f = torch.bincount(idx.flatten(), minlength=self.e).float() / idx.numel()
        return self.e * (f * probs.mean(0)).sum()


def dense_params(fc1: nn.Linear, fc2: nn.Linear) -> int:
    return sum(p.numel() for p in (*fc1.parameters(), *fc2.parameters()))


def _uniform(shape: torch.Size | tuple[int, ...], bound: float, gen: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


# ---------------------------------------------------------------------- routing statistics (spec §2 C4)

def coactivation(idx: torch.Tensor, n_experts: int) -> torch.Tensor:
    """(E, E) counts of tokens on which experts a and b are both selected (diagonal: usage counts)."""
    onehot = torch.zeros(idx.shape[0], n_experts, device=idx.device).scatter_(1, idx, 1.0)
    return onehot.t() @ onehot


def routing_stats(idx: torch.Tensor, n_experts: int, granularity: int, partners: int = 3) -> dict[str, float]:
    """Per-layer routing statistics from the top-K indices of many tokens (T, K).

    - ``usage_entropy``: entropy of expert usage / log E (1 = uniform);
    - ``partner_share``: for each expert, the share of its co-activations that go to its ``partners`` most
      frequent partners, averaged with usage weights (1 = fixed groups; spec §2 C4 "2-3 stable partners");
    - ``subnets``: distinct expert sets used, as a share of tokens; ``init_subnet``: share of tokens still
      routed exactly to copy 0's slices (the step-0 subnet);
    - ``slice_cover``: mean share of the k slices covered by a token's experts (1 = one expert per slice).
    """
    co = coactivation(idx, n_experts)
    usage = co.diagonal().clone()
    off = co - torch.diag(usage)
    p = usage / usage.sum().clamp_min(1)
    ent = float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(n_experts))
    tot = off.sum(1)
    topp = off.topk(min(partners, n_experts - 1), dim=1).values.sum(1)
    share = torch.where(tot > 0, topp / tot.clamp_min(1), torch.zeros_like(tot))
    partner_share = float((share * usage).sum() / usage[tot > 0].sum().clamp_min(1))
    sets = idx.sort(1).values
    n_sets = torch.unique(sets, dim=0).shape[0]
    init = torch.arange(granularity, device=idx.device)
    init_subnet = float((sets[:, :granularity] == init).all(1).float().mean()) if sets.shape[1] == granularity \
        else float("nan")
    cover = torch.zeros(idx.shape[0], granularity, device=idx.device).scatter_(1, idx % granularity, 1.0)
    return {"usage_entropy": ent, "partner_share": partner_share, "subnets": n_sets / idx.shape[0],
            "init_subnet": init_subnet, "slice_cover": float(cover.mean())}
