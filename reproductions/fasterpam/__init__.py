"""FasterPAM (Schubert & Rousseeuw, Information Systems 2021): PAM, FastPAM1, FasterPAM, CLARA.

Declares the reproduction: one run measures, for every k, BUILD + {PAM, FastPAM1, FasterPAM} SWAP
from the same BUILD medoids, FasterPAM and alternating k-medoids from random medoids, CLARA and
FastCLARA, and the Rust reference (``kmedoids`` package) from the same medoids. See README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

import numpy as np

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, Outcome, Paper, Plot, Resources

from .experiment import (KMEDOIDS_MISSING, euclidean_matrix, have_kmedoids, load_full_data, load_stand_in,
                         measure)
from .method import Variant


@dataclass
class Config:
    n: Annotated[int, Range(1)] = 1000  # objects (subsample size)
    ks: tuple[Annotated[int, Range(1)], ...] = (5, 10, 20, 40, 100)
    dataset: str = "digits"            # "digits" (stand-in, spec §6) | "mnist" (IDX, spec §5)
    random_inits: Annotated[int, Range(1)] = 5  # random initialisations per k (paper: 10 seeds)
    max_iter: Annotated[int, Range(1)] = 100  # SWAP iterations / FasterPAM passes
    compare_kmedoids: bool = True      # time and TD of the Rust reference from the same medoids
    clara: bool = True                 # CLARA (PAM on 5×(40+2k)) and FastCLARA (FasterPAM on 5×(80+4k))
    extra_ns: tuple[Annotated[int, Range(1)], ...] = ()  # further n measured without PAM (too slow there)
    variant: Variant = "correct"       # TEETH ONLY: "no-correction" / "stale-second" / "per-medoid-gains"

    def validate(self) -> None:
        """Relations between fields, checked when the config resolves (before any run starts)."""
        if self.ks and max(self.ks) >= self.n:
            raise ConfigError(f"ks={','.join(map(str, self.ks))} needs every k < n={self.n}; lower ks or raise n")
        if self.ks and self.extra_ns and max(self.ks) >= min(self.extra_ns):
            raise ConfigError(f"extra_ns={','.join(map(str, self.extra_ns))} needs every n > max(ks)={max(self.ks)}; "
                              f"raise extra_ns or lower ks")


SCALES = {
    "smoke": {"n": 200, "ks": (5, 10, 100), "random_inits": 2, "compare_kmedoids": True},
    "small": {"n": 1000, "ks": (5, 10, 20, 40, 100), "random_inits": 5},
    "full": {"n": 5000, "ks": (10, 20, 50, 100, 200), "dataset": "mnist", "random_inits": 10,
             "extra_ns": (10000, 20000)},
}

CLAIMS = [
    # C1: FastPAM1 takes exactly PAM's decisions (same TD), at O(k) less cost per SWAP iteration.
    Claim(id="C1-fastpam1-equals-pam", kind="paper", teeth="no-correction",
          text="FastPAM1 reaches exactly PAM's TD from the same BUILD medoids (every k)",
          metric="fastpam1_td_minus_pam_td_abs", op="==", ref=0.0, tol=1e-9),
    Claim(id="C1-fastpam1-same-medoids", kind="check",
          text="FastPAM1 reaches exactly PAM's medoid set (number of k where they differ is 0); "
               "the medoid-set form of C1-fastpam1-equals-pam",
          metric="fastpam1_medoid_mismatch", op="==", ref=0.0),
    Claim(id="C1-fastpam1-O(k)-evals", kind="paper", teeth="per-medoid-gains",
          text="PAM needs ≥ k/2 times the distance evaluations of FastPAM1 in SWAP (O(k) speed-up)",
          metric="fastpam1_evals_speedup_over_k", op=">=", ref=0.5),
    Claim(id="C1-fastpam1-speedup-grows-time", kind="paper", teeth="per-medoid-gains",
          text="SWAP speed-up of FastPAM1 over PAM in seconds (same decisions, same iterations) grows "
               "at least a quarter as fast as k: the O(k) saving in wall time",
          metric="fastpam1_speedup_growth_s_rel", op=">=", ref=0.25, scales=("small", "full")),
    # C2: the eager FasterPAM loses (almost) nothing in TD.
    Claim(id="C2-fasterpam-within-1pct", kind="paper", teeth="no-correction",
          text="FasterPAM's TD is within 1 % of PAM's from the same BUILD medoids (worst k)",
          metric="fasterpam_td_over_pam_td", op="<=", ref=1.01),
    # C3: with the fast SWAP, random initialisation is competitive with BUILD.
    Claim(id="C3-random-init-within-1pct", kind="paper", teeth="no-correction",
          text="FasterPAM from random medoids (mean over inits) is within 1 % of PAM (BUILD) TD",
          metric="fasterpam_rand_td_over_pam_td", op="<=", ref=1.01, scales=("small", "full")),
    # C4: the SWAP speed-up over PAM grows with k (458x at k=100, 1191x at k=200 on MNIST).
    Claim(id="C4-speedup-grows-evals", kind="paper", teeth="per-medoid-gains",
          text="SWAP speed-up of FasterPAM over PAM in distance evaluations grows at least half as "
               "fast as k (ratio(k_max)/ratio(k_min) ≥ 0.5·k_max/k_min)",
          metric="speedup_growth_evals_rel", op=">=", ref=0.5),
    # Not a paper claim: FasterPAM's time speed-up grows with k through two mechanisms at once (the
    # O(n) routine and eager swaps), so no single broken variant isolates it (per-medoid-gains still
    # gives 0.31 at small seed 0: eagerness alone makes it grow). C1-fastpam1-speedup-grows-time
    # is the wall-clock O(k) claim; C4-speedup-grows-evals and C4-speedup-k100 carry C4.
    Claim(id="C4-speedup-grows-time", kind="check",
          text="SWAP speed-up of FasterPAM over PAM in seconds grows at least a quarter as fast as k",
          metric="speedup_growth_s_rel", op=">=", ref=0.25, scales=("small", "full")),
    Claim(id="C4-speedup-k100", kind="paper", teeth="per-medoid-gains",
          text="SWAP-phase wall-time speed-up of FasterPAM over PAM at k=100 is at least k/4 (bound set on "
               "calibration seeds 100-102, README)",
          metric="swap_speedup_s@k=100", op=">=", ref=25.0, scales=("small", "full"),
          paper=458.0, paper_note="C4: MNIST, k=100; SWAP time"),
    # Agreement with the authors' reference implementation: a check of ours, not a paper result.
    # Needs the optional `kmedoids` package; without it the metric is absent (verdict "missing").
    Claim(id="R-same-as-kmedoids", kind="check",
          text="Our FasterPAM reaches the Rust reference's (kmedoids.fasterpam) TD from the same "
               "medoids within 0.5 % (worst k; exactly equal unless a float tie is decided "
               "differently — exact equality is a test on tie-free data)",
          metric="fasterpam_vs_kmedoids_td_rel", op="<=", ref=0.005),
]

PLOTS = [
    Plot(name="swap_time_vs_k", x="k",
         ys=("pam_swap_s", "fastpam1_swap_s", "fasterpam_swap_s", "kmedoids_swap_s"), logy=True,
         title="SWAP time from the same BUILD medoids", ylabel="seconds"),
    Plot(name="swap_speedup_vs_k", x="k", ys=("swap_speedup_s", "swap_speedup_evals",
                                              "fastpam1_speedup_s", "fastpam1_speedup_evals"),
         logy=True, title="Speed-up over PAM SWAP", ylabel="ratio"),
    Plot(name="td_vs_k", x="k", ys=("pam_td", "fasterpam_td", "fasterpam_rand_td",
                                    "alternating_rand_td", "clara_td", "fastclara_td"),
         title="Total deviation", ylabel="TD"),
]


def _load(cfg: Config, ctx: RunContext, n: int, rng: np.random.Generator):
    if cfg.dataset == "digits":
        return load_stand_in(n, rng)
    if cfg.dataset == "mnist":
        return load_full_data(cfg, ctx, n, rng)
    raise ConfigError(f"dataset={cfg.dataset!r} unknown; use 'digits' or 'mnist'")


@reproduction(
    track="clustering",
    paper=Paper(title="Fast and Eager k-Medoids Clustering: O(k) Runtime Improvement of the PAM, "
                      "CLARA, and CLARANS Algorithms",
                authors="Erich Schubert, Peter J. Rousseeuw", year=2021, venue="Information Systems",
                url="https://arxiv.org/abs/2008.05171", code="https://github.com/kno10/rust-kmedoids"),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=5),
               "small": Resources(cpus=2, mem_gb=4, time_min=30),
               "full": Resources(cpus=4, mem_gb=32, time_min=1440)},
    claims=CLAIMS,
    plots=PLOTS,
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    rng = np.random.default_rng(ctx.seed)
    X, ref = _load(cfg, ctx, cfg.n, rng)
    D = euclidean_matrix(X)
    ctx.log("fasterpam: data %s (%s) n=%d, config %s", ref.name, ref.provenance, len(D), asdict(cfg))
    if ctx.dry_run:
        for n in cfg.extra_ns:
            euclidean_matrix(_load(cfg, ctx, n, rng)[0])
        return Outcome(metrics={}, dataset=ref)
    metrics = measure(D, cfg, rng, ctx, with_pam=True)
    for n in cfg.extra_ns:
        Dn = euclidean_matrix(_load(cfg, ctx, n, rng)[0])
        metrics.update(measure(Dn, cfg, rng, ctx, with_pam=False, suffix=f"_n{n}"))
    notes: dict = {"n": int(len(D))}
    if cfg.compare_kmedoids and not have_kmedoids():
        notes["kmedoids"] = KMEDOIDS_MISSING
        ctx.log("fasterpam: %s", KMEDOIDS_MISSING)
    return Outcome(metrics=metrics, dataset=ref, notes=notes)
