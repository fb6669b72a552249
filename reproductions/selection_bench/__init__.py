"""selection_bench: the data-selection track's shared protocol (issue 18), not a paper.

Every instruction selector of the track (MIG, kMQ, kMQ with iterative refinement, RDS+, TreeSynth
rebalancing, #InsTag, quality top-k, random) chooses k items from ONE procedural instruction pool in
ONE job; the same tiny causal LM is trained from scratch on each subset for the same steps and scored
on the same family-balanced test set. Each selector is its reproduction's own code with that
reproduction's preset (protocol.py), so the track page compares them side by side. The papers' own
claims are checked on each reproduction's page; this entry has mechanism checks only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, Outcome, Paper, Resources, Table

from .protocol import COLS, SELECTORS, build_pool, protocol, selector_configs


@dataclass
class Config:
    # --- the pool (suite/data/instructions.py): Zipf families, corrupted answers, junk families and
    #     a near-duplicate outlier cluster, so every selector's failure modes are visible
    n_pool: Annotated[int, Range(50)] = 3000
    n_families: Annotated[int, Range(6, 40)] = 30
    junk_families: Annotated[int, Range(0, 39)] = 5
    near_duplicates: Annotated[int, Range(0)] = 150
    zipf: Annotated[float, Range(0)] = 1.1
    corrupt_frac: Annotated[float, Range(0, 1)] = 0.3
    q_std: Annotated[float, Range(0)] = 1.0        # quality: correct ~ N(4, q_std), wrong ~ N(2, q_std)
    # --- the budget and the selectors (each with its own reproduction's preset at selector_scale)
    k: Annotated[int, Range(1)] = 300
    selectors: tuple[str, ...] = SELECTORS
    selector_scale: Literal["smoke", "small"] = "small"
    # --- the same tiny LM for every subset, and the test set
    sft_dim: Annotated[int, Range(8)] = 64
    sft_depth: Annotated[int, Range(1)] = 2
    sft_heads: Annotated[int, Range(1)] = 4
    sft_steps: Annotated[int, Range(0)] = 300
    sft_batch: Annotated[int, Range(1)] = 32
    sft_lr: Annotated[float, Range(0, open_lo=True)] = 3e-3
    eval_per_family: Annotated[int, Range(1)] = 10

    def validate(self) -> None:
        bad = [s for s in self.selectors if s not in SELECTORS]
        if bad or not self.selectors or len(set(self.selectors)) != len(self.selectors):
            raise ConfigError(f"selectors={self.selectors}: give distinct names from {SELECTORS}")
        if self.junk_families >= self.n_families:
            raise ConfigError(f"junk_families={self.junk_families} must be < n_families={self.n_families}")
        if self.k > self.n_pool // 2:
            raise ConfigError(f"k={self.k} must be <= n_pool/2")
        selector_configs(self)  # each paper's preset must accept this pool and budget (one-line error)


SCALES = {
    "smoke": {"selector_scale": "smoke", "n_pool": 400, "n_families": 12, "junk_families": 2, "near_duplicates": 40,
              "k": 96, "sft_dim": 32, "sft_steps": 4, "eval_per_family": 1},
    "small": {},
    # a larger pool and model; the papers' own pools and LLMs run in each reproduction's full scale
    "full": {"n_pool": 20000, "n_families": 40, "junk_families": 6, "near_duplicates": 1000, "k": 2000,
             "sft_dim": 128, "sft_depth": 4, "sft_steps": 2000, "eval_per_family": 25},
}

_ALL = ("smoke", "small", "full")
CLAIMS = [
    Claim(id="budget-respected", kind="check", metric="max_over_budget", op="<=", ref=0.0, scales=_ALL,
          text="no selector takes more than k items (the iterative loop may take fewer when clusters run dry: "
               "its size column says how many)"),
    Claim(id="same-training", kind="check", metric="sft_steps_spread", op="==", ref=0.0, scales=("small", "full"),
          text="every subset trains the same tiny LM for the same number of steps"),
    Claim(id="rds-no-repeats", kind="check", metric="rds_plus_repeats", op="==", ref=0.0, scales=_ALL,
          text="RDS+ round-robin over the families never picks an item twice"),
    Claim(id="mig-no-repeats", kind="check", metric="mig_repeats", op="==", ref=0.0, scales=_ALL,
          text="greedy MIG never picks an item twice"),
]


@reproduction(
    track="data-selection",
    paper=Paper(title="Shared protocol: every instruction selector of the track on one pool (a suite benchmark, "
                      "not a paper; each method's paper has its own entry)",
                authors="the suite (MIG, Diversify-and-Conquer, RDS+, TreeSynth, #InsTag: see their entries)",
                year=2026, venue="this suite"),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2),
               "small": Resources(cpus=1, mem_gb=4, time_min=20),
               "full": Resources(cpus=8, gpus=1, mem_gb=32, time_min=120)},
    claims=CLAIMS,
    tables=[Table(name="selectors", metric="{row}_{col}", rows=SELECTORS, cols=COLS, row_label="selector",
                  title="k items per selector from one pool, the same tiny LM and steps on each: exact match and "
                        "answer NLL (nats/token) on the family-balanced test set, family entropy (bits) and families "
                        "covered, shares of junk-family, near-duplicate and corrupted items, subset size, items "
                        "taken more than once, selection seconds, texts embedded or decoded by the selector, SFT "
                        "seconds")],
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    ctx.log("selection_bench: config %s", asdict(cfg))
    ref = build_pool(cfg, ctx.seed).ref  # the pool generator's own DatasetRef (stand-in)
    if ctx.dry_run:
        return Outcome(metrics={}, dataset=ref)
    return Outcome(metrics=protocol(cfg, ctx), dataset=ref)
