"""GEDI (Sansone & Manhaeve): the generative-discriminative lower bound and its pieces (spec §3).

The network's output f_θ(x) ∈ R^c is read two ways:
- cluster posterior p(y|x) = softmax(f_θ(x)/τ);
- energy E_θ(x) = −logsumexp_y f_θ(x)_y (JEM), so p_θ(x) ∝ exp(−E_θ(x)).

Loss to minimise (spec §3, the negated lower bound):
    w_gen·[mean E(x) − mean E(x̃)]  +  w_inv·CE(p(·|x¹), p(·|x²))  +  w_unif·KL(U_c ‖ p̄)
with x̃ from persistent-buffer SGLD (contrastive divergence for ∇ log Z), x¹, x² two augmented views,
p̄ the batch-mean posterior. Variants drop terms (ablations / baselines) or break one (test-only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

# "gedi": all three terms; "no_gen": GEDI without the generative term (SwAV-like, spec §4);
# "no_unif": without the uniformity term (collapse ablation, spec §6); "jem": generative term only.
METHODS = ("gedi", "no_gen", "no_unif", "jem")
TERMS = {"gedi": (True, True, True), "no_gen": (False, True, True), "no_unif": (True, True, False),
         "jem": (True, False, False)}  # (gen, inv, unif)
# Test-only broken variants (the teeth): "paper" is the method; "unif_sign" flips the sign of the
# uniformity term (rewards cluster collapse); "energy_sign" uses E = +logsumexp (SGLD climbs energy);
# "gen_sign" flips the contrastive-divergence term (data energy pushed up, sample energy down), which
# breaks only the methods with a generative term (a diagnostic: it does not hurt clustering, README);
# "skip_gen" skips the generative term in GEDI itself (GEDI then trains exactly as no-gen).
Variant = Literal["paper", "unif_sign", "energy_sign", "gen_sign", "skip_gen"]
VARIANTS = get_args(Variant)


def energy(logits: torch.Tensor, variant: str = "paper") -> torch.Tensor:
    """E_θ(x) = −logsumexp_y f_θ(x)_y (spec §3, JEM energy); one value per row."""
    lse = torch.logsumexp(logits, dim=1)
    return lse if variant == "energy_sign" else -lse


def invariance_loss(logits1: torch.Tensor, logits2: torch.Tensor, tau: float = 1.0,
                    detach: str = "none") -> torch.Tensor:
    """−L_INV: symmetrised cross-entropy between the two views' posteriors (spec §3).

    −½ E[Σ_y p(y|x¹) log p(y|x²) + Σ_y p(y|x²) log p(y|x¹)]. ``detach`` [verify]: "none" (the paper's
    claim: no stop-gradient needed) or "target" (the p(y|·) side of each cross-entropy is detached).
    """
    lp1, lp2 = F.log_softmax(logits1 / tau, 1), F.log_softmax(logits2 / tau, 1)
    p1, p2 = lp1.exp(), lp2.exp()
    if detach == "target":
        p1, p2 = p1.detach(), p2.detach()
    return -0.5 * ((p1 * lp2).sum(1) + (p2 * lp1).sum(1)).mean()


def uniformity_loss(p_bar: torch.Tensor, kind: str = "kl_u_p") -> torch.Tensor:
    """−L_UNIF (spec §3): KL(U_c ‖ p̄) ("kl_u_p", default) or KL(p̄ ‖ U_c) ("kl_p_u") [verify]; 0 iff p̄ uniform."""
    c = p_bar.shape[-1]
    logp = torch.log(p_bar.clamp_min(1e-12))
    if kind == "kl_u_p":
        return (-math.log(c) - logp).mean(-1)
    if kind == "kl_p_u":
        return (p_bar * (logp + math.log(c))).sum(-1)
    raise ValueError(f"unknown uniformity kind {kind!r}")


@dataclass
class SGLDConfig:
    """Persistent-buffer SGLD (spec §3, JEM defaults [verify])."""

    steps: int = 20
    alpha: float = 0.1  # step size on −∇_x E
    sigma: float = 0.01  # noise std
    buffer_size: int = 2000
    reinit: float = 0.05  # fraction re-initialised from uniform noise per draw


class ReplayBuffer:
    """Persistent SGLD chains inside the box [lo, hi] (per-feature bounds, broadcast to the sample shape)."""

    def __init__(self, size: int, lo: torch.Tensor, hi: torch.Tensor, device: torch.device | str = "cpu") -> None:
        self.lo, self.hi = lo.to(device), hi.to(device)
        self.x = self.uniform(size)

    def uniform(self, n: int) -> torch.Tensor:
        u = torch.rand((n, *self.lo.shape), device=self.lo.device)
        return self.lo + u * (self.hi - self.lo)

    def draw(self, n: int, reinit: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices and starting points: ``n`` buffer entries, a fraction ``reinit`` replaced by fresh noise."""
        idx = torch.randint(0, len(self.x), (n,), device=self.x.device)
        x0 = self.x[idx].clone()
        fresh = torch.rand(n, device=x0.device) < reinit
        x0[fresh] = self.uniform(int(fresh.sum()))
        return idx, x0

    def write(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        self.x[idx] = x.detach()

    # The chains are training state: a resumed run must continue them, not restart from noise.
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"x": self.x}

    def load_state_dict(self, st: dict[str, torch.Tensor]) -> None:
        self.x = st["x"].to(self.x.device).clone()


def sgld(energy_fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int, alpha: float,
         sigma: float, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """x ← clamp(x − α ∇_x E(x) + σ ε, lo, hi), ``steps`` times (spec §3; the clamp is spec §7's box).

    Gradients are taken w.r.t. x only, so the network's parameter gradients are untouched.
    """
    x = x0.detach()
    for _ in range(steps):
        x.requires_grad_(True)
        g, = torch.autograd.grad(energy_fn(x).sum(), x)
        x = torch.max(torch.min(x.detach() - alpha * g + sigma * torch.randn_like(x), hi), lo)
    return x.detach()


class GEDI:
    """The GEDI objective for one network: holds the SGLD replay buffer; ``loss(net, x)`` is one batch."""

    def __init__(self, method: str, augment: Callable[[torch.Tensor], torch.Tensor], lo: torch.Tensor,
                 hi: torch.Tensor, sgld_cfg: SGLDConfig, tau: float = 1.0, w_gen: float = 1.0,
                 w_inv: float = 1.0, w_unif: float = 1.0, detach: str = "none", unif_kind: str = "kl_u_p",
                 data_noise: float = 0.0, variant: str = "paper", device: torch.device | str = "cpu",
                 preprocess: Callable[[torch.Tensor], torch.Tensor] = lambda x: x, energy_reg: float = 0.0) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
        self.gen, self.inv, self.unif = TERMS[method]
        if variant == "skip_gen" and method == "gedi":  # broken: the step that makes GEDI generative is skipped
            self.gen = False
        self.augment, self.preprocess, self.s = augment, preprocess, sgld_cfg
        self.tau, self.w = tau, (w_gen, w_inv, w_unif)
        self.detach, self.unif_kind, self.data_noise, self.variant = detach, unif_kind, data_noise, variant
        self.energy_reg = energy_reg
        self.lo, self.hi = lo.to(device), hi.to(device)
        self.buffer = ReplayBuffer(sgld_cfg.buffer_size, lo, hi, device) if self.gen else None
        self.last: dict[str, float] = {}

    # Training state besides the network (checkpointed by suite.train.fit(stateful=...)): the SGLD
    # chains, which a resumed run must continue, and the last batch's loss terms, reported as metrics.
    def state_dict(self) -> dict[str, Any]:
        return {"replay": self.buffer.state_dict() if self.buffer is not None else None, "last": dict(self.last)}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        if self.buffer is not None:
            self.buffer.load_state_dict(st["replay"])
        self.last = dict(st["last"])

    def energy_fn(self, net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: energy(net(x), self.variant)

    def sample(self, net: nn.Module, n: int) -> torch.Tensor:
        """x̃: ``n`` SGLD samples from the buffer (net in eval mode while sampling), written back."""
        assert self.buffer is not None
        idx, x0 = self.buffer.draw(n, self.s.reinit)
        was = net.training
        net.eval()
        xs = sgld(self.energy_fn(net), x0, self.s.steps, self.s.alpha, self.s.sigma, self.lo, self.hi)
        net.train(was)
        self.buffer.write(idx, xs)
        return xs

    def loss(self, net: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        """Negated lower bound on one batch (spec §3 loop)."""
        x = self.preprocess(xb)
        w_gen, w_inv, w_unif = self.w
        total = x.new_zeros(())
        parts: dict[str, torch.Tensor] = {}
        if self.gen:
            xs = self.sample(net, len(x))
            xd = x + self.data_noise * torch.randn_like(x) if self.data_noise else x
            logits_all = net(torch.cat([xd, xs]))
            e = energy(logits_all, self.variant)
            logits = logits_all[: len(x)]
            parts["gen"] = e[: len(x)].mean() - e[len(x):].mean()  # contrastive divergence, L_GEN
            total = total + (-w_gen if self.variant == "gen_sign" else w_gen) * parts["gen"]
            if self.energy_reg:  # not in the paper: Du & Mordatch's E² penalty, off by default (spec §7 stability)
                total = total + self.energy_reg * (e ** 2).mean()
        else:
            logits = net(x)
        if self.inv:
            l1, l2 = net(self.augment(x)), net(self.augment(x))
            parts["inv"] = invariance_loss(l1, l2, self.tau, self.detach)
            total = total + w_inv * parts["inv"]
        if self.unif:
            p_bar = F.softmax(logits / self.tau, 1).mean(0)
            parts["unif"] = uniformity_loss(p_bar, self.unif_kind)
            sign = -1.0 if self.variant == "unif_sign" else 1.0
            total = total + sign * w_unif * parts["unif"]
        self.last = {k: float(v.detach()) for k, v in parts.items()}
        return total


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, batch: int = 4096,
            preprocess: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster labels argmax_y p(y|x) and energies E(x) (spec §3 read-out), on CPU."""
    was = net.training
    net.eval()
    dev = next(net.parameters()).device
    logits = torch.cat([net(preprocess(x[i:i + batch].to(dev))).float().cpu() for i in range(0, len(x), batch)])
    net.train(was)
    return logits.argmax(1), energy(logits)


def usage_stats(labels: torch.Tensor, c: int) -> tuple[float, float]:
    """(entropy of cluster usage / log c, fraction of points in the largest cluster)."""
    q = torch.bincount(labels, minlength=c).double() / len(labels)
    h = float(-(q[q > 0] * q[q > 0].log()).sum())
    return h / math.log(c), float(q.max())
