"""TreePO (Li, Gu, Wen et al., arXiv 2508.17445, 2025): tree-structured segment rollouts with early
stopping, fallback and the tree REINFORCE++-baseline advantage, against GRPO with independent samples
at equal leaf count.

CPU scales (spec §6): arithmetic chains, a tiny causal transformer warmed up by SFT on 50 %-correct
demonstrations, then TreePO and GRPO trained from the same warm-up in the same job (same PPO update,
same prompts, 8 leaves per prompt); decoded tokens are counted as a prefix-cached engine decodes them.
Full scale (spec §5): Qwen2.5-7B on the TreePO_data parquet files through the HF adapter. See README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError, UnknownNameError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources

from . import task as T
from .experiment import ARMS, RLSetup, make_model, mechanics, sft_warmup, summarize, toy_env, train_arm
from .method import TreeConfig

# TEST-ONLY broken variants: "recount" counts reconstructed leaf lengths instead of decoded tokens
# (spec §7 pitfall; in the stub mechanics and in the RL arms' token count); "no-fallback" disables the
# fallback so leaf counts drift from W; "flip-adv" flips the sign of the tree advantage (TreePO arms)
Variant = Literal["paper", "recount", "no-fallback", "flip-adv"]


@dataclass
class Config:
    # task (spec §6)
    n_train: Annotated[int, Range(1)] = 4000
    n_test: Annotated[int, Range(1)] = 96
    steps_min: Annotated[int, Range(1)] = 2
    steps_max: Annotated[int, Range(1)] = 4
    # policy
    dim: Annotated[int, Range(1)] = 64
    depth: Annotated[int, Range(1)] = 2
    heads: Annotated[int, Range(1)] = 4
    max_len: Annotated[int, Range(1)] = 44
    sft_steps: Annotated[int, Range(1)] = 500
    sft_batch: Annotated[int, Range(1)] = 64
    sft_lr: Annotated[float, Range(0, open_lo=True)] = 3e-3
    # tree (spec §6 scaled-down; repo: Ls 512, D 14, W 16, d0 ~ U{2..8})
    seg_len: Annotated[int, Range(1)] = 4
    max_depth: Annotated[int, Range(1)] = 8
    width: Annotated[int, Range(1)] = 8
    step_div: Annotated[int, Range(1)] = 2
    first_div_min: Annotated[int, Range(1)] = 2
    first_div_max: Annotated[int, Range(1)] = 4
    allocation: str = "fixed_avg"
    repetition_stop: bool = True
    # RL (spec §3/§6)
    arms: tuple[str, ...] = ("treepo", "grpo")
    prompts_per_step: Annotated[int, Range(1)] = 16
    updates: Annotated[int, Range(1)] = 120
    minibatches: Annotated[int, Range(1)] = 2  # PPO mini-batches per rollout batch (repo: 512 prompts / 32)
    lr: Annotated[float, Range(0, open_lo=True)] = 1e-4  # repo 1e-6 for 7B; tiny model needs more
    weight_decay: Annotated[float, Range(0)] = 0.1
    grad_clip: Annotated[float, Range(0)] = 1.0
    clip_low: Annotated[float, Range(0)] = 0.2
    clip_high: Annotated[float, Range(0)] = 0.28
    clip_c: Annotated[float, Range(0)] = 10.0
    overlong_buffer: Annotated[int, Range(0)] = 4  # repo 512 of 7168 (1/14); here one segment of 32
    filter_uniform: bool = True   # DAPO dynamic sampling (filter_groups.enable, metric acc)
    # DAPO refill (recipe/dapo/dapo_ray_trainer.py): each generation batch rolls out gen_prompts prompts; batches
    # are generated until prompts_per_step non-uniform prompts are kept, at most max_gen_batches of them
    gen_prompts: Annotated[int, Range(1)] = 16  # official 3 · train_prompt_bsz; here 1 × (cost, README)
    max_gen_batches: Annotated[int, Range(0)] = 10  # filter_groups.max_num_gen_batches; 0: no limit
    eval_every: Annotated[int, Range(1)] = 20
    eval_samples: Annotated[int, Range(1)] = 4  # avg@k at temperature 1
    stub_prompts: Annotated[int, Range(1)] = 16
    variant: Variant = "paper"
    # full scale (spec §5)
    model_dir: str = ""
    data_dir: str = "TreePO_data"
    train_files: tuple[str, ...] = ("SimpleRL-simplelr_qwen_level3to5.train.parquet", "DeepScaler.train.parquet")
    test_files: tuple[str, ...] = ("DeepScaler.aime.parquet", "SimpleRL-simplelr_qwen_level3to5.test.parquet")
    full_max_prompt_len: Annotated[int, Range(1)] = 1024  # data.max_prompt_length, truncation 'left'
    full_seg_len: Annotated[int, Range(1)] = 512
    full_max_depth: Annotated[int, Range(1)] = 14
    full_width: Annotated[int, Range(1)] = 16
    full_first_div_max: Annotated[int, Range(1)] = 8
    full_prompts_per_step: Annotated[int, Range(1)] = 512
    full_gen_prompts: Annotated[int, Range(1)] = 1536  # data.gen_batch_size = 3 · train_prompt_bsz
    full_mini_batch: Annotated[int, Range(1)] = 32
    full_updates: Annotated[int, Range(1)] = 200
    full_lr: Annotated[float, Range(0, open_lo=True)] = 1e-6
    full_eval_samples: Annotated[int, Range(1)] = 16
    # padded tokens per forward/backward (verl use_dynamic_bsz, actor.ppo_max_token_len_per_gpu =
    # max_prompt_length + max_response_length; the same budget for the old-log-prob pass)
    full_micro_tokens: Annotated[int, Range(1)] = 8192
    # prefixes per HF generate call of the rollout sampler (ours: the official vLLM engine batches on its own)
    full_sampler_batch: Annotated[int, Range(1)] = 64

    def validate(self) -> None:
        """Relations between fields, checked when the config resolves (before any run starts)."""
        if self.steps_min > self.steps_max:
            raise ConfigError(f"steps_min={self.steps_min} > steps_max={self.steps_max}; lower steps_min or raise "
                              f"steps_max")
        if not self.first_div_min <= self.first_div_max <= self.width:
            raise ConfigError(f"need first_div_min <= first_div_max <= width, got {self.first_div_min}, "
                              f"{self.first_div_max}, {self.width}; change one")
        if self.full_first_div_max > self.full_width:
            raise ConfigError(f"full_first_div_max={self.full_first_div_max} > full_width={self.full_width}; "
                              f"lower full_first_div_max or raise full_width")
        if self.seg_len * self.max_depth + 12 > self.max_len:
            raise ConfigError(f"max_len={self.max_len} cannot hold prompt + seg_len*max_depth="
                              f"{self.seg_len * self.max_depth} tokens; raise max_len or lower seg_len/max_depth")
        if self.dim % self.heads:
            raise ConfigError(f"dim={self.dim} is not divisible by heads={self.heads}; change dim or heads")


SCALES = {
    "smoke": {"n_train": 64, "n_test": 4, "dim": 16, "depth": 1, "heads": 2, "sft_steps": 5, "sft_batch": 16,
              "prompts_per_step": 2, "gen_prompts": 2, "max_gen_batches": 2, "updates": 1, "minibatches": 1,
              "eval_every": 1, "eval_samples": 2, "stub_prompts": 16},
    "small": {},
    # full: validation every 10 updates (official trainer.test_freq=10, recipe/treepo/run_treepo_train.sh)
    "full": {"model_dir": "models/Qwen2.5-7B", "eval_every": 10},
}

CLAIMS = [
    Claim(id="M-leaves-W", text="every prompt ends with exactly W leaves, fallback included (scripted policy)",
          metric="stub_leaves_exact_W", op="==", ref=1.0, scales=("smoke", "small"), kind="check"),
    Claim(id="M-tree-valid", text="leaf index strings form a valid tree (scripted policy)",
          metric="stub_tree_valid", op="==", ref=1.0, scales=("smoke", "small"), kind="check"),
    Claim(id="M-tokens-nodes", text="decoded tokens equal the sum of segment lengths over tree nodes",
          metric="stub_tokens_match_nodes", op="==", ref=1.0, scales=("smoke", "small"), kind="check"),
    Claim(id="M-tokens-shared", text="the tree decodes strictly fewer tokens than independent sampling "
                                     "(scripted policy, same W)",
          metric="stub_tree_tokens", op="<", ref="stub_indep_tokens", scales=("smoke", "small"), kind="check"),
    Claim(id="M-adv-hand", text="tree advantage reproduces the hand-computed example (spec §6)",
          metric="adv_hand_example_err", op="<=", ref=1e-9, scales=("smoke", "small"), kind="check"),
    Claim(id="M-adv-flat", text="a flat tree reproduces the REINFORCE++ baseline exactly",
          metric="adv_flat_vs_rpp_err", op="<=", ref=1e-9, scales=("smoke", "small"), kind="check"),
    Claim(id="C1-tokens", text="TreePO decodes ≤ 0.8 × GRPO's tokens over training (same leaves per prompt)",
          metric="tokens_treepo_over_grpo", op="<=", ref=0.8, scales=("small", "full"),
          paper=0.78, paper_note="paper: 22–43 % less sampling GPU-hours (0.57–0.78 ×); tokens ≠ GPU-hours",
          kind="paper", teeth="recount"),
    Claim(id="C2-acc", text="final held-out accuracy of TreePO ≥ GRPO − 3 pts (spec §6 tolerance)",
          metric="acc_treepo_minus_grpo", op=">=", ref=-0.03, scales=("small", "full"),
          paper_note="paper: TreePO above GRPO (46.63 % overall) on every column; exact row unverified",
          kind="paper", teeth="flip-adv"),
    Claim(id="C1-dominance", text="at TreePO's final token budget, TreePO's accuracy ≥ GRPO's interpolated "
                                  "accuracy − 3 pts (curve dominance)",
          metric="acc_treepo_minus_grpo_at_equal_tokens", op=">=", ref=-0.03, scales=("small", "full"),
          kind="paper", teeth="flip-adv"),
]

PLOTS = [
    Plot(name="acc_vs_update", x="update", ys=("acc_treepo", "acc_grpo"), title="held-out avg@k vs update",
         ylabel="accuracy"),
    Plot(name="tokens_vs_update", x="update", ys=("tokens_treepo", "tokens_grpo"),
         title="cumulative decoded tokens vs update", ylabel="tokens"),
]


def tree_config(cfg: Config) -> TreeConfig:
    return TreeConfig(seg_len=cfg.seg_len, max_depth=cfg.max_depth, width=cfg.width, step_div=cfg.step_div,
                      first_div_min=cfg.first_div_min, first_div_max=cfg.first_div_max,
                      max_response=cfg.seg_len * cfg.max_depth, allocation=cfg.allocation,
                      repetition_stop=cfg.repetition_stop, fallback=cfg.variant != "no-fallback")


def _dataset() -> DatasetRef:
    return DatasetRef("arithmetic-chains-procedural", "stand-in")


@reproduction(
    track="reasoning",
    paper=Paper(title="TreePO: Bridging the Gap of Policy Optimization and Efficacy and Inference Efficiency "
                      "with Heuristic Tree-based Modeling",
                authors="Yizhi Li, Qingshui Gu, Zhoufutu Wen, et al.", year=2025, venue="arXiv",
                url="https://arxiv.org/abs/2508.17445", code="https://github.com/multimodal-art-projection/TreePO"),
    config=Config,
    scales=SCALES,
    claims=CLAIMS,
    plots=PLOTS,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=5),
               "small": Resources(cpus=2, mem_gb=4, time_min=20),
               # one rank per GPU (verl's FSDP workers on 8 GPUs, recipe/treepo/run_treepo_train.sh)
               "full": Resources(cpus=32, gpus=8, processes=8, mem_gb=512, time_min=72 * 60)},
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    bad = [a for a in cfg.arms if a not in ARMS]
    if bad:
        raise UnknownNameError(f"arms {bad} unknown; use {tuple(ARMS)}")
    if cfg.seg_len * cfg.max_depth + 12 > cfg.max_len:
        raise ConfigError(f"max_len={cfg.max_len} cannot hold prompt + D·Ls={cfg.seg_len * cfg.max_depth} tokens; "
                          f"raise max_len")
    if ctx.scale == "full" or cfg.model_dir:
        from .full import run_full

        return run_full(cfg, ctx)
    ctx.log("treepo config %s", asdict(cfg))
    tok = T.tokenizer()
    tree = tree_config(cfg)
    probs = T.generate(cfg.n_train + cfg.n_test, ctx.seed, (cfg.steps_min, cfg.steps_max))
    train, test = probs[:cfg.n_train], probs[cfg.n_train:]
    base = make_model(tok, cfg.dim, cfg.depth, cfg.heads, cfg.max_len, ctx.seed)
    if ctx.dry_run:
        return Outcome(metrics={}, dataset=_dataset())
    m = mechanics(tok, tree, cfg.stub_prompts, ctx.seed, cfg.variant)
    m["sft_loss"] = sft_warmup(base, tok, train, cfg.sft_steps, cfg.sft_batch, cfg.sft_lr, ctx, ctx.seed)
    setup = rl_setup(cfg, tok.pad_id, tree)
    env = toy_env(tok, test, setup, ctx)
    runs = {arm: train_arm(arm, base, train, env, setup, ctx) for arm in cfg.arms}
    m.update(summarize(runs, setup))
    return Outcome(metrics=m, dataset=_dataset())


def rl_setup(cfg: Config, pad_id: int, tree: TreeConfig, **kw: object) -> RLSetup:
    d = dict(prompts_per_step=cfg.prompts_per_step, updates=cfg.updates, minibatches=cfg.minibatches, lr=cfg.lr,
             eval_samples=cfg.eval_samples, gen_prompts=cfg.gen_prompts)
    d.update(kw)
    return RLSetup(pad_id, tree, d["prompts_per_step"], d["updates"], d["minibatches"], d["lr"], cfg.weight_decay,
                   cfg.grad_clip, cfg.clip_low, cfg.clip_high, cfg.clip_c, cfg.overlong_buffer, cfg.filter_uniform,
                   cfg.eval_every, d["eval_samples"], cfg.variant, d["gen_prompts"], cfg.max_gen_batches,
                   micro_tokens=int(d.get("micro_tokens", 0)))

