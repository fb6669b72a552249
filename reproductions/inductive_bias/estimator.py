"""The tail estimator of the paper: fit a scaled non-central χ² to the test errors of sampled
hypotheses and read the required inductive bias I(ε) = −log P_{h∼p_h}[e(h) ≤ ε] off its lower tail.

Spec §3 (the paper's estimator, official ``utils.py``): ncχ² (df k, non-centrality λ, scale s, loc 0)
fitted by maximum likelihood; I(ε) = −logcdf(ε; k, λ, s), and the cube-root normal approximation when
logcdf underflows. Spec §7: start the MLE from moment-matched values, check the fit's self-consistency at
observed quantiles and fall back to the moment-matched fit when the MLE fails it; log which fit was used.

Units: the official code returns nats; every public function here says which unit it returns, and the
reproduction reports bits (``nats / ln 2``).

Also here: the fit diagnostics (self-consistency at empirical quantiles; a Kolmogorov–Smirnov distance
compared with the DKW band) and the approximation-error bound in the number of sampled hypotheses S
(see ``ib_interval``; the paper's own theorem could not be retrieved offline, README "Deviations").
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import optimize, special, stats

LN2 = math.log(2.0)
Estimator = Literal["paper", "wrong-tail", "ignore-threshold", "naive-mle"]
FitKind = Literal["mle", "moment", "naive-mle"]
SC_ALPHAS = (0.2, 0.05, 0.01)  # spec §6: self-consistency levels


def nats_to_bits(x: float | np.ndarray) -> float | np.ndarray:
    return x / LN2


@dataclass(frozen=True)
class NcxFit:
    """A scaled non-central χ² (loc 0) and how it was obtained."""

    df: float
    nc: float
    scale: float
    kind: str = "mle"  # "mle" | "moment" | "naive-mle" | "given"
    sc_err_bits: float = float("nan")  # max self-consistency error of this fit on its samples
    mle_sc_err_bits: float = float("nan")  # the MLE's own, also when it was rejected

    @property
    def mean(self) -> float:
        return self.scale * (self.df + self.nc)

    @property
    def var(self) -> float:
        return 2 * self.scale ** 2 * (self.df + 2 * self.nc)

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- I(ε) (spec §3)

def wilson_hilferty_nats(eps: float | np.ndarray, df: float, nc: float, scale: float) -> np.ndarray:
    """−log P(e ≤ ε) ≈ z²/2 from the cube-root normal approximation of the ncχ² (spec §3; official
    ``inductive_bias_alt``): μ = k+λ, h = 1 − ⅔(k+λ)(k+3λ)/(k+2λ)², p = (k+2λ)/(k+λ)², m = (h−1)(1−3h),
    z = [(ε/(sμ))^h − (1 + hp(h − 1 − ½(2−h)mp))] / [h√(2p)(1 + ½mp)]. Valid in the lower tail (z < 0)."""
    x = np.asarray(eps, dtype=np.float64) / scale
    mu = df + nc
    h = 1 - 2.0 / 3.0 * (df + nc) * (df + 3 * nc) / (df + 2 * nc) ** 2
    p = (df + 2 * nc) / mu ** 2
    m = (h - 1) * (1 - 3 * h)
    z = ((x / mu) ** h - (1 + h * p * (h - 1 - 0.5 * (2 - h) * m * p))) / (h * np.sqrt(2 * p) * (1 + 0.5 * m * p))
    return z ** 2 / 2


def _chi2_logcdf(x: np.ndarray, d: np.ndarray, n_terms: int = 400) -> np.ndarray:
    """log P(χ²_d ≤ x) without underflow: where x < d/2 (deep lower tail) by the series
    log P(a, y) = a log y − y − lnΓ(a+1) + log Σ_n yⁿ/((a+1)…(a+n)), a = d/2, y = x/2; scipy elsewhere."""
    x, d = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(d, dtype=np.float64))
    out = stats.chi2.logcdf(x, d)
    deep = (x < d / 2) & (x > 0)
    if deep.any():
        a, y = d[deep] / 2, x[deep] / 2
        n = np.arange(1, n_terms + 1, dtype=np.float64)
        logt = n[None, :] * np.log(y)[:, None] - np.cumsum(np.log(a[:, None] + n[None, :]), axis=1)
        ser = special.logsumexp(np.concatenate([np.zeros((len(a), 1)), logt], axis=1), axis=1)
        out = out.copy()
        out[deep] = a * np.log(y) - y - special.gammaln(a + 1) + ser
    return out


def exact_ib_nats(eps: float | np.ndarray, fit: "NcxFit") -> np.ndarray:
    """−log P(e ≤ ε) of the scaled ncχ² computed in log space (Poisson mixture of central χ² log-CDFs),
    finite far below where scipy's logcdf underflows: the reference the paper's fallback is measured
    against (README, "negative results"). Not the paper's estimator."""
    x = np.atleast_1d(np.asarray(eps, dtype=np.float64)) / fit.scale
    h = fit.nc / 2.0
    if h < 1e-12:
        return -_chi2_logcdf(x, np.full_like(x, fit.df))
    w = 8.0 * math.sqrt(h) + 8.0
    j = np.arange(max(0, int(h - w)), int(h + w) + 1, dtype=np.float64)
    logw = -h + j * math.log(h) - special.gammaln(j + 1)
    lc = _chi2_logcdf(x[:, None], (fit.df + 2 * j)[None, :])
    return -special.logsumexp(lc + logw[None, :], axis=1)


def ib_nats(eps: float | np.ndarray, fit: NcxFit, estimator: Estimator = "paper",
            ref: float | None = None) -> np.ndarray:
    """Required inductive bias I(ε) = −log P(e ≤ ε) in NATS under the fitted ncχ² (spec §3, eq. for I).
    Where scipy's logcdf underflows to −inf, the cube-root normal approximation is used.

    Broken estimators (teeth only): ``wrong-tail`` reads the upper tail, −log P(e ≥ ε);
    ``ignore-threshold`` ignores ε and evaluates at ``ref`` (the mean sampled error)."""
    e = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    if estimator == "ignore-threshold":
        e = np.full_like(e, fit.mean if ref is None else ref)
    if estimator == "wrong-tail":
        out = -stats.ncx2.logsf(e, fit.df, fit.nc, loc=0.0, scale=fit.scale)
    else:
        out = -stats.ncx2.logcdf(e, fit.df, fit.nc, loc=0.0, scale=fit.scale)
    bad = ~np.isfinite(out)
    if bad.any():
        out = out.copy()
        out[bad] = wilson_hilferty_nats(e[bad], fit.df, fit.nc, fit.scale)
    return out


def ib_bits(eps: float | np.ndarray, fit: NcxFit, estimator: Estimator = "paper",
            ref: float | None = None) -> np.ndarray:
    """I(ε) in BITS (``ib_nats / ln 2``)."""
    return nats_to_bits(ib_nats(eps, fit, estimator, ref))


def empirical_ib_bits(errors: np.ndarray, eps: float) -> float:
    """−log₂ of the fraction of sampled errors ≤ ε (inf when none is): the direct estimate, only
    usable up to about log₂ S bits."""
    frac = float(np.mean(np.asarray(errors) <= eps))
    return -math.log2(frac) if frac > 0 else math.inf


# --------------------------------------------------------------------------- fitting (spec §3, §7)

def moment_fit(errors: np.ndarray, nc_frac: float = 1e-3, nc_max: float = 1.0) -> NcxFit:
    """Moment-matched central χ² (spec §7): k₀ = 2m²/v, s₀ = v/(2m), λ₀ = min(``nc_frac``·k₀, ``nc_max``)
    (small: a λ₀ in the thousands makes every likelihood evaluation of the Poisson mixture slow)."""
    e = np.asarray(errors, dtype=np.float64)
    m, v = float(e.mean()), float(e.var(ddof=1))
    if not (m > 0 and v > 1e-12 * m * m):
        raise ValueError(f"moment fit needs positive mean and variance of the errors (mean {m}, var {v}); "
                         f"the hypotheses are degenerate")
    k0 = 2 * m * m / v
    s0 = v / (2 * m)
    lam0 = min(nc_frac * k0, nc_max)
    # keep the mean: s·(k+λ) = m
    s0 = m / (k0 + lam0)
    return NcxFit(k0, lam0, s0, kind="moment")


def ncx2_logpdf(x: np.ndarray, df: float, nc: float, scale: float = 1.0) -> np.ndarray:
    """log-density of the scaled ncχ² as its Poisson mixture of central χ² (Σ_j Pois(j; λ/2) χ²_{k+2j}),
    summed in log space over the j-window λ/2 ± (8√(λ/2) + 8). ``scipy.stats.ncx2.logpdf`` returns −inf
    for large df (e.g. k ≈ 3000, which the GP errors of spec §6 produce), so the MLE could not move."""
    x = np.asarray(x, dtype=np.float64) / scale
    h = nc / 2.0
    if h < 1e-12:
        return stats.chi2.logpdf(x, df) - math.log(scale)
    w = 8.0 * math.sqrt(h) + 8.0
    j = np.arange(max(0, int(h - w)), int(h + w) + 1, dtype=np.float64)
    logw = -h + j * math.log(h) - special.gammaln(j + 1)
    d = (df + 2 * j)[None, :]
    lx = np.log(np.maximum(x, 1e-300))[:, None]
    lc = (d / 2 - 1) * lx - x[:, None] / 2 - (d / 2) * LN2 - special.gammaln(d / 2)
    return special.logsumexp(lc + logw[None, :], axis=1) - math.log(scale)


def _nll(theta: np.ndarray, e: np.ndarray) -> float:
    k, lam, s = np.exp(theta)
    val = -float(np.sum(ncx2_logpdf(e, k, lam, s)))
    return val if np.isfinite(val) else 1e300


def mle_fit(errors: np.ndarray, start: NcxFit, maxiter: int = 400) -> NcxFit:
    """Maximum likelihood of (k, λ, s), loc fixed at 0, by Nelder–Mead on log-parameters from ``start``
    (the optimiser ``scipy.stats.ncx2.fit`` uses, here with the moment-matched start of spec §7)."""
    e = np.asarray(errors, dtype=np.float64)
    th0 = np.log([start.df, max(start.nc, 1e-8), start.scale])
    res = optimize.minimize(_nll, th0, args=(e,), method="Nelder-Mead",
                            options={"maxiter": maxiter, "xatol": 1e-4, "fatol": 1e-6})
    k, lam, s = np.exp(res.x)
    return NcxFit(float(k), float(lam), float(s), kind="mle")


def naive_fit(errors: np.ndarray) -> NcxFit:
    """The official code's fit: ``scipy.stats.ncx2.fit(errors, floc=0)`` from scipy's default start
    (``utils.py``); spec §6 measured it failing the self-consistency check."""
    k, lam, _, s = stats.ncx2.fit(np.asarray(errors, dtype=np.float64), floc=0)
    return NcxFit(float(k), float(lam), float(s), kind="naive-mle")


def self_consistency_bits(errors: np.ndarray, fit: NcxFit, alphas: Sequence[float] = SC_ALPHAS,
                          estimator: Estimator = "paper") -> np.ndarray:
    """Spec §4/§6 diagnostic: at the empirical α-quantile q_α of the sampled errors, the fitted
    −log₂ P(e ≤ q_α) minus −log₂ α, one signed value (bits) per α."""
    e = np.asarray(errors, dtype=np.float64)
    q = np.quantile(e, alphas)
    got = ib_bits(q, fit, estimator, ref=float(e.mean()))
    return got - (-np.log2(np.asarray(alphas, dtype=np.float64)))


def fit_ncx2(errors: np.ndarray, tol_bits: float = 0.6, estimator: Estimator = "paper",
             alphas: Sequence[float] = SC_ALPHAS) -> NcxFit:
    """Production fit (spec §7): MLE from the moment-matched start; if the MLE misses any
    self-consistency level by more than ``tol_bits``, the moment-matched fit is used instead.
    ``estimator="naive-mle"`` (teeth/diagnostic) returns the official code's plain ``ncx2.fit``."""
    if estimator == "naive-mle":
        f = naive_fit(errors)
        sc = float(np.max(np.abs(self_consistency_bits(errors, f, alphas))))
        return NcxFit(f.df, f.nc, f.scale, "naive-mle", sc, sc)
    mom = moment_fit(errors)
    mle = mle_fit(errors, mom)
    sc_mle = float(np.max(np.abs(self_consistency_bits(errors, mle, alphas))))
    if np.isfinite(sc_mle) and sc_mle <= tol_bits:
        return NcxFit(mle.df, mle.nc, mle.scale, "mle", sc_mle, sc_mle)
    sc_mom = float(np.max(np.abs(self_consistency_bits(errors, mom, alphas))))
    if not np.isfinite(sc_mle) or sc_mom < sc_mle:  # the fallback, unless it is even worse
        return NcxFit(mom.df, mom.nc, mom.scale, "moment", sc_mom, sc_mle)
    return NcxFit(mle.df, mle.nc, mle.scale, "mle", sc_mle, sc_mle)


# --------------------------------------------------------------------------- diagnostics and bounds

def dkw_eta(n_samples: int, delta: float) -> float:
    """DKW–Massart: sup_x |F̂_S(x) − F(x)| ≤ η = √(ln(2/δ)/(2S)) with probability ≥ 1 − δ."""
    return math.sqrt(math.log(2.0 / delta) / (2.0 * n_samples))


def ks_distance(errors: np.ndarray, fit: NcxFit) -> float:
    """Kolmogorov–Smirnov distance between the empirical CDF of the errors and the fitted ncχ²."""
    e = np.sort(np.asarray(errors, dtype=np.float64))
    cdf = stats.ncx2.cdf(e, fit.df, fit.nc, loc=0.0, scale=fit.scale)
    n = len(e)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))


@dataclass(frozen=True)
class Diagnosis:
    """The fit diagnostic: flags a fit whose CDF leaves the DKW band of the samples (KS > η_δ) or that
    misses a self-consistency level by more than ``tol_bits``."""

    ks: float
    eta: float
    sc_max_abs_bits: float
    flagged: bool


def diagnose(errors: np.ndarray, fit: NcxFit, delta: float = 0.05, tol_bits: float = 0.6,
             alphas: Sequence[float] = SC_ALPHAS) -> Diagnosis:
    ks = ks_distance(errors, fit)
    eta = dkw_eta(len(errors), delta)
    sc = float(np.max(np.abs(self_consistency_bits(errors, fit, alphas))))
    return Diagnosis(ks, eta, sc, bool(ks > eta or not (sc <= tol_bits)))


def bad_fit(errors: np.ndarray, var_factor: float = 4.0) -> NcxFit:
    """A deliberately bad fit for the diagnostic's test: the moment-matched central χ² with the right
    mean but ``var_factor`` times the sampled variance (k/var_factor degrees of freedom)."""
    e = np.asarray(errors, dtype=np.float64)
    m, v = float(e.mean()), float(e.var(ddof=1)) * var_factor
    return NcxFit(2 * m * m / v, 0.0, v / (2 * m), kind="given")


def _ib_theta(theta: np.ndarray, eps: float) -> float:
    k, lam, s = np.exp(theta)
    return float(ib_nats(eps, NcxFit(k, lam, s))[0])


def _num_hessian(f, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = len(x)
    H = np.zeros((n, n))
    f0 = f(x)
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = h[i]
        H[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
        for j in range(i + 1, n):
            ej = np.zeros(n)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
    return H


def ib_interval(errors: np.ndarray, fit: NcxFit, eps: float, delta: float = 0.05) -> tuple[float, float]:
    """Approximation-error bound of Î(ε) in the number S of sampled hypotheses, in BITS: returns
    (half-width, standard error). Delta method around the ncχ² maximum-likelihood fit:
    |Î − I| ≤ z_{1−δ/2}·√(∇I(θ̂)ᵀ Ĵ⁻¹ ∇I(θ̂)), Ĵ the observed information of the S errors (≈ S × the
    Fisher information of one error), so the bound shrinks as O(1/√S). It bounds the estimation error
    *within* the ncχ² family (asymptotically, at confidence 1 − δ); misfit of the family is what the
    diagnostic (``diagnose``) is for. (The paper's own theorem could not be retrieved offline.)"""
    e = np.asarray(errors, dtype=np.float64)
    th = np.log([fit.df, max(fit.nc, 1e-8), fit.scale])
    J = _num_hessian(lambda t: _nll(t, e), th, np.full(3, 1e-3))
    g = np.array([(_ib_theta(th + d, eps) - _ib_theta(th - d, eps)) / (2 * 1e-4) for d in np.eye(3) * 1e-4])
    var = float(g @ np.linalg.pinv(J, rcond=1e-12) @ g)
    se_bits = math.sqrt(max(var, 0.0)) / LN2 if np.isfinite(var) else float("inf")
    return float(stats.norm.ppf(1 - delta / 2)) * se_bits, se_bits
