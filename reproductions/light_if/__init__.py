"""Light-IF (Light-IF Team, Qihoo 360; arXiv 2508.03178): Entropy-SFT cold start and token-entropy-
adaptive RL (TEA-RL) with dense rule-based rewards for complex instruction following.

CPU scales (spec §6): generated constrained-writing instructions (2-4 checkable constraints over a
60-word vocabulary) and a tiny causal transformer policy. (a) plain SFT vs Entropy-SFT for equal
steps on answers drawn uniformly over the valid ones; (b) GRPO from a weak SFT policy with the
binary reward vs the dense partial-credit reward (and dense + the TEA entropy term). Metrics: the
policy's mean token entropy and the all-constraints-satisfied rate on held-out instructions.
Full scale (spec §5): Entropy-SFT / plain SFT of a Hugging Face model on ``cold-start-2k.json``, then
the dense-reward GRPO(+TEA) on the RL parquet, scored by the same checkers; the base, cold-start and RL
models then answer IFEval, scored by lm-evaluation-harness's IFEval checker (``ifeval.py``), and the full
claims compare Light-IF with its base model and with binary-reward GRPO there. See README.md.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Literal

import numpy as np

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError, UnknownNameError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Resources

from . import tasks as T
from .experiment import build_sft_set, evaluate, format_set, mechanics, new_policy, train_rl, train_sft
from .method import EntropySFT, GRPOConfig, RewardConfig

# TEST-ONLY broken variants: "delta-plus-entropy" selects by CE + λH (sign of the entropy term flipped);
# "esft-off" skips the Entropy-SFT token selection (the Entropy-SFT arm trains as plain SFT);
# "esft-keep-lowest" keeps the k tokens with the smallest δ instead of the largest; "point-sign-flipped"
# subtracts the dense partial credit instead of adding it (dense and dense + TEA arms)
Variant = Literal["paper", "delta-plus-entropy", "esft-off", "esft-keep-lowest", "point-sign-flipped"]
RL_ARMS = {"binary": ("binary", False), "dense": ("dense", False), "dense_tea": ("dense", True)}


@dataclass
class Config:
    # data (§6: 2-4 constraints, 60 words)
    n_sft: Annotated[int, Range(1)] = 1000  # cold-start set size (paper: ~2k)
    n_eval: Annotated[int, Range(1)] = 500
    n_rl: Annotated[int, Range(1)] = 2000  # RL prompt pool
    # policy (§6: 2 layers, d = 64)
    dim: Annotated[int, Range(1)] = 64
    depth: Annotated[int, Range(1)] = 2
    heads: Annotated[int, Range(1)] = 4
    # base policy: knows the response format, not the constraints (stands in for the pretrained model)
    base_steps: Annotated[int, Range(1)] = 100
    # (a) SFT (§3.3)
    sft_steps: Annotated[int, Range(1)] = 500
    batch_size: Annotated[int, Range(1)] = 32
    sft_lr: Annotated[float, Range(0, open_lo=True)] = 2e-3
    token_ratio: Annotated[float, Range(0, 1, open_lo=True)] = 0.8  # ρ
    entropy_coef: Annotated[float, Range(0)] = 0.8  # λ
    # (b) RL (§3.4); tiny-model lr, the rest as in the recipe
    rl_init_steps: Annotated[int, Range(0)] = 100  # weak SFT start = base + this many plain SFT steps (§6 (b): < 10 %)
    rl_steps: Annotated[int, Range(1)] = 100
    rl_prompts: Annotated[int, Range(1)] = 16
    rl_group: Annotated[int, Range(1)] = 8  # n = 8 rollouts per prompt (rollout.n), every scale
    rl_temperature: Annotated[float, Range(0, open_lo=True)] = 1.0
    rl_lr: Annotated[float, Range(0, open_lo=True)] = 1e-3
    kl_coef: Annotated[float, Range(0)] = 0.001
    clip_ratio: Annotated[float, Range(0)] = 1.0  # low = high = 1.0 (§7: do not "fix" to 0.2)
    clip_c: Annotated[float, Range(0)] = 10.0
    tea_alpha: Annotated[float, Range(0)] = 10.0
    tea_ub: Annotated[float, Range(0)] = 5.0
    tea_coef: Annotated[float, Range(0)] = 1.0  # UNVERIFIED: scale of the TEA bonus (spec: "+mean_t(w_t·H_t)")
    length_term: bool = True       # cosine length term in the dense reward
    reward_max_len: Annotated[int, Range(1)] = T.RESP_LEN  # L of the cosine term at smoke / small (full: full_max_new)
    rl_arms: tuple[str, ...] = ("binary", "dense", "dense_tea")
    eval_temperature: Annotated[float, Range(0)] = 1.0
    variant: Variant = "paper"
    # full scale (§5)
    model_dir: str = ""
    sft_file: str = "light_if/cold-start-2k.json"
    rl_file: str = "light_if/rl-stagte1-5k.parquet"
    full_sft_steps: Annotated[int, Range(1)] = 375  # ≈ 3 epochs of 2k examples at batch 16
    full_sft_batch: Annotated[int, Range(1)] = 16
    full_sft_lr: Annotated[float, Range(0, open_lo=True)] = 1e-5
    full_max_tokens: Annotated[int, Range(1)] = 16000  # --cutoff_len of the cold-start command
    # stage-1 RL (Light-IF-1.7B-stage1.sh + verl's actor defaults); the number of rollouts per prompt is rl_group
    full_rl_epochs: Annotated[int, Range(1)] = 15  # trainer.total_epochs over the (filtered) RL prompts
    full_rl_prompts: Annotated[int, Range(1)] = 128  # data.train_batch_size: prompts per rollout batch
    full_rl_mini_batch: Annotated[int, Range(1)] = 32  # ppo_mini_batch_size (prompts): 128/32 = 4 updates per batch
    full_rl_micro_tokens: Annotated[int, Range(1)] = 20000  # ppo_max_token_len_per_gpu (use_dynamic_bsz)
    full_rl_lr: Annotated[float, Range(0, open_lo=True)] = 5e-6
    full_rl_weight_decay: Annotated[float, Range(0)] = 0.01  # actor.optim.weight_decay (verl default)
    full_max_prompt: Annotated[int, Range(1)] = 1024  # data.max_prompt_length, longer prompts filtered out
    full_gen_batch: Annotated[int, Range(1)] = 32  # sequences per HF generate call (memory; vLLM in the release)
    full_max_new: Annotated[int, Range(1)] = 8192
    full_eval_prompts: Annotated[int, Range(1)] = 200
    # every SFT / RL fit saves a checkpoint every n steps and at its end, so a preempted (requeued) job resumes
    # (0 = never). Our choice: the release's save interval is not stated. An RL fit step is one update (a
    # mini-batch); the checkpoint carries the rollout batch being consumed, so any interval resumes exactly
    full_checkpoint_every: Annotated[int, Range(0)] = 20
    # full-scale IFEval (spec §2 C1, §4; ifeval.py): google-research's input_data.jsonl, greedy as lm-eval's task
    ifeval_file: str = "ifeval/input_data.jsonl"
    ifeval_prompts: Annotated[int, Range(0)] = 0  # 0 = all 541
    ifeval_max_new: Annotated[int, Range(1)] = 8192  # UNVERIFIED: the paper's eval budget is not given (RL cap 8192)
    ifeval_batch: Annotated[int, Range(1)] = 16

    def validate(self) -> None:
        """Relations between fields, checked when the config resolves (before any run starts)."""
        if self.dim % self.heads:
            raise ConfigError(f"dim={self.dim} is not divisible by heads={self.heads}; change dim or heads")
        if self.full_rl_prompts % self.full_rl_mini_batch:
            raise ConfigError(f"full_rl_prompts={self.full_rl_prompts} is not a multiple of full_rl_mini_batch="
                              f"{self.full_rl_mini_batch} (verl splits the rollout batch into equal mini-batches)")


SCALES = {
    "smoke": {"n_sft": 256, "n_eval": 64, "n_rl": 128, "dim": 32, "depth": 1, "sft_steps": 15, "batch_size": 16,
              "base_steps": 10, "rl_init_steps": 5, "length_term": False, "rl_steps": 4, "rl_prompts": 4},
    "small": {"length_term": False},
    "full": {"model_dir": "models/Qwen3-1.7B"},
}

CLAIMS = [
    Claim(id="M-esft-selection", text="Entropy-SFT keeps exactly the top-k = max(⌊ρN⌋,1) valid tokens by "
                                      "δ = CE − λH (200 random micro-batches vs a numpy reference)",
          metric="sft_selection_exact", op="==", ref=1.0, scales=("smoke", "small"), kind="check"),
    Claim(id="M-reward-cases", text="dense reward on hand-written responses: no </think> → 0, all/partial "
                                    "credit, last-</think> parse, over-length → −2, cosine term at 0 and L/2",
          metric="reward_cases_exact", op="==", ref=1.0, scales=("smoke", "small"), kind="check"),
    Claim(id="M-tea-weights", text="TEA weights α·softmax(cov) clamped to [0, ub] sum to ≤ α and hit ub",
          metric="tea_weights_ok", op="==", ref=1.0, scales=("smoke", "small"), kind="check"),
    Claim(id="C3-esft-entropy", text="Entropy-SFT keeps the policy's held-out token entropy ≥ 1.1 × plain SFT "
                                     "(equal steps)",
          metric="entropy_esft_over_plain", op=">=", ref=1.1, scales=("small",),
          paper_note="§6 (a) threshold; the paper reports entropy curves, not this ratio",
          kind="paper", teeth="esft-off"),
    Claim(id="C3-esft-acc", text="… at no more than 3 pts loss of all-constraint accuracy",
          metric="all_sat_esft_minus_plain", op=">=", ref=-0.03, scales=("full",),
          paper_note="§6 (a) threshold", kind="paper",
          # issue 14: at small the bound is vacuous, so the claim is full scale only (README, Negative results)
          no_teeth="full scale only: at small, plain SFT's all-satisfied rate (3.0-3.8 %) is about the 3-pt bound "
                   "itself, so no arm can lose more; the broken esft-keep-lowest measured -0.002, the method -0.030"),
    Claim(id="C3-dense-vs-binary", text="from a weak SFT policy, GRPO with the dense partial-credit reward "
                                        "reaches ≥ 5 pts higher all-satisfied rate than the binary reward",
          metric="all_sat_dense_minus_binary", op=">=", ref=0.05, scales=("small",),
          paper_note="§6 (b) threshold; paper ablation numbers not copied (spec gives none)",
          kind="paper", teeth="point-sign-flipped"),
]


_FULL_ONLY = ("full scale only (IFEval answered by the trained Qwen3 models, thinking mode); at small the same "
              "mechanism carries {}")
_IFEVAL_NOTE = ("Light-IF README table, IFEval: Light-IF-4B 0.916 vs Qwen3-4B 0.888, 8B 0.932 vs 0.888 (metric "
                "variant not stated; prompt-level strict assumed, spec §4 'verify'); our full preset is Qwen3-1.7B "
                "with a shortened RL budget, so only the direction is claimed")
FULL_CLAIMS = [
    Claim(id="C1-ifeval-vs-base", text="IFEval prompt-level strict accuracy: Light-IF (Entropy-SFT cold start + "
                                       "dense-reward TEA-RL) > its base Qwen3 model, both answering in the same run",
          metric="ifeval_prompt_strict_rl_dense_tea", op=">", ref="ifeval_prompt_strict_base", scales=("full",),
          kind="paper", paper_note=_IFEVAL_NOTE,
          no_teeth=_FULL_ONLY.format("C3-dense-vs-binary (teeth point-sign-flipped, also wired into the full path)")),
    Claim(id="C3-ifeval-dense-vs-binary", text="IFEval prompt-level strict accuracy: GRPO with the dense "
                                               "partial-credit reward + TEA > GRPO with the binary reward (same "
                                               "start, same steps)",
          metric="ifeval_prompt_strict_rl_dense_tea", op=">", ref="ifeval_prompt_strict_rl_binary", scales=("full",),
          kind="paper", paper_note="C3 ablation (binary vs dense reward); the paper's ablation numbers are not in the "
                                   "spec",
          no_teeth=_FULL_ONLY.format("C3-dense-vs-binary (teeth point-sign-flipped, also wired into the full path)")),
]


def _dataset() -> DatasetRef:
    return DatasetRef("constrained-writing-procedural", "stand-in")


@reproduction(
    track="reasoning",
    paper=Paper(title="Light-IF: Endowing LLMs with Generalizable Reasoning via Preview and Self-Checking for "
                      "Complex Instruction Following",
                authors="Light-IF Team (Qihoo 360)", year=2025, venue="arXiv (AAAI-26 per repo README)",
                url="https://arxiv.org/abs/2508.03178", code="https://github.com/Qihoo360/Light-IF"),
    config=Config,
    scales=SCALES,
    claims=CLAIMS + FULL_CLAIMS,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=5),
               "small": Resources(cpus=2, mem_gb=4, time_min=20),
               "full": Resources(cpus=8, gpus=1, mem_gb=128, time_min=48 * 60)},
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    bad = [a for a in cfg.rl_arms if a not in RL_ARMS]
    if bad:
        raise UnknownNameError(f"rl_arms {bad} unknown; use a subset of {tuple(RL_ARMS)}")
    if ctx.scale == "full" or cfg.model_dir:
        from .full import run_full

        return run_full(cfg, ctx)
    ctx.log("light_if config %s", asdict(cfg))
    esft = EntropySFT(cfg.token_ratio, cfg.entropy_coef)
    if cfg.variant == "delta-plus-entropy":  # TEST-ONLY: δ = CE + λH
        esft = replace(esft, entropy_coef=-cfg.entropy_coef)
    elif cfg.variant == "esft-keep-lowest":  # TEST-ONLY: the complement end of the δ ranking
        esft = replace(esft, keep_lowest=True)
    sft_arms = {"plain": replace(esft, enabled=False),
                "esft": replace(esft, enabled=cfg.variant != "esft-off")}  # TEST-ONLY "esft-off": no selection
    tok = T.tokenizer()
    rng = np.random.default_rng(ctx.seed)
    sft_specs, eval_specs, rl_specs = (T.sample_specs(n, rng) for n in (cfg.n_sft, cfg.n_eval, cfg.n_rl))
    seqs, _ = build_sft_set(sft_specs, tok, rng)
    fmt = format_set(sft_specs, tok, rng)
    m: dict[str, float] = mechanics(cfg, esft, tok, ctx.seed)
    m["sft_examples"] = float(len(seqs))
    if ctx.dry_run:
        return Outcome(metrics=m, dataset=_dataset())
    gen_seed = 5000 + ctx.seed
    plain = replace(esft, enabled=False)
    base = new_policy(cfg, tok, ctx.seed)
    train_sft(base, fmt, tok, plain, cfg.base_steps, cfg, ctx, "base")
    ev = evaluate(base, eval_specs, tok, ctx.generator(gen_seed), cfg.eval_temperature)
    m.update({f"{k}_base": v for k, v in ev.items()})

    # (a) plain SFT vs Entropy-SFT from the same base, same batches, same steps (§6 (a))
    for arm, e in sft_arms.items():
        model = copy.deepcopy(base)
        m.update(train_sft(model, seqs, tok, e, cfg.sft_steps, cfg, ctx, f"sft_{arm}"))
        ev = evaluate(model, eval_specs, tok, ctx.generator(gen_seed), cfg.eval_temperature)
        m.update({f"{k}_sft_{arm}": v for k, v in ev.items()})
    m["entropy_esft_over_plain"] = m["entropy_sft_esft"] / max(m["entropy_sft_plain"], 1e-12)
    m["all_sat_esft_minus_plain"] = m["all_sat_sft_esft"] - m["all_sat_sft_plain"]

    # (b) GRPO from a weak SFT policy: binary vs dense (vs dense + TEA), same steps (§6 (b))
    weak = copy.deepcopy(base)
    if cfg.rl_init_steps:
        train_sft(weak, seqs, tok, plain, cfg.rl_init_steps, cfg, ctx, "sft_weak")
    ev = evaluate(weak, eval_specs, tok, ctx.generator(gen_seed), cfg.eval_temperature)
    m.update({f"{k}_rl_init": v for k, v in ev.items()})
    for arm in cfg.rl_arms:
        kind, tea = RL_ARMS[arm]
        rcfg = RewardConfig(kind, max_len=cfg.reward_max_len, length_term=cfg.length_term,
                            point_sign=-1.0 if cfg.variant == "point-sign-flipped" else 1.0)
        gcfg = GRPOConfig(cfg.clip_ratio, cfg.clip_ratio, cfg.clip_c, cfg.kl_coef, 0.0, tea, cfg.tea_alpha,
                          cfg.tea_ub, cfg.tea_coef)
        policy = copy.deepcopy(weak)
        m.update(train_rl(policy, rl_specs, tok, rcfg, gcfg, cfg, ctx, f"rl_{arm}"))
        ev = evaluate(policy, eval_specs, tok, ctx.generator(gen_seed), cfg.eval_temperature)
        m.update({f"{k}_rl_{arm}": v for k, v in ev.items()})
    if {"dense", "binary"} <= set(cfg.rl_arms):
        m["all_sat_dense_minus_binary"] = m["all_sat_rl_dense"] - m["all_sat_rl_binary"]
    if {"dense", "dense_tea"} <= set(cfg.rl_arms):
        m["all_sat_tea_minus_dense"] = m["all_sat_rl_dense_tea"] - m["all_sat_rl_dense"]
        m["entropy_tea_minus_dense"] = m["entropy_rl_dense_tea"] - m["entropy_rl_dense"]
    return Outcome(metrics=m, dataset=_dataset())
