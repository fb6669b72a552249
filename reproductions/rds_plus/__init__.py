"""rds_plus: Ivison, Zhang, Brahman, Koh, Dasigi, *Large-Scale Data Selection for Instruction Tuning*
(RDS+; arXiv 2503.01807, 2025), spec ``papers/rds_plus.md``.

RDS+ embeds every pool item and every target-task query example with the base LM's final hidden
states, position-weighted mean pooled (SGPT weights t / sum s) and L2-normalised, scores items by cosine
similarity, aggregates over a task's queries by the max, and picks round-robin across tasks (method.py,
spec §3). Small scale (experiment.py, spec §6): a procedural instruction pool with 12 task families and
20% chit-chat, three target families with 16 queries each; RDS+ vs plain mean pooling, last token,
MiniLM sentence embeddings and random selection at equal n, each followed by the same tiny-LM fine-tune.
Full scale (full.py, spec §5): the Tulu-2 unfiltered pool and a Llama-2-7B base model read from disk,
a sharded fp16 index, single-task top-10k and multi-task round-robin selection. See README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, Outcome, Paper, Resources, Table

from . import experiment as E
from .method import Aggregation, RRSkip, Variant

FULL_TASKS = ("alpacafarm", "gsm8k_shots", "bbh_shots", "tydiqa_shots", "codex", "squad", "mmlu_shots")
QUERY_MAX_LEN = (512, 2048, 2048, 2048, 512, 512, 512)  # per task of FULL_TASKS (README table)


@dataclass
class Config:
    # ---- the procedural pool and target tasks (spec §6)
    pool_size: Annotated[int, Range(50)] = 2000
    n_families: Annotated[int, Range(2, 40)] = 12
    zipf: Annotated[float, Range(0)] = 0.0                 # uniform family frequencies (README)
    corrupt_frac: Annotated[float, Range(0, 1)] = 0.0       # spec §6 pool: correct answers only
    distractor_frac: Annotated[float, Range(0, 1, open_hi=True)] = 0.2
    targets: tuple[Annotated[int, Range(0, 39)], ...] = (2, 3, 4)  # first_letter, last_letter, length
    queries_per_task: Annotated[int, Range(1)] = 16
    test_per_family: Annotated[int, Range(1)] = 50
    n_select: Annotated[int, Range(1)] = 150
    sub_frac: Annotated[float, Range(0, 1, open_lo=True, open_hi=True)] = 0.1  # pool-scaling subsample
    arms: tuple[str, ...] = E.ARMS
    minilm: bool = True                                       # the MiniLM arm ([embed] extra; off at smoke)
    # ---- RDS+ (spec §3; defaults are the paper's)
    aggregation: Aggregation = "max"
    rr_skip: RRSkip = "next_unseen"
    # ---- the encoder: tiny causal LM pretrained on pool.texts() (spec §6 "Encoder")
    max_len: Annotated[int, Range(8)] = 64
    enc_dim: Annotated[int, Range(8)] = 64
    enc_depth: Annotated[int, Range(1)] = 2
    enc_heads: Annotated[int, Range(1)] = 4
    enc_steps: Annotated[int, Range(0)] = 100
    enc_batch: Annotated[int, Range(1)] = 32
    enc_lr: Annotated[float, Range(0, open_lo=True)] = 3e-3
    # ---- the fine-tune on each selection (equal n, equal steps for every arm)
    sft_dim: Annotated[int, Range(8)] = 64
    sft_depth: Annotated[int, Range(1)] = 2
    sft_heads: Annotated[int, Range(1)] = 4
    sft_steps: Annotated[int, Range(0)] = 200
    sft_batch: Annotated[int, Range(1)] = 32
    sft_lr: Annotated[float, Range(0, open_lo=True)] = 3e-3
    # spec §3 "Model": the base LM that embeds the pool is the one fine-tuned; "fresh" trains a new tiny LM
    sft_init: Literal["encoder", "fresh"] = "encoder"
    # ---- full scale (full.py, spec §5; values pinned to the official repository, README)
    model_dir: str = ""                                        # under the data root, e.g. models/Llama-2-7b-hf
    pool_file: str = "rds_plus/tulu_v2_unfiltered_data_dedup.jsonl"
    query_dir: str = "rds_plus/queries"                        # <task>.jsonl, messages format
    full_tasks: tuple[str, ...] = FULL_TASKS
    full_max_seq_len: Annotated[int, Range(8)] = 2048          # pool items (encode_with_messages_format)
    # query examples, one limit per task of full_tasks (same order): the official construct_test_sample cuts
    # the prompt and the response EACH at the `max_length` default of the task's get_all_test_prompts
    # (minimal_multitask/data.py): 512 for alpacafarm, codex, squad, mmlu_shots; 2048 for the other three
    full_query_max_len: tuple[Annotated[int, Range(1)], ...] = QUERY_MAX_LEN
    full_batch: Annotated[int, Range(1)] = 1
    full_shard_size: Annotated[int, Range(1)] = 200_000
    full_n_single: Annotated[int, Range(1)] = 10_000
    full_n_multi: Annotated[int, Range(1)] = 320_000
    full_dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    variant: Variant = "correct"  # TEETH ONLY: negated similarity or reversed position weights (method.py)

    def validate(self) -> None:
        if len(self.targets) < 1 or len(set(self.targets)) != len(self.targets) \
                or any(t >= self.n_families for t in self.targets):
            raise ConfigError(f"targets={self.targets}: give distinct family ids below n_families={self.n_families}")
        bad = [a for a in self.arms if a not in E.ARMS]
        if bad or "rds_plus" not in self.arms or "random" not in self.arms:
            raise ConfigError(f"arms={self.arms}: choose from {E.ARMS}, including rds_plus and random")
        if self.n_select > self.pool_size * self.sub_frac:
            raise ConfigError(f"n_select={self.n_select} exceeds the subsample ({self.sub_frac} x {self.pool_size})")
        if self.sft_init == "encoder" and (self.sft_dim, self.sft_depth, self.sft_heads) != \
                (self.enc_dim, self.enc_depth, self.enc_heads):
            raise ConfigError("sft_init=encoder fine-tunes the encoder: set sft_dim/depth/heads = enc_dim/depth/heads")
        for d, h in ((self.enc_dim, self.enc_heads), (self.sft_dim, self.sft_heads)):
            if d % h:
                raise ConfigError(f"dim {d} is not divisible by heads {h}")
        if not self.full_tasks or len(set(self.full_tasks)) != len(self.full_tasks):
            raise ConfigError(f"full_tasks={self.full_tasks}: give at least one task, no repeats")
        if len(self.full_query_max_len) != len(self.full_tasks):
            raise ConfigError(f"full_query_max_len={self.full_query_max_len}: give one limit per task of "
                              f"full_tasks={self.full_tasks}")


SCALES = {
    # smoke runs on the core install: no MiniLM (the [embed] extra); the tests run it with minilm=true
    "smoke": {"pool_size": 600, "n_select": 45, "queries_per_task": 8, "test_per_family": 4, "minilm": False,
              "enc_steps": 20, "enc_dim": 32, "sft_steps": 10, "sft_dim": 32},
    "small": {},  # spec §6 shrunk to <= 2 min per seed on one thread (README "Deviations")
    # spec §5: Llama-2-7B base, the 5.8M-item Tulu-2 unfiltered pool, 7 target tasks (README table)
    "full": {"model_dir": "models/Llama-2-7b-hf"},
}

_SMALL = ("small",)
CLAIMS = [
    # ---- spec §6 (1): precision of the selected set
    Claim(id="precision-vs-random", kind="paper", teeth="negated", metric="precision_gain_vs_random", op=">=",
          ref=0.5, scales=_SMALL,
          text="RDS+ selects target-family items: precision (fraction of the selected set from the 3 target "
               "families) >= random selection's + 0.5 (spec §6 (1))"),
    Claim(id="precision-level", kind="paper", teeth="negated", metric="precision/rds_plus", op=">=", ref=0.8,
          scales=_SMALL, text="RDS+ precision of the round-robin selection >= 0.8 (spec §6 (1))"),
    # ---- spec §6 (2), C2: a larger pool helps at equal n
    Claim(id="pool-scaling", kind="paper", teeth="negated", metric="em_gain_full_vs_sub", op=">=", ref=0.0,
          scales=_SMALL,
          text="C2: fine-tuning on n items RDS+-selected from the whole pool gives exact match >= the same "
               "n RDS+-selected from a 10% random subsample (spec §6 (2))"),
    # ---- spec §6 (3), C2: downstream
    Claim(id="em-vs-random", kind="paper", teeth="negated", metric="em_gain_vs_random", op=">=", ref=0.10,
          scales=_SMALL,
          text="C2: exact match on the target tasks after fine-tuning on the RDS+ selection >= random "
               "selection at equal n and steps + 10 points (spec §6 (3))"),
    # ---- spec §3 baselines "RDS with mean or last-token pooling": the pooling ablation (added after the
    # calibration runs, README)
    Claim(id="precision-vs-last-token", kind="paper", teeth="negated", metric="precision_gain_vs_last", op=">=",
          ref=0.0, scales=_SMALL,
          text="RDS+'s position-weighted mean pooling selects at least as precisely as last-token pooling of the "
               "same hidden states (the paper's RDS pooling ablation)"),
    # ---- mechanics (spec §6 smoke list), on the run's own hidden states
    Claim(id="weights-sum-to-one", kind="check", metric="check_weight_sum_err", op="<=", ref=1e-5,
          text="position weights of every padded row sum to 1"),
    Claim(id="weights-prop-position", kind="check", metric="check_weight_prop_err", op="<=", ref=1e-6,
          text="position weights are proportional to the position t over each row's real tokens"),
    Claim(id="padded-equals-single", kind="check", metric="check_padded_vs_single_err", op="<=", ref=1e-5,
          text="padding-aware batched pooling equals the batch-1 weighted mean (spec §7)"),
    Claim(id="length-one", kind="check", metric="check_len1_err", op="<=", ref=1e-6,
          text="for L = 1 the pooled vector equals the hidden state"),
    Claim(id="unit-norm", kind="check", metric="check_unit_norm_err", op="<=", ref=1e-5,
          text="embeddings are unit vectors before the cosine"),
    Claim(id="round-robin-no-duplicates", kind="check", metric="rr_duplicates", op="==", ref=0.0,
          text="every arm's selection has n distinct items (round-robin skips items already taken)"),
]

TABLES = [
    Table(name="selectors", metric="{col}/{row}", rows=E.ARMS, cols=E.COLS,
          title="Selectors at equal n and fine-tuning steps: precision (target-family fraction of the selection), "
                "exact match on the target tasks, encode/selection seconds, SFT steps and seconds",
          row_label="selector"),
]


@reproduction(
    track="data-selection",
    paper=Paper(title="Large-Scale Data Selection for Instruction Tuning",
                authors="Hamish Ivison, Muru Zhang, Faeze Brahman, Pang Wei Koh, Pradeep Dasigi",
                year=2025, venue="arXiv", url="https://arxiv.org/abs/2503.01807",
                code="https://github.com/hamishivi/automated-instruction-selection"),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=2),
               "small": Resources(cpus=1, mem_gb=4, time_min=5),
               "full": Resources(cpus=8, gpus=1, mem_gb=128, time_min=48 * 60)},
    claims=CLAIMS,
    tables=TABLES,
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    ctx.log("rds_plus: config %s", asdict(cfg))
    if ctx.scale == "full" or cfg.model_dir:
        from .full import run_full

        return run_full(cfg, ctx)
    metrics, ref = E.run_small(cfg, ctx)
    return Outcome(metrics=metrics, dataset=ref,
                   notes={"minilm_weights": "sentence-transformers/all-MiniLM-L6-v2" if cfg.minilm else None})
