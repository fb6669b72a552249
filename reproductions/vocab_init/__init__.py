"""vocab_init: Mundra et al., *An Empirical Comparison of Vocabulary Expansion and Initialization Approaches
for Language Models* (CoNLL 2024, arXiv 2407.05841).

Random / zero / mean / multivariate-normal / convex-hull (Dirichlet) / Constrained-Word2Vec initialisation
of new embedding rows; the convex-hull logit bound (C1) checked exactly on a tiny LM and on the real MiniLM
embedding matrix; continued pretraining on the new language at equal budget (C2/C3 in miniature).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Resources, Table

from .experiment import minilm_metrics, tiny_lm_metrics
from .method import METHODS, Variant

SYNTH = DatasetRef("synthetic Markov languages A/B (spec §6)", "stand-in")


@dataclass
class Config:
    vocab_a: Annotated[int, Range(4)] = 60
    n_new: Annotated[int, Range(1)] = 30
    branching: Annotated[float, Range(1)] = 4.0
    seq_len: Annotated[int, Range(4)] = 32
    n_train: Annotated[int, Range(16)] = 4000
    n_eval: Annotated[int, Range(16)] = 500
    dim: Annotated[int, Range(8)] = 64
    depth: Annotated[int, Range(1)] = 2
    heads: Annotated[int, Range(1)] = 4
    batch_size: Annotated[int, Range(1)] = 32
    lr: Annotated[float, Range(0, open_lo=True)] = 3e-3
    base_steps: Annotated[int, Range(1)] = 800
    cpt_steps: Annotated[int, Range(1)] = 150
    init_sigma: Annotated[float, Range(0)] = 0.02
    methods: tuple[str, ...] = METHODS
    n_hidden: Annotated[int, Range(1)] = 1000
    cw2v_steps: Annotated[int, Range(1)] = 300
    cw2v_window: Annotated[int, Range(1)] = 2
    cw2v_negatives: Annotated[int, Range(1)] = 5
    cw2v_lr: Annotated[float, Range(0, open_lo=True)] = 0.05
    minilm: bool = True
    minilm_new: Annotated[int, Range(1)] = 1000
    minilm_hidden: Annotated[int, Range(1)] = 1000
    full_data: bool = False
    full_dir: str = "vocab-init"
    full_old_lang: str = "en"
    full_lang: str = "hi"
    full_new_tokens: Annotated[int, Range(1)] = 5000
    full_seq_len: Annotated[int, Range(8)] = 512
    full_max_docs: Annotated[int, Range(10)] = 200_000
    full_eval_docs: Annotated[int, Range(1)] = 1000
    full_batch: Annotated[int, Range(1)] = 8
    full_lr: Annotated[float, Range(0, open_lo=True)] = 1e-4
    full_cpt_steps: Annotated[int, Range(1)] = 2000
    variant: Variant = "correct"   # TEETH ONLY: a deliberately broken method (method.py)

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or "random" not in self.methods:
            raise ConfigError(f"methods={self.methods}: use names from {METHODS}, including 'random' (baseline)")
        if self.n_new > self.vocab_a:
            raise ConfigError(f"n_new={self.n_new} must be <= vocab_a={self.vocab_a}")
        if self.dim % self.heads:
            raise ConfigError(f"dim={self.dim} must be divisible by heads={self.heads}")


SCALES = {
    "smoke": {"minilm": False, "n_train": 600, "n_eval": 128, "base_steps": 120, "cpt_steps": 30,
              "cw2v_steps": 60, "seq_len": 24, "dim": 32, "n_hidden": 300},
    "small": {},
    "full": {"full_data": True},
}
_ALL = ("smoke", "small", "full")

CLAIMS = [
    Claim(id="C1-hull-keeps-A", kind="paper", teeth="hull-unnormalised", metric="ppl_A_change_hull_max", op="<=",
          ref=0.02, scales=("small",),
          text="spec §6: after expansion, hull inits (mean, Dirichlet hull, CW2V) change held-out A perplexity by "
               "< 2 % at step 0 (the new rows never out-score every old row)"),
    Claim(id="C1-hull-vs-random-large", kind="paper", teeth="hull-unnormalised", metric="ppl_A_change_random-large",
          op=">", ref="ppl_A_change_hull_max", scales=_ALL,
          text="random rows of 5x typical norm change A perplexity more than the worst hull init"),
    Claim(id="C2-cw2v-beats-random", kind="paper", teeth="cw2v-ascent-unconstrained",
          metric="cw2v_vs_random", op="<=",
          ref=0.0, scales=("small",),
          text="CW2V's final B perplexity after equal-budget continued pretraining <= random init's"),
    Claim(id="C2-cw2v-near-best", kind="paper", teeth="cw2v-ascent-unconstrained",
          metric="cw2v_vs_best", op="<=",
          ref=0.05, scales=("small",), text="spec §6: CW2V within 5 % of the best method's final B perplexity"),
    Claim(id="C3-multivariate-beats-random", kind="paper", teeth="multivariate-unscaled-cov",
          metric="multivariate_vs_random", op="<=", ref=0.0, scales=("small",),
          text="multivariate-normal init's final B perplexity <= random init's (equal budget)"),
    Claim(id="C1-bound-tiny", kind="check", metric="bound_excess_hull_methods", op="<=", ref=1e-9, scales=_ALL,
          text="C1 exact: on the trained tiny LM, for every hidden state (real + 1k random) max new logit <= max "
               "old logit for mean, Dirichlet-hull and CW2V rows"),
    Claim(id="C1-bound-random-large-violates", kind="check", metric="bound_excess_random-large", op=">", ref=0.0,
          scales=_ALL, text="sanity contrast: 5x-norm random rows violate the bound"),
    Claim(id="cw2v-learns", kind="check", metric="cw2v_loss_drop", op=">", ref=0.0, scales=_ALL,
          text="the CW2V skip-gram loss decreases"),
]


@reproduction(
    track="initialization",
    paper=Paper(title="An Empirical Comparison of Vocabulary Expansion and Initialization Approaches for "
                "Language Models", authors="Mundra, Kishore, Dabre, Puduppully, Kunchukuttan, Khapra", year=2024,
                venue="CoNLL", url="https://arxiv.org/abs/2407.05841", code=""),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2),
               "small": Resources(cpus=1, mem_gb=2, time_min=5),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=1440)},
    claims=CLAIMS,
    tables=[Table(name="inits", metric="{col}_{row}", row_label="new-token init",
                  rows=("random", "zero", "mean", "multivariate", "hull", "cw2v"),
                  cols=("bound_excess", "ppl_A_change", "ppl_B_step0", "ppl_B", "cpt_steps", "cpt_seconds"),
                  title="Each initialisation of the new embeddings: logit-bound excess (<= 0: bound holds), change of "
                        "language-A perplexity at step 0, language-B perplexity before and after the same continued "
                        "pretraining, and its cost")],
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    ctx.log("vocab_init: config %s", asdict(cfg))
    if cfg.full_data:  # spec §5: HF base model + old/target-language corpora from disk (full.py)
        from .full import run_full
        return run_full(cfg, ctx)
    metrics = tiny_lm_metrics(cfg, ctx, cfg.variant)
    if cfg.minilm and not ctx.dry_run:
        metrics.update(minilm_metrics(cfg, ctx, cfg.variant))
    return Outcome(metrics=metrics, dataset=SYNTH)
