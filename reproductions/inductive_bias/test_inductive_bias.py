"""inductive_bias: the estimator on distributions with known tails, the fallback branch, the fit diagnostic,
the GP sampler against direct formulas, the batched ensemble, the smoke protocol and what each broken
variant changes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from reproductions.inductive_bias import Config, run
from reproductions.inductive_bias import estimator as E
from reproductions.inductive_bias.experiment import concordance, estimate
from reproductions.inductive_bias.sampling import BatchedMLP, gp_errors, gp_posterior, one_hot
from reproductions.inductive_bias.tasks import intrinsic_dim_task
from suite import config as suite_config, registry
from suite.context import for_tests
from suite.errors import ConfigError

TRUE = E.NcxFit(200.0, 0.2, 0.0025, kind="given")  # close to the k=8 procedural task's fit


def _draw(fit: E.NcxFit, n: int, seed: int) -> np.ndarray:
    return fit.scale * np.random.default_rng(seed).noncentral_chisquare(fit.df, fit.nc, n)


# --------------------------------------------------------------------------- I(ε) and units

def test_ib_is_minus_logcdf_in_nats_and_bits():
    eps = np.array([0.2, 0.3, 0.45])
    ref = -stats.ncx2.logcdf(eps, TRUE.df, TRUE.nc, scale=TRUE.scale)
    assert np.allclose(E.ib_nats(eps, TRUE), ref, rtol=1e-12)
    assert np.allclose(E.ib_bits(eps, TRUE), ref / math.log(2), rtol=1e-12)
    # a chi-square with 2 df: P(e <= x) = 1 - exp(-x/2), exactly
    chi2 = E.NcxFit(2.0, 0.0, 1.0)
    assert E.ib_nats(1.0, chi2)[0] == pytest.approx(-math.log(1 - math.exp(-0.5)), rel=1e-9)


def test_fallback_branch_is_used_where_logcdf_underflows_and_matches_formula():
    fit = E.NcxFit(3000.0, 1.0, 4e-4)
    deep = fit.mean * 1e-3
    assert not np.isfinite(stats.ncx2.logcdf(deep, fit.df, fit.nc, scale=fit.scale))
    got = E.ib_nats(deep, fit)[0]
    # the spec §3 formula written out once more by hand
    k, lam, x = fit.df, fit.nc, deep / fit.scale
    h = 1 - 2 / 3 * (k + lam) * (k + 3 * lam) / (k + 2 * lam) ** 2
    p = (k + 2 * lam) / (k + lam) ** 2
    m = (h - 1) * (1 - 3 * h)
    z = ((x / (k + lam)) ** h - (1 + h * p * (h - 1 - 0.5 * (2 - h) * m * p))) / (h * math.sqrt(2 * p) * (1 + 0.5 * m * p))
    assert np.isfinite(got) and got == pytest.approx(z * z / 2, rel=1e-12)
    # the other branch: where logcdf is finite it is used as is
    mid = fit.mean * 0.97
    assert E.ib_nats(mid, fit)[0] == pytest.approx(-stats.ncx2.logcdf(mid, k, lam, scale=fit.scale), rel=1e-12)


def test_exact_series_matches_scipy_and_continues_below_underflow():
    for fit in (TRUE, E.NcxFit(20.0, 5.0, 0.01), E.NcxFit(2.0, 0.0, 1.0)):
        grid = np.geomspace(fit.mean * 1e-2, fit.mean * 1.2, 50)
        ref = -stats.ncx2.logcdf(grid, fit.df, fit.nc, scale=fit.scale)
        ok = np.isfinite(ref)
        assert np.allclose(E.exact_ib_nats(grid, fit)[ok], ref[ok], rtol=1e-6, atol=1e-9)
    fit = E.NcxFit(3000.0, 1.0, 4e-4)
    deep = E.exact_ib_nats(np.array([fit.mean * 1e-3, fit.mean * 1e-2]), fit)
    assert np.all(np.isfinite(deep)) and deep[0] > deep[1] > 745  # beyond float64 underflow of the cdf


def test_ncx2_logpdf_mixture_matches_scipy_and_survives_large_df():
    x = np.linspace(0.3, 0.7, 7)
    assert np.allclose(E.ncx2_logpdf(x, TRUE.df, TRUE.nc, TRUE.scale),
                       stats.ncx2.logpdf(x, TRUE.df, TRUE.nc, scale=TRUE.scale), rtol=1e-9)
    big = E.ncx2_logpdf(np.array([1.2]), 3000.0, 3.0, 4e-4)
    assert np.isfinite(big).all()  # scipy returns -inf here (README)


# --------------------------------------------------------------------------- fitting, diagnostic, bound

def test_fit_recovers_known_tail_and_is_self_consistent():
    e = _draw(TRUE, 2000, 0)
    fit = E.fit_ncx2(e)
    assert fit.kind == "mle" and fit.sc_err_bits <= 0.6
    sc = E.self_consistency_bits(e, fit)
    assert np.max(np.abs(sc)) <= 0.6
    # deep extrapolation: true I(ε*) = 30 bits; the estimate is within its bound
    from scipy import optimize
    eps = optimize.brentq(lambda x: E.ib_bits(x, TRUE)[0] - 30.0, TRUE.mean * 1e-6, TRUE.mean)
    half, se = E.ib_interval(e, fit, eps)
    assert 0 < se < half
    assert abs(E.ib_bits(eps, fit)[0] - 30.0) <= half


def test_bound_shrinks_like_one_over_sqrt_S():
    e = _draw(TRUE, 4000, 1)
    eps = TRUE.mean * 0.5
    widths = []
    for n in (1000, 4000):
        fit = E.fit_ncx2(e[:n])
        widths.append(E.ib_interval(e[:n], fit, eps)[0])
    assert 1.4 < widths[0] / widths[1] < 2.9  # ≈ √4 = 2


def test_diagnostic_accepts_true_model_and_flags_bad_fit():
    e = _draw(TRUE, 2000, 2)
    good = E.diagnose(e, TRUE)
    assert not good.flagged and good.ks < good.eta
    bad = E.diagnose(e, E.bad_fit(e, 4.0))
    assert bad.flagged and bad.ks > bad.eta
    assert E.dkw_eta(2000, 0.05) == pytest.approx(math.sqrt(math.log(40) / 4000))


def test_moment_fit_matches_mean_and_variance():
    e = _draw(TRUE, 5000, 3)
    m = E.moment_fit(e)
    assert m.mean == pytest.approx(e.mean(), rel=1e-9)
    assert m.var == pytest.approx(e.var(ddof=1), rel=0.05)
    with pytest.raises(ValueError):
        E.moment_fit(np.full(10, 0.3))  # degenerate hypotheses: zero variance


def test_empirical_and_concordance_helpers():
    assert E.empirical_ib_bits(np.array([0.1, 0.2, 0.3, 0.4]), 0.2) == pytest.approx(1.0)
    assert E.empirical_ib_bits(np.array([0.1, 0.2]), 0.05) == math.inf
    assert concordance([1, 2, 4], [1.0, 2.0, 3.0]) == 1.0 and concordance([1, 2], [2.0, 1.0]) == 0.0


# --------------------------------------------------------------------------- hypotheses

def test_gp_posterior_matches_direct_formulas_and_interpolates():
    task = intrinsic_dim_task(8, 40, 30, 16, seed=0)
    post = gp_posterior(task.x_train, task.y_train, task.x_test, 2, sigma=1.0, jitter=1e-10)
    assert post.train_fit_err < 1e-4
    k = lambda a, b: torch.exp(-torch.cdist(a.double(), b.double()) ** 2 / 2)  # noqa: E731
    Kxx, Ksx, Kss = k(task.x_train, task.x_train), k(task.x_test, task.x_train), k(task.x_test, task.x_test)
    Kxx = Kxx + 1e-10 * torch.eye(40, dtype=torch.float64)
    Y = one_hot(task.y_train, 2)
    assert torch.allclose(post.mean, Ksx @ torch.linalg.solve(Kxx, Y), atol=1e-6)
    assert torch.allclose(post.cov, Kss - Ksx @ torch.linalg.solve(Kxx, Ksx.T), atol=1e-6)
    # sampled errors: mean((M + C^½ Ξ − Y*)²), here checked against the expectation ‖M−Y*‖²/N + tr(C)/n
    errs = gp_errors(post, task.y_test, 4000, torch.Generator().manual_seed(0))
    Yt = one_hot(task.y_test, 2)
    expect = float(((post.mean - Yt) ** 2).mean() + torch.trace(post.cov) / 30)
    assert float(errs.mean()) == pytest.approx(expect, rel=0.02)
    prior = gp_posterior(task.x_train, task.y_train, task.x_test, 2, kind="prior")
    assert prior.train_fit_err == 1.0 and float(prior.mean.abs().max()) == 0.0


def test_batched_mlp_members_are_independent_mlps():
    torch.manual_seed(0)
    net = BatchedMLP(3, 5, (4,), 2)
    x = torch.randn(3, 6, 5)
    out = net(x)
    for s in range(3):
        h = torch.relu(x[s] @ net.weights[0][s] + net.biases[0][s])
        assert torch.allclose(out[s], h @ net.weights[1][s] + net.biases[1][s], atol=1e-6)
    out.sum(dim=(1, 2))[1].backward()  # member 1's loss moves member 1's weights only
    g = net.weights[0].grad
    assert g[1].abs().sum() > 0 and g[0].abs().sum() == 0 and g[2].abs().sum() == 0


# --------------------------------------------------------------------------- variants (teeth) and config

def _cfg(**kw) -> Config:
    return Config(**{"n_samples": 800, "sc_alphas": (0.2, 0.05), **kw})


def test_broken_variants_change_what_they_should():
    e = _draw(TRUE, 800, 4)
    eps = TRUE.mean * 0.6
    paper = estimate(e, eps, _cfg())
    wrong = estimate(e, eps, _cfg(variant="wrong-tail"))
    assert paper["sc_max_bits"] <= 0.6 and wrong["sc_max_bits"] > 2.0  # reads P(e ≥ q_α) instead
    assert wrong["fit_df"] == paper["fit_df"]  # same fit, wrong tail
    ign = estimate(e, eps, _cfg(variant="ignore-threshold"))
    ign2 = estimate(e, eps * 0.5, _cfg(variant="ignore-threshold"))
    assert ign["ib_bits"] == ign2["ib_bits"] < 2.0 < paper["ib_bits"]  # ε no longer matters
    naive = estimate(e, eps, _cfg(variant="naive-mle"))
    assert naive["fit_is_mle"] == 0.0


def test_config_validation():
    with pytest.raises(ConfigError):
        Config(image_datasets=("svhn",)).validate()
    with pytest.raises(ConfigError):
        Config(dims=(32,), ambient=16).validate()
    with pytest.raises(ConfigError):
        Config(n_samples=100).validate()  # α = 0.01 would leave one sample
    with pytest.raises(ConfigError):
        Config(trend="images").validate()


def test_smoke_protocol_holds_and_prior_variant_breaks_interpolation(tmp_path):
    """The smoke run's checks hold; sampling from the GP prior (hypotheses that ignore the training set)
    breaks gp-interpolates; the wrong tail breaks the monotonicity check."""
    r = registry.get("inductive_bias")
    torch.set_num_threads(1)
    verdicts = {}
    for variant in ("paper", "prior", "wrong-tail"):
        cfg = suite_config.resolve(r, "smoke", {"variant": variant, "image_datasets": ""} if variant != "paper"
                                   else {})
        out = run(cfg, for_tests("smoke", 0, tmp=tmp_path / variant))
        verdicts[variant] = {c.id: c.check(out.metrics, "smoke")["verdict"] for c in r.claims}
        if variant == "paper":
            assert out.dataset.provenance == "stand-in"
            assert out.metrics["ib_kernel_minus_nn_bits"] > 0  # reported C3 direction on digits
    assert all(v in ("holds", "not-expected") for v in verdicts["paper"].values()), verdicts["paper"]
    assert verdicts["prior"]["gp-interpolates"] == "fails"
    assert verdicts["wrong-tail"]["ib-nonincreasing-in-eps"] == "fails"
