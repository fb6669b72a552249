"""The generalized Gaussian (GG) law (spec §3): density, moment-matching shape estimation by table
lookup, sampling, and GG initialisation (fan-in scaled, variance xi / fan)."""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import gammaln
from torch import nn

from suite.errors import ConfigError

NU_GRID = np.round(np.arange(0.1, 3.0 + 1e-9, 0.01), 2)  # spec §3: nu in [0.1, 3.0], step 0.01


def rho_of_nu(nu: np.ndarray | float) -> np.ndarray:
    """rho(nu) = Gamma(1/nu) Gamma(3/nu) / Gamma(2/nu)^2 = E[x^2] / E|x|^2 of a zero-mean GG."""
    nu = np.asarray(nu, dtype=np.float64)
    return np.exp(gammaln(1 / nu) + gammaln(3 / nu) - 2 * gammaln(2 / nu))


RHO_TABLE = rho_of_nu(NU_GRID)


def beta_for_std(std: float, nu: float) -> float:
    """Scale beta with Var = beta^2 Gamma(3/nu) / Gamma(1/nu) equal to std^2."""
    return std * math.exp(0.5 * (gammaln(1 / nu) - gammaln(3 / nu)))


def estimate(x: torch.Tensor) -> tuple[float, float, float]:
    """(mu, nu, beta) by moment matching (spec §3): rho_hat = n sum x^2 / (sum |x|)^2 (uncentred, as
    in the reference), nu = the grid point whose rho is nearest, beta from the std."""
    x = x.detach().flatten().double()
    n = x.numel()
    s2, s1 = float((x * x).sum()), float(x.abs().sum())
    if n == 0 or s1 == 0.0:
        raise ConfigError("GG shape estimate needs at least one nonzero value")
    rho = n * s2 / s1 ** 2
    nu = float(NU_GRID[int(np.argmin(np.abs(RHO_TABLE - rho)))])
    return float(x.mean()), nu, beta_for_std(math.sqrt(s2 / n), nu)


def log_density(x: torch.Tensor, mu: float, nu: float, beta: float) -> torch.Tensor:
    """log p(x) = log(nu / (2 beta Gamma(1/nu))) - (|x - mu| / beta)^nu."""
    return math.log(nu / (2 * beta)) - float(gammaln(1 / nu)) - ((x - mu).abs() / beta) ** nu


def sample(shape: tuple[int, ...], nu: float, beta: float, generator: torch.Generator) -> torch.Tensor:
    """GG(0, nu, beta) draws: |x| = beta G^(1/nu), G ~ Gamma(1/nu, 1), random sign."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape)) if shape else 1
    mag = beta * rng.standard_gamma(1.0 / nu, n) ** (1.0 / nu)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return torch.from_numpy((sign * mag).astype(np.float32)).view(shape)


def gain(nonlinearity: str, slope: float = 0.01) -> float:
    """xi of spec §3: 2 for ReLU, 1 for linear/sigmoid/tanh-like, 2 / (1 + k^2) for LeakyReLU(k)."""
    if nonlinearity == "relu":
        return 2.0
    if nonlinearity in ("linear", "sigmoid", "identity", "gelu-as-linear"):
        return 1.0
    if nonlinearity == "leaky_relu":
        return 2.0 / (1.0 + slope ** 2)
    raise ConfigError(f"unknown nonlinearity {nonlinearity!r}; use relu, linear, sigmoid or leaky_relu")


def fan(w: torch.Tensor, mode: str) -> int:
    """fan_in = shape[1] * receptive field (He-style, our default); ``out`` = shape[0] * receptive
    field (what the reference code's ``param.shape[0]`` amounts to for nn.Linear, spec §7)."""
    rf = int(np.prod(w.shape[2:])) if w.dim() > 2 else 1
    if mode == "in":
        return int(w.shape[1]) * rf
    if mode == "out":
        return int(w.shape[0]) * rf
    raise ConfigError(f"fan mode {mode!r} unknown; use 'in' or 'out'")


def out_in_views(model: nn.Module) -> dict[int, torch.Tensor]:
    """Every weight as an (out, in, ...) tensor, keyed by the parameter's id: the parameter itself, or
    its transpose for Hugging Face's GPT-2 ``Conv1D`` (weight stored (in, out)), so that fans and the
    standard initialisations read the same axes in both layouts."""
    views = {id(p): p for p in model.parameters()}
    for m in model.modules():
        if type(m).__name__ == "Conv1D" and getattr(m, "weight", None) is not None and m.weight.dim() == 2:
            views[id(m.weight)] = m.weight.t()
    return views


def norm_weights(model: nn.Module) -> set[int]:
    """ids of the normalisation layers' scale parameters (initialised to 1)."""
    return {id(m.weight) for m in model.modules()
            if isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None}


@torch.no_grad()
def gg_init_(model: nn.Module, nu: float, xi: float, generator: torch.Generator, fan_mode: str = "in",
             embeddings: bool = True, fan_scale: bool = True) -> nn.Module:
    """GG initialisation (spec §3): every weight with >= 2 dims drawn from GG(0, nu, beta) with
    beta = sqrt(xi / fan * Gamma(1/nu) / Gamma(3/nu)) (so Var = xi / fan); norm weights = 1, biases
    = 0. nu = 2 is He-normal. ``embeddings=False`` leaves nn.Embedding weights as they are. The fans are
    read in the (out, in) layout (:func:`out_in_views`), so GPT-2's transposed Conv1D weights get their
    true fan_in (the reference's ``param.shape[0]`` is fan_in there and fan_out for nn.Linear)."""
    skip = set()
    if not embeddings:
        skip = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    norms, views = norm_weights(model), out_in_views(model)
    for _, p in model.named_parameters():
        if id(p) in skip:
            continue
        if p.dim() >= 2:
            w = views[id(p)]  # (out, in) layout: a GPT-2 Conv1D weight transposed
            var = xi / fan(w, fan_mode) if fan_scale else xi  # fan_scale=False: TEST-ONLY teeth
            w.copy_(sample(tuple(w.shape), nu, beta_for_std(math.sqrt(var), nu), generator))
        elif id(p) in norms:
            p.fill_(1.0)
        else:
            p.zero_()
    return model
