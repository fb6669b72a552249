"""validated_inference: the interpreter, each transformation's exact validity by enumeration, the
broken variants caught by their checks, and the smoke-scale claims."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from suite import config, registry, runner
from suite.context import for_tests
from suite.errors import ConfigError

from . import CLAIMS, EXACT_TOL, SCALES, Config, run
from . import exact as E
from . import method as M
from .experiment import build_models, exact_metrics, mh_metrics, pmmh_metrics, smc_metrics
from .models import (MB_MEANS, MB_TRANS, MB_VALUES, Coin, DiscreteHMM, GaussianMean, Geometric, MonadBayesHMM,
                     max_marginal_tv, path_marginals)
from .program import F64, Categorical, enumerate_paths, execute, measure_of, program_measure

SLUG = "validated_inference"


@pytest.fixture(scope="module")
def m1() -> Coin:
    return Coin.make()


@pytest.fixture(scope="module")
def m1_paths(m1):
    return enumerate_paths(m1.program)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- interpreter and Enumerator
def test_categorical_inverse_cdf_intervals():
    d = Categorical(torch.tensor([0.2, 0.0, 0.5, 0.3], dtype=F64))
    u = torch.tensor([0.0, 0.1999, 0.2, 0.69, 0.7, 0.9999], dtype=F64)
    assert d.icdf(u).tolist() == [0, 0, 2, 2, 3, 3]  # the zero-mass outcome 1 is never drawn


def test_replay_is_deterministic_and_positional():
    geo = Geometric(6)
    ex = execute(geo.program, 500, gen=_gen(1))
    again = execute(geo.program, 500, ex.u, gen=_gen(2))
    assert torch.equal(ex.value, again.value) and torch.equal(ex.m, again.m)
    assert torch.equal(ex.m, geo.draws()[ex.value])  # m = n, or depth-1 at the truncation
    assert torch.allclose(ex.logw, -0.5 * ((ex.value.to(F64) - geo.target) / geo.width) ** 2)


def test_suspend_and_resume_count_every_score_once():
    """Sequential: advancing score by score from the trace adds up to the whole run's weight."""
    hmm = DiscreteHMM.make()
    full = execute(hmm.program, 300, gen=_gen(0))
    total = torch.zeros(300, dtype=F64)
    for k in range(hmm.T):
        ex = execute(hmm.program, 300, full.u, gen=_gen(9), skip=k, stop=k + 1)
        assert not ex.done and int(ex.m[0]) == k + 1
        total += ex.logw
    fin = execute(hmm.program, 300, full.u, gen=_gen(9), skip=hmm.T)
    assert fin.done and torch.equal(fin.value, full.value) and float(fin.logw.abs().max()) == 0
    assert torch.allclose(total, full.logw, rtol=0, atol=1e-12)


def test_enumerator_equals_closed_forms(m1):
    assert float((program_measure(m1.program, m1.V) - m1.exact()).abs().max()) < 1e-15
    hmm = DiscreteHMM.make()
    mu = program_measure(hmm.program, hmm.V)
    Z, marg = hmm.forward()
    assert abs(float(mu.sum()) - Z) < 1e-15 and float((hmm.marginals(mu) - marg).abs().max()) < 1e-12
    geo = Geometric(6)
    assert float((program_measure(geo.program, geo.V) - geo.exact()).abs().max()) < 1e-15
    assert float(geo.exact().sum()) < 1 and geo.exact()[0] == 0


def test_enumerator_matches_sampling(m1):
    """The enumerated path probabilities are those of the sampler (importance estimate of the measure)."""
    ex = execute(m1.program, 200_000, gen=_gen(3))
    est = measure_of(ex.value, ex.logw, m1.V) / 200_000
    assert E.rel_err(est, m1.exact()) < 0.01


def test_enumerating_continuous_raises():
    with pytest.raises(ValueError, match="discrete"):
        enumerate_paths(GaussianMean.make().program)


def test_monad_bayes_hmm_forward_matches_brute_force_on_a_prefix():
    """The MB HMM's forward algorithm equals enumeration on its first 5 observations."""
    mb = MonadBayesHMM(MB_VALUES[-5:])  # the last five values are scored first
    paths = enumerate_paths(mb.program)
    logZ, marg = mb.forward()
    assert abs(float(torch.logsumexp(paths.logq + paths.logw, 0)) - logZ) < 1e-12
    mu = measure_of(paths.value, paths.logq + paths.logw, 3 ** mb.T)
    assert max_marginal_tv(path_marginals(torch.arange(3 ** mb.T), mu.log(), 3, mb.T), marg) < 1e-12


def test_monad_bayes_constants_pinned():
    """README table: the HMM of monad-bayes' models/HMM.hs, value for value."""
    assert MB_VALUES == (0.9, 0.8, 0.7, 0.0, -0.025, -5.0, -2.0, -0.1, 0.0, 0.13, 0.45, 6.0, 0.2, 0.3, -1.0, -1.0)
    assert MB_TRANS == ((0.1, 0.4, 0.5), (0.2, 0.6, 0.2), (0.15, 0.7, 0.15))
    assert MB_MEANS == (-1.0, 1.0, 0.0)


# ---------------------------------------------------------------- each transformation, exact
def _all_errors(m1, paths, variant: str) -> dict[str, float]:
    mu = m1.exact()
    base = E.spawn_law(paths, 3)
    fixed = E.fixed_law([0, 1, 2], [0.2, 0.5, 1.3])
    mf = fixed.measure(3)
    return {
        "spawn": E.rel_err(E.spawn_law(paths, 3, variant).measure(m1.V), mu),
        "multinomial": max(E.rel_err(E.resample_law(base, "multinomial", variant).measure(m1.V), mu),
                           E.rel_err(E.resample_law(fixed, "multinomial", variant).measure(3), mf)),
        "systematic": max(E.rel_err(E.resample_law(base, "systematic", variant).measure(m1.V), mu),
                          E.rel_err(E.resample_law(fixed, "systematic", variant).measure(3), mf)),
        "push_evidence": E.rel_err(E.push_evidence_law(base, variant).measure(m1.V), mu),
        "collapse": E.rel_err(E.collapse_law(base, variant).measure(m1.V), mu),
    }


def test_every_block_preserves_the_measure_exactly(m1, m1_paths):
    errs = _all_errors(m1, m1_paths, "correct")
    assert max(errs.values()) <= EXACT_TOL, errs


@pytest.mark.parametrize("variant,block", [
    ("spawn-no-split", "spawn"), ("resample-unit-weights", "multinomial"), ("resample-unit-weights", "systematic"),
    ("resample-ignore-weights", "multinomial"), ("resample-ignore-weights", "systematic"),
    ("normalize-drop-evidence", "push_evidence"), ("normalize-drop-evidence", "collapse"),
    ("collapse-ignore-weights", "collapse")])
def test_broken_block_is_caught_exactly(m1, m1_paths, variant, block):
    errs = _all_errors(m1, m1_paths, variant)
    assert errs[block] > 1e-3, errs
    breaks = {"spawn-no-split": {"spawn"}, "resample-unit-weights": {"multinomial", "systematic"},
              "resample-ignore-weights": {"multinomial", "systematic"},
              "normalize-drop-evidence": {"push_evidence", "collapse"}, "collapse-ignore-weights": {"collapse"}}
    untouched = {k: v for k, v in errs.items() if k not in breaks[variant]}
    assert max(untouched.values()) <= EXACT_TOL, untouched  # a variant breaks its own block only


def test_multinomial_law_enumerates_the_27_ancestor_tuples():
    """Spec §6: 3 particles, n = 3, all 27 ancestor draws with probability Π w_a / Z: the law computed
    through the real sampler's intervals is this one, and both keep the measure."""
    w = torch.tensor([0.2, 0.5, 1.3], dtype=F64)
    fixed = E.fixed_law([0, 1, 2], w.tolist())
    law = E.resample_law(fixed, "multinomial")
    tuples = E._product(3, 3)
    p_tuples = (w / w.sum())[tuples].prod(1)
    pop = M.Population({"value": torch.tensor([[0, 1, 2]]).expand(27, 3)}, w.log().expand(27, 3))
    direct = M.apply_ancestors(pop, tuples)
    lawd = E.PopLaw(p_tuples, direct.state["value"], direct.logw, torch.zeros(27, dtype=F64))
    assert float((law.measure(3) - lawd.measure(3)).abs().max()) < 1e-15
    assert float((lawd.measure(3) - w).abs().max()) < 1e-15


def test_systematic_law_matches_a_fine_grid():
    """The analytic interval law of systematic resampling against 10^5 grid points of its uniform."""
    w = torch.tensor([[0.2, 0.5, 1.3, 0.05]], dtype=F64)
    fixed = E.PopLaw(torch.ones(1, dtype=F64), torch.tensor([[0, 1, 2, 3]]), w.log(), torch.zeros(1, dtype=F64))
    exact = E.resample_law(fixed, "systematic").measure(4)
    G = 100_000
    u = ((torch.arange(G, dtype=F64) + 0.5) / G)[:, None]
    anc = M.ancestors_systematic(w.log().expand(G, -1), u)
    grid = torch.zeros(4, dtype=F64).index_add_(0, anc.reshape(-1), torch.full((4 * G,), float(w.sum()) / 4 / G,
                                                                                dtype=F64))
    assert float((grid - exact).abs().max()) < 1e-4 and float((exact - w[0]).abs().max()) < 1e-15


def test_resampling_keeps_the_mass_of_every_draw_and_leaves_dead_populations():
    g = _gen(4)
    logw = torch.randn(50, 7, generator=g, dtype=F64)
    logw[3] = -math.inf  # Z = 0
    pop = M.Population({"value": torch.arange(7).expand(50, 7).clone()}, logw)
    for scheme in ("multinomial", "systematic"):
        out = M.resample(pop, g, scheme)
        live = torch.arange(50) != 3
        assert torch.allclose(out.log_mass()[live], pop.log_mass()[live], atol=1e-12)
        assert torch.equal(out.logw[3], logw[3]) and torch.equal(out.state["value"][3], torch.arange(7))
        assert torch.allclose(out.logw[live], (pop.log_mass()[live] - math.log(7))[:, None].expand(-1, 7))


def test_systematic_has_low_variance_offspring_counts():
    """Systematic resampling gives each particle floor(n w_i/Z) or that + 1 offspring."""
    g = _gen(5)
    logw = torch.randn(200, 10, generator=g, dtype=F64)
    anc = M.ancestors_systematic(logw, torch.rand(200, 1, generator=g, dtype=F64))
    counts = torch.zeros(200, 10, dtype=torch.long).scatter_add_(1, anc, torch.ones_like(anc))
    expect = torch.softmax(logw, 1) * 10
    assert bool(((counts - expect).abs() < 1 + 1e-9).all())


def test_push_evidence_and_collapse_handle_zero_mass():
    pop = M.Population({"value": torch.tensor([[1, 2]])}, torch.full((1, 2), -math.inf, dtype=F64))
    norm, outer = M.push_evidence(pop)
    assert torch.isneginf(outer).all() and torch.isneginf(norm.logw).all()


# ---------------------------------------------------------------- trace MH
@pytest.mark.parametrize("name", ["m1", "geo", "m2"])
def test_mh_kernel_is_exactly_invariant(name, m1):
    model = {"m1": m1, "geo": Geometric(6), "m2": DiscreteHMM.make(T=4)}[name]
    pi, piK = E.mh_kernel(model.program, model.V)
    assert float((piK - pi).abs().max()) < 1e-14 and abs(float(piK.sum()) - 1) < 1e-12


def test_mh_without_hastings_targets_p_times_m():
    """Without m/m' the kernel is invariant for p·m instead (detailed balance of min(p, p'))."""
    geo = Geometric(6)
    pi, piK = E.mh_kernel(geo.program, geo.V, "mh-no-hastings")
    assert float((piK - pi).abs().max()) > 1e-2
    pi, piK = E.mh_kernel(geo.program, geo.V, "mh-no-hastings", tilt=True)
    assert float((piK - pi).abs().max()) < 1e-14
    tilted = geo.exact() * geo.draws().to(F64)
    assert float((pi - tilted / tilted.sum()).abs().max()) < 1e-14


def test_mh_broken_variants_fail_the_exact_invariance(m1):
    pi, piK = E.mh_kernel(m1.program, m1.V, "mh-always-accept")
    assert float((piK - pi).abs().max()) > 1e-2  # accepting everything samples the prior
    pi, piK = E.mh_kernel(m1.program, m1.V, "mh-no-hastings")  # fixed-length traces: m/m' = 1, still valid
    assert float((piK - pi).abs().max()) < 1e-14


def test_mh_chains_match_the_posterior_and_the_test_has_power(m1):
    from suite.metrics.stats import chi2_gof

    ch, acc = M.mh(m1.program, 3000, 40, _gen(6))
    assert chi2_gof(ch.value, m1.exact()) > 1e-3 and 0.2 < acc < 0.95
    ch, _ = M.mh(m1.program, 3000, 40, _gen(6), "mh-always-accept")
    assert chi2_gof(ch.value, m1.exact()) < 1e-6
    geo = Geometric(6)
    ch, _ = M.mh(geo.program, 3000, 60, _gen(7), "mh-no-hastings")
    assert chi2_gof(ch.value, geo.exact()) < 1e-6


def test_rmsmc_move_keeps_weights_and_lengths():
    hmm = DiscreteHMM.make()
    state, logw = M.empty_runs(20)
    pop = M.spawn(state, logw, 5)
    pop, _ = M.advance(pop, hmm.program, _gen(8), 0)
    pop, _ = M.advance(pop, hmm.program, _gen(8), 1)
    moved = M.mh_move(pop, hmm.program, _gen(9), 2)
    assert torch.equal(moved.logw, pop.logw) and torch.equal(moved.state["m"], pop.state["m"])
    # the moved traces' stored densities are their own: re-running them gives the same two scores
    ex = execute(hmm.program, 100, moved.state["u"].reshape(100, -1), gen=_gen(1), stop=2)
    assert torch.allclose(ex.logw, moved.state["logp"].reshape(-1), atol=1e-12)


# ---------------------------------------------------------------- SMC and PMMH, statistically (fast)
def test_smc_is_unbiased_and_forgetting_weights_is_caught(m1):
    Z = float(m1.exact().sum())
    for scheme in ("multinomial", "systematic"):
        pop = M.smc(m1.program, m1.data.numel(), 3000, 10, _gen(10), scheme=scheme)
        ratio = (pop.log_mass() - math.log(Z)).exp()
        assert abs(float(ratio.mean()) - 1) < 4 * float(ratio.std()) / math.sqrt(3000)
        post = measure_of(pop.state["value"], pop.logw, m1.V)
        assert E.rel_err(post / post.sum(), m1.exact() / Z) < 0.02
    pop = M.smc(m1.program, m1.data.numel(), 3000, 10, _gen(10), variant="smc-forget-weights")
    assert abs(float(pop.log_mass().exp().mean()) - 1) < 1e-9  # total mass never leaves 1: Z is lost


def test_smc_stops_when_the_program_has_fewer_scores(m1):
    pop = M.smc(m1.program, 50, 10, 4, _gen(11))  # more steps than scores: ends at the program's end
    assert pop.state["value"].shape == (10, 4)


def _small_cfg(**kw):
    base = dict(config.canonical(config.resolve(registry.get(SLUG), "smoke")))
    base.update(kw)
    return SimpleNamespace(**base)


class _Ctx:
    def log(self, *a):
        pass


def test_pmmh_matches_and_dropping_the_evidence_is_caught():
    cfg = _small_cfg(pmmh_chains=600, pmmh_steps=15)
    models = build_models(cfg)
    ok = pmmh_metrics(models, cfg, _gen(12), "correct", _Ctx())
    bad = pmmh_metrics(models, cfg, _gen(12), "normalize-drop-evidence", _Ctx())
    assert ok["pmmh_chi2_p"] > 1e-3 and bad["pmmh_chi2_p"] < 1e-3, (ok, bad)


@pytest.mark.parametrize("variant,metric,bad", [
    ("smc-forget-weights", "smc_m2_evidence_z", lambda v: v > 10),
    ("spawn-no-split", "smc_m3_evidence_z", lambda v: v > 10),
    ("resample-ignore-weights", "smc_m2_tv", lambda v: v > 0.05),
    ("mh-always-accept", "rmsmc_m2_tv", lambda v: v > 0.05)])
def test_broken_smc_blocks_are_caught(variant, metric, bad):
    cfg = _small_cfg(mb_hmm=False)
    out = smc_metrics(build_models(cfg), cfg, _gen(13), variant, _Ctx())
    assert bad(out[metric]), out


def test_broken_mh_is_caught_statistically():
    cfg = _small_cfg()
    models = build_models(cfg)
    out = mh_metrics(models, cfg, _gen(14), "mh-always-accept", _Ctx())
    assert out["mh_m1_chi2_p"] < 1e-3 and out["mh_m3_chi2_p"] < 1e-3
    out = mh_metrics(models, cfg, _gen(14), "mh-no-hastings", _Ctx())
    assert out["mh_geo_chi2_p"] < 1e-3


# ---------------------------------------------------------------- claims, teeth, config
def test_every_exact_teeth_variant_fails_its_claim():
    """Exact claims: their teeth variant breaks them at any scale (the statistical ones: tests above
    and `suite teeth`)."""
    cfg = _small_cfg()
    models = build_models(cfg)
    for c in CLAIMS:
        if c.teeth and c.metric in ("spawn_rel_err", "resample_multinomial_rel_err", "resample_systematic_rel_err",
                                    "push_evidence_rel_err", "collapse_rel_err", "mh_exact_m1_err", "mh_exact_m2_err",
                                    "mh_exact_geo_err"):
            out = exact_metrics(models, cfg, c.teeth)
            assert c.check(out, "small")["verdict"] == "fails", (c.id, out[c.metric])


def test_every_paper_claim_has_teeth_from_the_variant_field():
    for c in CLAIMS:
        assert c.kind in ("paper", "check")
        if c.kind == "paper":
            assert c.teeth in M.VARIANTS and c.teeth != "correct" and "small" in c.scales


def test_smoke_run_passes_its_claims(tmp_path):
    rec = runner.execute(runner.RunSpec(SLUG, "smoke", 0), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("error")
    for cid, entry in rec["claims"].items():
        if "smoke" in registry.get(SLUG).claim(cid).scales:
            assert entry["verdict"] == "holds", (cid, entry)
    assert rec["dataset"]["provenance"] == "stand-in"


def test_smoke_run_is_reproducible():
    r = registry.get(SLUG)
    cfg = config.resolve(r, "smoke", ["statistical=false"])
    a = run(cfg, for_tests()).metrics
    b = run(cfg, for_tests()).metrics
    assert a == b


def test_full_dry_run_and_scales_resolve(tmp_path):
    r = registry.get(SLUG)
    for s in ("smoke", "small", "full"):
        config.resolve(r, s)
    rec = runner.execute(runner.RunSpec(SLUG, "full", 0), tmp_path, device="cpu", dry_run=True)
    assert rec["status"] == "dry-run"


def test_config_ranges_and_relations():
    r = registry.get(SLUG)
    with pytest.raises(ConfigError):
        config.resolve(r, "small", ["particles=0"])
    with pytest.raises(ConfigError):
        config.resolve(r, "small", ["variant=broken"])
    with pytest.raises(ConfigError, match="exact_particles"):
        config.resolve(r, "small", ["coin_grid=30", "exact_particles=3"])
    assert Config().hmm_T == 8 and SCALES["small"] == {}
