"""The measurements of one run: exact checks by enumeration (spec §6 smoke) and statistical
checks of SMC, RMSMC, trace MH and PMMH (spec §6 small). Every function returns metrics."""
from __future__ import annotations

import math
import time
from typing import Any

import torch

from suite.metrics.stats import chi2_gof

from . import exact as E
from . import method as M
from .models import (Coin, DiscreteHMM, GaussianMean, Geometric, MonadBayesHMM, StickyHMMParam, max_marginal_tv,
                     path_marginals)
from .program import F64, enumerate_paths, program_measure


def build_models(cfg: Any) -> dict[str, Any]:
    return {"m1": Coin.make(cfg.coin_grid, cfg.coin_obs, data_seed=cfg.data_seed),
            "m2": DiscreteHMM.make(cfg.hmm_T, data_seed=cfg.data_seed),
            "m3": GaussianMean.make(cfg.gauss_obs, data_seed=cfg.data_seed),
            "geo": Geometric(cfg.geo_depth),
            "mb": MonadBayesHMM(),
            "pm": StickyHMMParam.make(cfg.pmmh_T, data_seed=cfg.data_seed + 1)}


# ---------------------------------------------------------------- exact (enumeration)
def exact_metrics(models: dict[str, Any], cfg: Any, variant: str) -> dict[str, float]:
    m1, m2, geo = models["m1"], models["m2"], models["geo"]
    out: dict[str, float] = {}
    # the Enumerator against closed forms / the forward algorithm (spec §6 smoke, first item)
    mu1 = program_measure(m1.program, m1.V)
    out["enum_m1_abs_err"] = float((mu1 - m1.exact()).abs().max())
    mu2 = program_measure(m2.program, m2.V)
    Z2, marg2 = m2.forward()
    out["enum_m2_abs_err"] = max(abs(float(mu2.sum()) - Z2), float((m2.marginals(mu2) - marg2).abs().max()) * Z2)
    out["enum_geo_abs_err"] = float((program_measure(geo.program, geo.V) - geo.exact()).abs().max())
    # the building blocks on the law of spawn(n) >> M1, and on a fixed 3-particle population
    paths = enumerate_paths(m1.program)
    law = E.spawn_law(paths, cfg.exact_particles, variant)
    fixed = E.fixed_law([0, 1, 2], [0.2, 0.5, 1.3])
    m_fixed = fixed.measure(3)
    base = E.spawn_law(paths, cfg.exact_particles)  # the correct input population for the other blocks
    out["spawn_rel_err"] = E.rel_err(law.measure(m1.V), mu1)
    for scheme in ("multinomial", "systematic"):
        out[f"resample_{scheme}_rel_err"] = max(
            E.rel_err(E.resample_law(base, scheme, variant).measure(m1.V), mu1),
            E.rel_err(E.resample_law(fixed, scheme, variant).measure(3), m_fixed))
    out["push_evidence_rel_err"] = E.rel_err(E.push_evidence_law(base, variant).measure(m1.V), mu1)
    out["collapse_rel_err"] = E.rel_err(E.collapse_law(base, variant).measure(m1.V), mu1)
    # negative control (spec §6): resampling that resets the weights to 1 must fail the same check
    out["neg_control_unit_weights_rel_err"] = E.rel_err(
        E.resample_law(fixed, "multinomial", "resample-unit-weights").measure(3), m_fixed)
    # trace MH leaves the posterior invariant (spec §2 C3), exactly, on M1 and on variable-length traces
    m2_short = DiscreteHMM.make(cfg.mh_exact_hmm_T, data_seed=cfg.data_seed)  # draws depend on earlier draws
    for name, model in (("m1", m1), ("m2", m2_short), ("geo", geo)):
        pi, piK = E.mh_kernel(model.program, model.V, variant)
        out[f"mh_exact_{name}_err"] = float((piK - pi).abs().max())
    pi, piK = E.mh_kernel(geo.program, geo.V, "mh-no-hastings")
    out["mh_exact_geo_no_hastings_err"] = float((piK - pi).abs().max())
    return out


# ---------------------------------------------------------------- statistics helpers
def mean_z(x: torch.Tensor, target: float) -> float:
    """|mean(x) - target| in standard errors of the mean."""
    se = max(float(x.std()) / math.sqrt(x.numel()), 1e-12 * max(abs(target), 1.0))  # finite when all x agree
    return abs(float(x.mean()) - target) / se


def evidence_stats(prefix: str, log_zhat: torch.Tensor, log_z: float) -> dict[str, float]:
    ratio = (log_zhat - log_z).exp()
    return {f"{prefix}_evidence_ratio": float(ratio.mean()), f"{prefix}_evidence_z": mean_z(ratio, 1.0)}


# ---------------------------------------------------------------- SMC, RMSMC, importance sampling
def smc_metrics(models: dict[str, Any], cfg: Any, gen: torch.Generator, variant: str, ctx: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    m2, m3, mb = models["m2"], models["m3"], models["mb"]
    Z2, marg2 = m2.forward()
    for name, moves, R in (("smc_m2", 0, cfg.smc_runs), ("rmsmc_m2", cfg.rmsmc_moves, cfg.rmsmc_runs)):
        t = time.perf_counter()
        pop = M.smc(m2.program, m2.T, R, cfg.particles, gen, scheme=cfg.scheme, moves=moves, variant=variant)
        out.update(evidence_stats(name, pop.log_mass(), math.log(Z2)))
        out[f"{name}_tv"] = max_marginal_tv(path_marginals(pop.state["value"], pop.logw, m2.S, m2.T), marg2)
        out[f"{name}_s"] = time.perf_counter() - t
        ctx.log("%s: evidence ratio %.4f (z %.2f), marginal TV %.4f, %.1fs", name, out[f"{name}_evidence_ratio"],
                out[f"{name}_evidence_z"], out[f"{name}_tv"], out[f"{name}_s"])
    # continuous M3: SMC and plain importance sampling (Weighted) estimate the closed-form evidence
    lz3 = m3.log_evidence()
    pop = M.smc(m3.program, m3.data.numel(), cfg.smc_runs, cfg.particles, gen, scheme=cfg.scheme, variant=variant)
    out.update(evidence_stats("smc_m3", pop.log_mass(), lz3))
    ch = M.prior_chains(m3.program, cfg.smc_runs * cfg.particles, gen)  # Weighted sampler: E[w] = Z
    out.update(evidence_stats("is_m3", ch.logp, lz3))
    if cfg.mb_hmm:  # monad-bayes' own HMM example, checked against the forward algorithm
        lzb, margb = mb.forward()
        pop = M.smc(mb.program, mb.T - 1, cfg.smc_runs, cfg.particles, gen, scheme=cfg.scheme, variant=variant)
        out.update(evidence_stats("smc_mb_hmm", pop.log_mass(), lzb))
        out["smc_mb_hmm_tv"] = max_marginal_tv(path_marginals(pop.state["value"], pop.logw, 3, mb.T), margb)
    return out


# ---------------------------------------------------------------- trace MH
def mh_metrics(models: dict[str, Any], cfg: Any, gen: torch.Generator, variant: str, ctx: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    m1, m3, geo = models["m1"], models["m3"], models["geo"]
    R = cfg.mh_chains
    ch, acc = M.mh(m1.program, R, cfg.mh_steps, gen, variant)
    out["mh_m1_chi2_p"] = chi2_gof(ch.value, m1.exact())
    out["mh_m1_accept"] = acc
    ch, acc = M.mh(geo.program, R, cfg.mh_steps, gen, variant)
    out["mh_geo_chi2_p"] = chi2_gof(ch.value, geo.exact())
    ch, _ = M.mh(geo.program, R, cfg.mh_steps, gen, "mh-no-hastings")  # the test must see the bias
    out["mh_geo_no_hastings_chi2_p"] = chi2_gof(ch.value, geo.exact())
    # continuous M3: chi-square on 20 equiprobable bins of the exact posterior, and its moments
    ch, acc = M.mh(m3.program, R, cfg.mh_steps, gen, variant)
    mean, sd = m3.posterior()
    z = (ch.value - mean) / sd
    bins = (torch.special.ndtr(z) * cfg.chi2_bins).long().clamp(0, cfg.chi2_bins - 1)
    out["mh_m3_chi2_p"] = chi2_gof(bins, torch.ones(cfg.chi2_bins, dtype=F64))
    out["mh_m3_mean_z"] = mean_z(ch.value, mean)
    var = float(ch.value.var())
    out["mh_m3_var_z"] = abs(var - sd ** 2) / (sd ** 2 * math.sqrt(2 / (R - 1)))
    out["mh_m3_accept"] = acc
    ctx.log("mh: M1 p=%.3g, GEO p=%.3g (no Hastings p=%.3g), M3 p=%.3g mean z %.2f var z %.2f",
            out["mh_m1_chi2_p"], out["mh_geo_chi2_p"], out["mh_geo_no_hastings_chi2_p"], out["mh_m3_chi2_p"],
            out["mh_m3_mean_z"], out["mh_m3_var_z"])
    return out


# ---------------------------------------------------------------- PMMH
def pmmh_metrics(models: dict[str, Any], cfg: Any, gen: torch.Generator, variant: str, ctx: Any) -> dict[str, float]:
    pm = models["pm"]
    prior = torch.full((pm.G,), 1 / pm.G, dtype=F64)
    post = pm.exact_posterior()

    def given(idx: torch.Tensor):
        trans = pm.trans_rows(idx)
        return lambda B: pm.hmm.program(B, trans)

    prog = M.pmmh_program(prior, given, pm.hmm.T, cfg.pmmh_particles, gen, cfg.scheme, variant)
    t = time.perf_counter()
    ch, acc = M.mh(prog, cfg.pmmh_chains, cfg.pmmh_steps, gen, variant)
    est = torch.bincount(ch.value, minlength=pm.G).to(F64)
    out = {"pmmh_chi2_p": chi2_gof(ch.value, post), "pmmh_accept": acc,
           "pmmh_tv": 0.5 * float((est / est.sum() - post).abs().sum()),
           "pmmh_posterior_tv_from_prior": 0.5 * float((post - prior).abs().sum()), "pmmh_s": time.perf_counter() - t}
    ctx.log("pmmh: p=%.3g, TV %.4f (prior is %.3f from the posterior), accept %.2f, %.1fs", out["pmmh_chi2_p"],
            out["pmmh_tv"], out["pmmh_posterior_tv_from_prior"], acc, out["pmmh_s"])
    return out
