"""The test models of spec §6 as batched programs, with their ground truth computed independently
(closed forms, forward-backward), never by the interpreter under test.

M1  coin: θ on an 11-point grid with a discretised Beta(2,2) prior, 10 Bernoulli observations.
M2  3-state discrete HMM, 8 observations (forward algorithm).
M3  Gaussian mean with known variance (continuous; closed-form posterior and evidence).
GEO truncated geometric recursion: the number of draws depends on earlier draws (variable-length
    traces, the m/m' correction of trace MH).
MB  the HMM of monad-bayes' examples (from Anglican): 3 states, Gaussian emissions, 16 values.
PM  M2 with an unknown self-transition probability on a grid, for PMMH.
Every program scores once per observation, so SMC can suspend at each.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .program import F64, Categorical, Normal, Sample, Score


# ---------------------------------------------------------------- M1: coin with a discretised Beta(2,2)
@dataclass(frozen=True)
class Coin:
    grid: torch.Tensor   # (G,) θ values
    prior: torch.Tensor  # (G,) prior masses
    data: torch.Tensor   # (N,) 0/1 observations

    @staticmethod
    def make(n_grid: int = 11, n_obs: int = 10, theta_true: float = 0.7, data_seed: int = 0) -> "Coin":
        grid = (torch.arange(n_grid, dtype=F64) + 0.5) / n_grid
        dens = grid * (1 - grid)  # Beta(2,2) density up to its constant, at the grid midpoints
        rng = np.random.default_rng(data_seed)
        data = torch.as_tensor(rng.random(n_obs) < theta_true, dtype=F64)
        return Coin(grid, dens / dens.sum(), data)

    @property
    def V(self) -> int:
        return self.grid.numel()

    def program(self, B: int):
        j = yield Sample(Categorical(self.prior))
        th = self.grid[j]
        for y in self.data:
            yield Score(torch.where(y > 0, th.log(), (1 - th).log()))
        return j

    def exact(self) -> torch.Tensor:
        """Closed form: prior_j · θ_j^h (1-θ_j)^t (the unnormalised posterior measure)."""
        h = float(self.data.sum())
        t = self.data.numel() - h
        return self.prior * self.grid ** h * (1 - self.grid) ** t


# ---------------------------------------------------------------- M2: discrete HMM
@dataclass(frozen=True)
class DiscreteHMM:
    init: torch.Tensor   # (S,)
    trans: torch.Tensor  # (S, S) or per-row (B, S, S) via ``rows``
    emit: torch.Tensor   # (S, O)
    obs: torch.Tensor    # (T,) long

    @staticmethod
    def make(T: int = 8, stay: float = 0.8, data_seed: int = 0) -> "DiscreteHMM":
        S = 3
        trans = sticky(stay, S)
        emit = torch.full((S, S), 0.15, dtype=F64) + torch.eye(S, dtype=F64) * 0.55  # 0.85 on the diagonal
        init = torch.full((S,), 1 / S, dtype=F64)
        rng = np.random.default_rng(data_seed)
        x = rng.choice(S, p=init.numpy())
        obs = []
        for _ in range(T):
            obs.append(rng.choice(S, p=emit[x].numpy()))
            x = rng.choice(S, p=trans[x].numpy())
        return DiscreteHMM(init, trans, emit, torch.as_tensor(obs))

    @property
    def S(self) -> int:
        return self.init.numel()

    @property
    def T(self) -> int:
        return self.obs.numel()

    @property
    def V(self) -> int:
        return self.S ** self.T

    def program(self, B: int, trans: torch.Tensor | None = None):
        """x_1 ~ init, y_1 | x_1; x_t ~ trans[x_{t-1}], y_t | x_t. Returns the path code Σ x_t S^t.
        ``trans`` (B, S, S) gives each row its own transition matrix (PMMH)."""
        code = torch.zeros(B, dtype=torch.long)
        x = None
        for t in range(self.T):
            if x is None:
                probs = self.init
            else:
                probs = self.trans[x] if trans is None else trans[torch.arange(B), x]
            x = yield Sample(Categorical(probs))
            yield Score(self.emit[x, self.obs[t]].log())
            code = code + x * self.S ** t
        return code

    def forward(self, trans: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
        """Forward-backward: (evidence p(y), posterior marginals (T, S))."""
        A = self.trans if trans is None else trans
        e = self.emit[:, self.obs].T  # (T, S)
        alpha = torch.zeros(self.T, self.S, dtype=F64)
        alpha[0] = self.init * e[0]
        for t in range(1, self.T):
            alpha[t] = (alpha[t - 1] @ A) * e[t]
        beta = torch.ones(self.T, self.S, dtype=F64)
        for t in range(self.T - 2, -1, -1):
            beta[t] = A @ (e[t + 1] * beta[t + 1])
        Z = alpha[-1].sum()
        return float(Z), alpha * beta / Z

    def marginals(self, measure: torch.Tensor) -> torch.Tensor:
        """Per-step marginals (T, S) of a measure over path codes."""
        codes = torch.arange(measure.numel())
        digits = (codes[:, None] // self.S ** torch.arange(self.T)) % self.S
        out = torch.zeros(self.T, self.S, dtype=F64)
        for t in range(self.T):
            out[t].index_add_(0, digits[:, t], measure)
        return out / measure.sum()


def sticky(stay: float, S: int = 3) -> torch.Tensor:
    return torch.full((S, S), (1 - stay) / (S - 1), dtype=F64) + torch.eye(S, dtype=F64) * (stay - (1 - stay) / (S - 1))


def path_marginals(codes: torch.Tensor, logw: torch.Tensor, S: int, T: int) -> torch.Tensor:
    """Weighted marginals (T, S) of path codes: the properly weighted estimate Σ w δ / Σ w."""
    w = (logw - logw.max()).exp().reshape(-1)
    digits = (codes.reshape(-1, 1) // S ** torch.arange(T)) % S  # (N, T)
    out = torch.zeros(T * S, dtype=F64).index_add_(0, (torch.arange(T) * S + digits).reshape(-1),
                                                    w[:, None].expand(-1, T).reshape(-1))
    out = out.reshape(T, S)
    return out / w.sum()


def max_marginal_tv(est: torch.Tensor, exact: torch.Tensor) -> float:
    return float(0.5 * (est - exact).abs().sum(-1).max())


# ---------------------------------------------------------------- M3: Gaussian mean
@dataclass(frozen=True)
class GaussianMean:
    mu0: float
    s0: float
    s: float
    data: torch.Tensor

    @staticmethod
    def make(n_obs: int = 10, mu_true: float = 1.0, mu0: float = 0.0, s0: float = 2.0, s: float = 1.0,
             data_seed: int = 0) -> "GaussianMean":
        rng = np.random.default_rng(data_seed)
        return GaussianMean(mu0, s0, s, torch.as_tensor(mu_true + s * rng.standard_normal(n_obs), dtype=F64))

    def program(self, B: int):
        mu = yield Sample(Normal(torch.full((B,), self.mu0, dtype=F64), self.s0))
        for y in self.data:
            yield Score(-0.5 * ((y - mu) / self.s) ** 2 - math.log(self.s * math.sqrt(2 * math.pi)))
        return mu

    def posterior(self) -> tuple[float, float]:
        """Conjugate closed form: (posterior mean, posterior sd)."""
        prec = 1 / self.s0 ** 2 + self.data.numel() / self.s ** 2
        mean = (self.mu0 / self.s0 ** 2 + float(self.data.sum()) / self.s ** 2) / prec
        return mean, prec ** -0.5

    def log_evidence(self) -> float:
        """log N(y; mu0·1, s²I + s0²11ᵀ)."""
        n = self.data.numel()
        cov = self.s ** 2 * torch.eye(n, dtype=F64) + self.s0 ** 2 * torch.ones(n, n, dtype=F64)
        return float(torch.distributions.MultivariateNormal(torch.full((n,), self.mu0, dtype=F64), cov)
                     .log_prob(self.data))


# ---------------------------------------------------------------- GEO: variable-length traces
@dataclass(frozen=True)
class Geometric:
    """n = 1; while n < depth and flip(p) = continue: n += 1. Score exp(-(n - target)²/(2 width²)).
    Draws used: n when it stopped by a flip, depth - 1 when it hit the depth (m varies 1..depth-1)."""

    depth: int = 6
    p_continue: float = 0.6
    target: float = 1.0
    width: float = 1.5

    @property
    def V(self) -> int:
        return self.depth + 1

    def program(self, B: int):
        n = torch.ones(B, dtype=torch.long)
        active = torch.ones(B, dtype=torch.bool)
        coin = torch.tensor([1 - self.p_continue, self.p_continue], dtype=F64)
        for _ in range(self.depth - 1):  # the recursion: one more level while the coin says so
            c = yield Sample(Categorical(coin), active)
            active = active & (c == 1)
            n = n + active.long()
        yield Score(-0.5 * ((n.to(F64) - self.target) / self.width) ** 2)
        return n

    def exact(self) -> torch.Tensor:
        p = self.p_continue
        prior = torch.zeros(self.V, dtype=F64)
        for n in range(1, self.depth + 1):
            prior[n] = p ** (n - 1) * ((1 - p) if n < self.depth else 1.0)
        n = torch.arange(self.V, dtype=F64)
        return prior * torch.exp(-0.5 * ((n - self.target) / self.width) ** 2)

    def draws(self) -> torch.Tensor:
        """Trace length m(n) per value n."""
        n = torch.arange(self.V)
        return torch.where(n < self.depth, n, self.depth - 1)


# ---------------------------------------------------------------- MB: monad-bayes' HMM (from Anglican)
MB_VALUES = (0.9, 0.8, 0.7, 0.0, -0.025, -5.0, -2.0, -0.1, 0.0, 0.13, 0.45, 6.0, 0.2, 0.3, -1.0, -1.0)
MB_TRANS = ((0.1, 0.4, 0.5), (0.2, 0.6, 0.2), (0.15, 0.7, 0.15))
MB_MEANS = (-1.0, 1.0, 0.0)


@dataclass(frozen=True)
class MonadBayesHMM:
    """monad-bayes ``models/HMM.hs``: x_0 ~ uniform{0,1,2}; x_t ~ trans[x_{t-1}];
    factor N(y_t; mean[x_t], 1). monad-bayes' continuation-passing ``hmm`` consumes the value list
    from its end, so the observations are scored in reverse list order here too."""

    values: tuple[float, ...] = MB_VALUES

    @property
    def T(self) -> int:
        return len(self.values) + 1  # the start state has no observation

    def _y(self) -> torch.Tensor:
        return torch.tensor(self.values[::-1], dtype=F64)

    def program(self, B: int):
        trans, means, y = torch.tensor(MB_TRANS, dtype=F64), torch.tensor(MB_MEANS, dtype=F64), self._y()
        x = yield Sample(Categorical(torch.full((3,), 1 / 3, dtype=F64)))
        code = x.clone()
        for t in range(len(y)):
            x = yield Sample(Categorical(trans[x]))
            yield Score(-0.5 * (y[t] - means[x]) ** 2 - 0.5 * math.log(2 * math.pi))
            code = code + x * 3 ** (t + 1)
        return code

    def forward(self) -> tuple[float, torch.Tensor]:
        """(log evidence, posterior marginals (T, 3)) by forward-backward."""
        A, means, y = torch.tensor(MB_TRANS, dtype=F64), torch.tensor(MB_MEANS, dtype=F64), self._y()
        e = torch.exp(-0.5 * (y[:, None] - means) ** 2) / math.sqrt(2 * math.pi)  # (T-1, 3)
        e = torch.cat([torch.ones(1, 3, dtype=F64), e])
        alpha = torch.zeros(self.T, 3, dtype=F64)
        alpha[0] = 1 / 3
        logZ = 0.0
        for t in range(1, self.T):  # scaled recursion
            alpha[t] = (alpha[t - 1] @ A) * e[t]
            s = alpha[t].sum()
            alpha[t] /= s
            logZ += math.log(float(s))
        beta = torch.ones(self.T, 3, dtype=F64)
        for t in range(self.T - 2, -1, -1):
            beta[t] = A @ (e[t + 1] * beta[t + 1])
            beta[t] /= beta[t].sum()
        post = alpha * beta
        return logZ, post / post.sum(-1, keepdim=True)


# ---------------------------------------------------------------- PM: M2 with an unknown parameter (PMMH)
@dataclass(frozen=True)
class StickyHMMParam:
    hmm: DiscreteHMM
    stays: torch.Tensor  # (G,) grid of self-transition probabilities, uniform prior

    @staticmethod
    def make(T: int, stay_true: float = 0.9, grid: tuple[float, ...] = (0.4, 0.6, 0.8, 0.95),
             data_seed: int = 1) -> "StickyHMMParam":
        return StickyHMMParam(DiscreteHMM.make(T, stay_true, data_seed), torch.tensor(grid, dtype=F64))

    @property
    def G(self) -> int:
        return self.stays.numel()

    def trans_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, S, S) transition matrices for parameter indices (B,)."""
        return torch.stack([sticky(float(s), self.hmm.S) for s in self.stays])[idx]

    def exact_posterior(self) -> torch.Tensor:
        ev = torch.tensor([self.hmm.forward(sticky(float(s), self.hmm.S))[0] for s in self.stays], dtype=F64)
        return ev / ev.sum()
