"""validated_inference: Ścibior et al., *Denotational Validation of Higher-Order Bayesian
Inference* (POPL 2018).

Representations of probabilistic programs (weighted samplers, populations, suspended programs,
traces) and the transformations between them (spawn, resample, push_evidence, collapse, advance,
finish; SMC, resample-move SMC, trace MH, PMMH), each checked to preserve the meaning of the
program: exactly by enumeration on discrete models, statistically on continuous ones and on the
composed algorithms. Broken transformations (``variant``) must be caught. See README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Resources

from .experiment import build_models, exact_metrics, mh_metrics, pmmh_metrics, smc_metrics
from .method import Variant

EXACT_TOL = 1e-12  # float64 round-off of sums over <= 10^6 terms; a broken block is off by >= 1e-2


@dataclass
class Config:
    # models (spec §6): M1 coin, M2 HMM, M3 Gaussian mean, the geometric recursion; data are fixed
    coin_grid: Annotated[int, Range(2)] = 11
    coin_obs: Annotated[int, Range(1)] = 10
    hmm_T: Annotated[int, Range(1, 10)] = 8          # 3^T paths are enumerated
    gauss_obs: Annotated[int, Range(1)] = 10
    geo_depth: Annotated[int, Range(2, 12)] = 6
    data_seed: Annotated[int, Range(0)] = 0          # the models' data: fixed, run seeds vary inference only
    # exact checks: the law of spawn(n) >> M1 has 11^n outcomes
    exact_particles: Annotated[int, Range(1, 3)] = 3
    mh_exact_hmm_T: Annotated[int, Range(1, 6)] = 4  # M2 prefix for the exact MH kernel (proposals re-run boxes)
    # SMC / RMSMC on M2 (and M3, monad-bayes' HMM): R independent runs of n particles
    particles: Annotated[int, Range(1)] = 100
    smc_runs: Annotated[int, Range(2)] = 2000
    scheme: Literal["multinomial", "systematic"] = "multinomial"
    rmsmc_moves: Annotated[int, Range(1)] = 2
    rmsmc_runs: Annotated[int, Range(2)] = 1000
    mb_hmm: bool = True
    # trace MH: independent chains from the prior, final states compared with the exact posterior
    mh_chains: Annotated[int, Range(10)] = 5000
    mh_steps: Annotated[int, Range(1)] = 100
    chi2_bins: Annotated[int, Range(2)] = 20
    # PMMH on a sticky HMM with unknown self-transition probability (4-point grid)
    pmmh_T: Annotated[int, Range(1)] = 12
    pmmh_particles: Annotated[int, Range(1)] = 20
    pmmh_chains: Annotated[int, Range(10)] = 1000
    pmmh_steps: Annotated[int, Range(1)] = 30
    statistical: bool = True                         # False: exact checks only
    variant: Variant = "correct"                     # TEETH ONLY: a broken transformation (method.py)

    def validate(self) -> None:
        if self.coin_grid ** self.exact_particles > 20000:
            raise ConfigError(f"coin_grid^exact_particles = {self.coin_grid ** self.exact_particles} outcomes is "
                              f"too many to enumerate; lower exact_particles or coin_grid")


SCALES = {
    "smoke": {"smc_runs": 200, "particles": 50, "rmsmc_runs": 100, "mb_hmm": False, "mh_chains": 1000,
              "mh_steps": 30, "pmmh_T": 8, "pmmh_particles": 10, "pmmh_chains": 200, "pmmh_steps": 10},
    "small": {},
    # larger R and chains, longer PMMH data (spec §5: "the CPU suite at larger R")
    "full": {"smc_runs": 20000, "rmsmc_runs": 5000, "rmsmc_moves": 5, "mh_chains": 50000, "mh_steps": 200,
             "pmmh_T": 30, "pmmh_particles": 100, "pmmh_chains": 5000, "pmmh_steps": 50},
}

_EX = dict(op="==", ref=0.0, tol=EXACT_TOL)
_STAT = ("small", "full")

CLAIMS = [
    # ---- C2: each building block preserves the measure, exactly (enumeration on M1 / a fixed population)
    Claim(id="C2-spawn-exact", kind="paper", teeth="spawn-no-split", metric="spawn_rel_err", **_EX,
          text="spawn(3) then M1: the expected population measure equals M1's enumerated measure exactly "
               "(max error / total mass <= 1e-12, 1331 outcomes)"),
    Claim(id="C2-resample-multinomial-exact", kind="paper", teeth="resample-unit-weights",
          metric="resample_multinomial_rel_err", **_EX,
          text="multinomial resampling preserves the measure exactly (every ancestor draw enumerated; the fixed "
               "3-particle population and the law of spawn(3) >> M1)"),
    Claim(id="C2-resample-systematic-exact", kind="paper", teeth="resample-ignore-weights",
          metric="resample_systematic_rel_err", **_EX,
          text="systematic resampling preserves the measure exactly (its single uniform enumerated over the "
               "intervals between its breakpoints)"),
    Claim(id="C2-push-evidence-exact", kind="paper", teeth="normalize-drop-evidence",
          metric="push_evidence_rel_err", **_EX,
          text="normalise/push_evidence (divide by Z, emit Score(Z) outside) preserves the measure exactly"),
    Claim(id="C2-collapse-exact", kind="paper", teeth="collapse-ignore-weights", metric="collapse_rel_err", **_EX,
          text="collapse/proper (pick one particle by weight, emit Score(Z)) preserves the measure exactly"),
    # ---- C3: the trace MH kernel leaves the posterior invariant, exactly
    Claim(id="C3-mh-invariant-exact-m1", kind="paper", teeth="mh-always-accept", metric="mh_exact_m1_err", **_EX,
          text="one trace-MH step from the exact M1 posterior gives the exact M1 posterior (all proposals enumerated)"),
    Claim(id="C3-mh-invariant-exact-m2", kind="paper", teeth="mh-always-accept", metric="mh_exact_m2_err", **_EX,
          text="the same on M2's first 4 steps, where a re-drawn state changes the distributions of the replayed "
               "later draws (the kernel integrated over each path's box of uniforms)"),
    Claim(id="C3-mh-invariant-exact-varlen", kind="paper", teeth="mh-no-hastings", metric="mh_exact_geo_err", **_EX,
          text="the same on variable-length traces (geometric recursion): the m/m' correction makes MH invariant"),
    # ---- C2 composed: SMC, RMSMC, PMMH (statistical, spec §6 small)
    Claim(id="C2-smc-evidence-unbiased", kind="paper", teeth="smc-forget-weights", metric="smc_m2_evidence_z",
          op="<=", ref=3.0, scales=_STAT,
          text="SMC on M2 (n=100, R=2000): mean evidence estimate within 3 standard errors of the forward algorithm's"),
    Claim(id="C2-smc-posterior", kind="paper", teeth="resample-ignore-weights", metric="smc_m2_tv", op="<=", ref=0.02,
          scales=_STAT,
          text="SMC on M2: posterior marginals of the pooled properly weighted particles within TV 0.02 (worst step)"),
    Claim(id="C2-smc-evidence-unbiased-continuous", kind="paper", teeth="spawn-no-split", metric="smc_m3_evidence_z",
          op="<=", ref=3.0, scales=_STAT,
          text="SMC on continuous M3: mean evidence estimate within 3 SE of the closed-form evidence"),
    Claim(id="C2-rmsmc-posterior", kind="paper", teeth="mh-always-accept", metric="rmsmc_m2_tv", op="<=", ref=0.03,
          scales=_STAT,
          text="resample-move SMC on M2 (2 trace-MH moves per step): posterior marginals within TV 0.03"),
    Claim(id="C3-mh-m1-chi2", kind="paper", teeth="mh-always-accept", metric="mh_m1_chi2_p", op=">=", ref=0.01,
          scales=_STAT, text="trace MH on M1: chi-square test of the chains' final states vs the exact posterior, p > 0.01"),
    Claim(id="C3-mh-m3-chi2", kind="paper", teeth="mh-always-accept", metric="mh_m3_chi2_p", op=">=", ref=0.01,
          scales=_STAT,
          text="trace MH on continuous M3: chi-square over 20 equiprobable bins of the closed-form posterior, p > 0.01"),
    Claim(id="C3-mh-varlen-chi2", kind="paper", teeth="mh-no-hastings", metric="mh_geo_chi2_p", op=">=", ref=0.01,
          scales=_STAT, text="trace MH on variable-length traces matches the enumerated posterior (chi-square p > 0.01)"),
    Claim(id="C2-pmmh-chi2", kind="paper", teeth="normalize-drop-evidence", metric="pmmh_chi2_p", op=">=", ref=0.01,
          scales=_STAT,
          text="PMMH (trace MH over θ, pseudo-likelihood = pushed-out SMC evidence) matches the exact parameter "
               "posterior (chi-square p > 0.01)"),
    # ---- checks: the ground truth, the power of the tests, secondary statistics
    Claim(id="enum-m1-closed-form", kind="check", metric="enum_m1_abs_err", op="<=", ref=1e-12,
          text="the Enumerator's measure of M1 equals the closed form (abs err < 1e-12)"),
    Claim(id="enum-m2-forward", kind="check", metric="enum_m2_abs_err", op="<=", ref=1e-12,
          text="the Enumerator's evidence and marginals of M2 equal the forward-backward algorithm's (abs err < 1e-12)"),
    Claim(id="enum-varlen-closed-form", kind="check", metric="enum_geo_abs_err", op="<=", ref=1e-12,
          text="the Enumerator's measure of the geometric recursion equals its closed form"),
    Claim(id="neg-control-detected", kind="check", metric="neg_control_unit_weights_rel_err", op=">=", ref=1e-3,
          text="spec §6 negative control: resampling that resets weights to 1 fails the mass-preservation check"),
    Claim(id="no-hastings-detected-exact", kind="check", metric="mh_exact_geo_no_hastings_err", op=">=", ref=1e-3,
          text="MH without the m/m' correction is not invariant on variable-length traces (exact)"),
    Claim(id="no-hastings-detected-chi2", kind="check", metric="mh_geo_no_hastings_chi2_p", op="<", ref=0.01,
          scales=_STAT, text="the chi-square test detects MH without the m/m' correction (p < 0.01)"),
    Claim(id="mh-m3-moments", kind="check", metric="mh_m3_mean_z", op="<=", ref=3.0, scales=_STAT,
          text="trace MH on M3: posterior mean within 3 standard errors of the closed form"),
    Claim(id="mh-m3-variance", kind="check", metric="mh_m3_var_z", op="<=", ref=3.0, scales=_STAT,
          text="trace MH on M3: posterior variance within 3 standard errors of the closed form"),
    Claim(id="is-evidence-unbiased-continuous", kind="check", metric="is_m3_evidence_z", op="<=", ref=3.0,
          scales=_STAT, text="the Weighted sampler's mean weight on M3 is within 3 SE of the closed-form evidence"),
    Claim(id="rmsmc-evidence-unbiased", kind="check", metric="rmsmc_m2_evidence_z", op="<=", ref=3.0, scales=_STAT,
          text="resample-move SMC's evidence estimate on M2 within 3 SE of the forward algorithm's"),
    Claim(id="smc-monad-bayes-hmm", kind="check", metric="smc_mb_hmm_evidence_z", op="<=", ref=3.0, scales=_STAT,
          text="SMC on monad-bayes' HMM example (16 Gaussian observations): evidence within 3 SE of the forward algorithm's"),
]


@reproduction(
    track="analysis",
    paper=Paper(title="Denotational Validation of Higher-Order Bayesian Inference",
                authors="Adam Ścibior, Ohad Kammar, Matthijs Vákár, Sam Staton, Hongseok Yang, Yufei Cai, "
                        "Klaus Ostermann, Sean K. Moss, Chris Heunen, Zoubin Ghahramani",
                year=2018, venue="POPL", url="https://arxiv.org/abs/1711.03219",
                code="https://github.com/tweag/monad-bayes"),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=2),
               "small": Resources(cpus=1, mem_gb=4, time_min=10),
               "full": Resources(cpus=4, mem_gb=32, time_min=240)},
    claims=CLAIMS,
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    models = build_models(cfg)
    ref = DatasetRef("generated-models(M1-coin,M2-hmm,M3-gaussian,geometric,monad-bayes-hmm)", "stand-in")
    ctx.log("validated_inference: config %s", asdict(cfg))
    if ctx.dry_run:
        return Outcome(metrics={}, dataset=ref)
    gen = ctx.generator()
    metrics = exact_metrics(models, cfg, cfg.variant)
    if cfg.statistical:
        metrics.update(smc_metrics(models, cfg, gen, cfg.variant, ctx))
        metrics.update(mh_metrics(models, cfg, gen, cfg.variant, ctx))
        metrics.update(pmmh_metrics(models, cfg, gen, cfg.variant, ctx))
    return Outcome(metrics=metrics, dataset=ref)
