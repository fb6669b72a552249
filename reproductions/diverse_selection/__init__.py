"""diverse_selection: Yu, Chen, Ahmadian, Fadaee, *Diversify and Conquer: Diversity-Centric Data Selection
with Iterative Refinement* (arXiv 2409.11378, ICLR 2025; code github.com/for-ai/iterative-data-selection).

k-means clusters of instruction embeddings; kMQ samples B/K items per cluster without replacement with
p ∝ exp(quality); the iterative refinement trains on a kM-Random subset of B/R, scores the selected items
with a reward difference RM(gold) - RM(model), re-weights clusters by a softmax of the mean difference and
draws the next B/R items per cluster by a multinomial allocation (spec §3). CPU scales: the shared
procedural instruction pool with 5 junk families and 200 near-duplicate outliers, the shared tiny SFT
model, an oracle checker as the reward substitute (spec §6); Random, kMQ and Iterative in the same run at
equal budget and equal final training steps. Full scale: the selection on a processed open-instruct pool
from disk with the official settings (spec §5, README).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from suite.config import Range
from suite.context import RunContext
from suite.data.instructions import make_pool
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, Outcome, Paper, Resources, Table

from .experiment import ARMS, COLS, cpu_protocol
from .full import full_protocol
from .method import Variant


@dataclass
class Config:
    # --- selection (spec §3; full-scale defaults = the official configs, README table)
    k: Annotated[int, Range(1)] = 1024                       # kMQ clusters (coreset/KMenasRandomDeita.yaml)
    fraction: Annotated[float, Range(0, 1, open_lo=True)] = 0.05   # kMQ budget share of the pool
    niter: Annotated[int, Range(1)] = 300                    # faiss.Kmeans niter (methods/deita/kmeansrandom.py)
    nredo: Annotated[int, Range(1)] = 5                      # faiss.Kmeans nredo
    iter_k: Annotated[int, Range(1)] = 64                    # iterative clusters (coreset/KMeansIter.yaml)
    iter_fraction: Annotated[float, Range(0, 1, open_lo=True)] = 0.1  # iterative budget share (KMeansIter.yaml)
    rounds: Annotated[int, Range(1)] = 4                     # R (KMeansIter.yaml; the spec's text says 3)
    temperature: Annotated[float, Range(0, open_lo=True)] = 1.0    # softmax temperature over S_c (spec §7)
    redistribute: bool = False                               # exhausted clusters: the repo drops the shortfall
    # --- CPU protocol (spec §6)
    synthetic: bool = False                                  # the procedural pool (small, smoke)
    embed: Literal["minilm", "hash"] = "minilm"              # hash = offline stand-in (smoke, core install)
    n_pool: Annotated[int, Range(20)] = 4000
    n_families: Annotated[int, Range(6, 40)] = 30
    junk_families: Annotated[int, Range(0, 39)] = 5
    near_duplicates: Annotated[int, Range(0)] = 200
    zipf: Annotated[float, Range(0)] = 1.1
    corrupt_frac: Annotated[float, Range(0, 1)] = 0.3
    q_std: Annotated[float, Range(0)] = 1.0                  # quality: correct ~ 4 +- q_std, wrong ~ 2 +- q_std
    budget: Annotated[int, Range(1)] = 400                   # B (spec §6)
    rm_noise: Annotated[float, Range(0)] = 0.05              # oracle checker RM noise (spec §6)
    max_new: Annotated[int, Range(1)] = 24                   # generation length for scoring the selected items
    eval_per_family: Annotated[int, Range(1)] = 10
    sft_dim: Annotated[int, Range(8)] = 96
    sft_depth: Annotated[int, Range(1)] = 2
    sft_heads: Annotated[int, Range(1)] = 4
    sft_steps: Annotated[int, Range(0)] = 300                # final model of every arm (equal training steps)
    round_steps: Annotated[int, Range(0)] = 300              # the iterative arm's intermediate models M_0..M_{R-2}
    sft_batch: Annotated[int, Range(1)] = 32
    sft_lr: Annotated[float, Range(0, open_lo=True)] = 3e-3
    check_draws: Annotated[int, Range(100)] = 10_000         # kMQ chi-square draws (spec §6 smoke)
    # --- full scale (spec §5): data layout under the data root (full.py)
    pool_name: str = "wizardlm"
    variant: Variant = "correct"   # TEETH ONLY: sign-flipped reward difference, uniform (no exp(q)) sampling,
    #                                shuffled-clusters (k-means labels on the wrong items; kMQ and the
    #                                iterative loop both use them)

    def validate(self) -> None:
        if self.synthetic:
            if self.junk_families >= self.n_families:
                raise ConfigError(f"junk_families={self.junk_families} must be < n_families={self.n_families}")
            if self.near_duplicates >= self.n_pool // 2:
                raise ConfigError(f"near_duplicates={self.near_duplicates} must be < n_pool/2")
            if self.k != self.iter_k:
                raise ConfigError("the CPU protocol clusters once: set iter_k = k")
            if self.k > self.n_pool or self.budget // (self.rounds * self.k) < 1:
                raise ConfigError(f"need K <= n_pool and B/(R K) >= 1 (round 0 draws B/(R K) per cluster); "
                                  f"got K={self.k}, B={self.budget}, R={self.rounds}")
            if self.budget > self.n_pool // 2:
                raise ConfigError(f"budget={self.budget} must be <= n_pool/2")


_CPU = {"synthetic": True, "k": 25, "iter_k": 25, "rounds": 3, "niter": 50, "nredo": 2}
SCALES = {
    "smoke": {**_CPU, "embed": "hash", "n_pool": 400, "near_duplicates": 40, "k": 8, "iter_k": 8, "budget": 96,
              "sft_dim": 32, "sft_steps": 4, "round_steps": 4, "eval_per_family": 1, "max_new": 8,
              "check_draws": 10_000},
    "small": {**_CPU, "n_pool": 1500, "budget": 300, "sft_dim": 64, "sft_steps": 300, "round_steps": 150,
              "sft_lr": 1e-2, "eval_per_family": 16},
    # selection/config/coreset/KMeansIter.yaml as released (K 512, fraction 0.05, rounds 3; spec §3, §5)
    "full": {"iter_k": 512, "iter_fraction": 0.05, "rounds": 3},
}

_SMALL = ("small",)
_PAPER_GAIN = ("spec §2: iterative ≈ +7 % over random, averaged over MMLU/GSM8K/BBH/TyDiQA/HumanEval/AlpacaEval "
               "(Llama-2-7B, 5 % of WizardLM/ShareGPT/Alpaca); our stand-in is exact match of a tiny LM")

CLAIMS = [
    # ---- paper claims (spec §6 small)
    Claim(id="C3-junk-suppressed", kind="paper", teeth="sign-flipped", metric="junk_ratio_vs_random", op="<=",
          ref=0.5, scales=_SMALL,
          text="spec §6: the share of junk-family items among the items added in the last refinement round is "
               "<= 0.5 x the junk share of a random subset of the same size"),
    Claim(id="C3-junk-falls", kind="paper", teeth="sign-flipped", metric="junk_share_max_rise", op="<=", ref=0.0,
          scales=_SMALL,
          text="spec §6: the junk share of each round's new items never rises from one round to the next "
               "(largest rise <= 0)"),
    Claim(id="C2-iterative-beats-random", kind="paper", teeth="shuffled-clusters", metric="acc_gain_iter_vs_random",
          op=">=", ref=0.03, scales=_SMALL, paper=7.0, paper_note=_PAPER_GAIN,
          text="spec §6: the tiny LM trained on the iterative subset beats the one trained on a random subset of the "
               "same size (same final steps) by >= 3 pts exact match on the good families (spec's margin, kept; "
               "failed on all calibration seeds: +0.3/-0.2/-0.5 pts, README)"),
    Claim(id="C2-iterative-nll-vs-random", kind="paper", teeth="shuffled-clusters", metric="nll_drop_iter_vs_random",
          op=">", ref=0.0, scales=_SMALL,
          text="the iterative model assigns the gold test answers a lower cross-entropy than the random-subset model "
               "(same size, same final steps): the low-noise read-out of spec §6's accuracy claim (README)"),
    # C1-kmq-beats-random (acc_gain_kmq_vs_random >= 0) was declared and WITHDRAWN: it could not fail. Its teeth
    # quality-inverted (p ∝ exp(-q), since removed) still held (+1.25 pts, seed 0), and so did kMQ on shuffled cluster labels with p ∝ exp(-q)
    # (63 % wrong answers vs random's 39 %: exact match 0.100 vs 0.100, seed 0): the tiny LM's exact match does
    # not see answer quality at this scale (README). The metric is still reported in the arms table.
    Claim(id="C1-kmq-quality-weighting", kind="paper", teeth="uniform-sampling", metric="kmq_corrupt_ratio_vs_random",
          op="<=", ref=0.75, scales=_SMALL,
          text="spec §3: sampling within clusters with p ∝ exp(q) keeps <= 0.75 x random's share of wrong answers "
               "(calibrated on seeds 100-102: 0.685/0.529/0.509; q is a noisy proxy and junk clusters keep their "
               "B/K, so this is not true by construction)"),
    Claim(id="C2-iterative-beats-kmq", kind="paper", teeth="sign-flipped", metric="acc_gain_iter_vs_kmq", op=">=",
          ref=0.0, scales=_SMALL, paper=3.8,
          paper_note="spec §2: iterative ≈ +3.8 % over the best prior sampler (their benchmarks)",
          text="spec §6 (reported): Iterative >= kMQ in exact match; failed on all calibration seeds "
               "(-2.7/-2.0/-3.7 pts), a negative result at this scale (README)"),
    # ---- checks (spec §6 smoke)
    Claim(id="softmax-weights", kind="check", metric="softmax_err", op="<=", ref=1e-9,
          text="w = exp(S_c) / sum exp(S_c) over the clusters with scored items, summing to 1"),
    Claim(id="allocation-sums-to-budget", kind="check", metric="alloc_sum_err", op="==", ref=0.0,
          text="the multinomial allocation of one round sums to B/R"),
    Claim(id="allocation-sums-in-run", kind="check", metric="iter_alloc_sum_err_r1", op="==", ref=0.0,
          scales=("smoke", "small"), text="in the run, round 1's allocation sums to its budget"),
    Claim(id="no-item-twice", kind="check", metric="iter_dup_total", op="==", ref=0.0, scales=("smoke", "small"),
          text="no item is selected twice across rounds"),
    Claim(id="no-item-twice-toy", kind="check", metric="toy_duplicates", op="==", ref=0.0,
          text="no item is added twice in the exhausted-cluster toy (with and without redistribution)"),
    Claim(id="exhausted-recorded", kind="check", metric="exhausted_shortfall_recorded", op="==", ref=1.0,
          text="a cluster with fewer unselected items than its allocation gives them all and the shortfall is "
               "recorded (redistribute off, the repo's behaviour)"),
    Claim(id="exhausted-redistributed", kind="check", metric="exhausted_redistributed", op="==", ref=1.0,
          text="with redistribute on, the shortfall is filled from the clusters that still have items"),
    Claim(id="kmq-exp-q", kind="check", metric="kmq_chi2_p", op=">=", ref=0.001,
          text="the kMQ sampler's picks follow p ∝ exp(q) (chi-square over 10k draws, p >= 0.001)"),
    Claim(id="kmeans-seeded", kind="check", metric="kmeans_seed_mismatch", op="==", ref=0.0,
          text="k-means with the same seed gives the same assignment"),
]


@reproduction(
    track="data-selection",
    paper=Paper(title="Diversify and Conquer: Diversity-Centric Data Selection with Iterative Refinement",
                authors="Simon Yu, Liangyu Chen, Sara Ahmadian, Marzieh Fadaee", year=2025, venue="ICLR 2025",
                url="https://arxiv.org/abs/2409.11378", code="https://github.com/for-ai/iterative-data-selection"),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2),
               "small": Resources(cpus=1, mem_gb=2, time_min=4),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=120)},
    claims=CLAIMS,
    tables=[Table(name="arms", metric="{row}_{col}", rows=ARMS, cols=COLS, row_label="selector",
                  title="equal budget and final SFT steps: exact match on the good families, junk-family share, "
                        "wrong-answer rate, selection seconds (embedding + k-means + generation/scoring), model "
                        "queries (generations), SFT steps and seconds (iterative: all rounds)")],
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    ctx.log("diverse_selection: config %s", asdict(cfg))
    if not cfg.synthetic:
        metrics, ref = full_protocol(cfg, ctx, cfg.variant)
        return Outcome(metrics=metrics, dataset=ref)
    ref = make_pool(30, seed=0).ref
    if ctx.dry_run:
        return Outcome(metrics={}, dataset=ref)
    return Outcome(metrics=cpu_protocol(cfg, ctx, cfg.variant), dataset=ref)
