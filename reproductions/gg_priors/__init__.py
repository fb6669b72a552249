"""It Takes a Good Model to Train a Good Model: Generalized Gaussian Priors for Optimized LLMs
(Wu, Xiong, Wen, Han; arXiv 2506.00486, 2025).

One run: GG sampler / shape estimator / RF8 / DeepShape mechanics; a model trained from the standard
initialisations (its default, He normal, Xavier normal) and GG initialisation; BackSlash + fine-tune;
DeepShape + fine-tune; RF8 against FP8 E4M3 / E5M2 / INT8. The model is a digits MLP at smoke and small
(plus a tiny char GPT at small) and, at full, GPT-2 on a text corpus with the authors' GPT-2 recipe
(lm_task.py). See README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, Outcome, Paper, Plot, Resources

from .experiment import make_task, measure

# TEST-ONLY broken variants (teeth): "rf8-floor" (floor instead of round for the RF8 exponents),
# "deepshape-unsorted" (levels assigned without sorting), "gg-no-fan" (GG init with Var = xi, the 1/fan
# forgotten), "backslash-sign-flipped" (the BackSlash term added: weights pushed away from 0),
# "backslash-no-n" (BackSlash without its 1/n), "deepshape-inverted" (DeepShape target nu/0.8, beta/0.6:
# wider instead of sharper), "rf8-unsigned" (the RF8 code loses its sign bit)
Variant = Literal["paper", "rf8-floor", "deepshape-unsorted", "gg-no-fan", "backslash-sign-flipped",
                  "backslash-no-n", "deepshape-inverted", "rf8-unsigned"]


@dataclass
class Config:
    # "digits-mlp" (spec §6, smoke/small) | "gpt2-text" (full: the authors' GPT-2 recipe, lm_task.py)
    task: Literal["digits-mlp", "gpt2-text"] = "digits-mlp"
    hidden: tuple[Annotated[int, Range(1)], ...] = (256, 256)  # MLP 64-256-256-10 (spec §6)
    epochs: Annotated[int, Range(1)] = 20
    batch_size: Annotated[int, Range(1)] = 64
    lr: Annotated[float, Range(0, open_lo=True)] = 1e-3
    # GG shapes compared with default init (2.0 = He normal)
    nus: tuple[Annotated[float, Range(0, open_lo=True)], ...] = (1.0, 1.5, 2.0)
    xi: Annotated[float, Range(0, open_lo=True)] = 2.0  # ReLU gain (spec §3)
    fan_mode: Literal["in", "out"] = "in"     # "in" (He-style, ours) | "out" (reference code, spec §7)
    # GG init of the model that BackSlash / DeepShape / RF8 get
    pipeline_nu: Annotated[float, Range(0, open_lo=True)] = 1.0
    target_loss: Annotated[float, Range(0)] = 0.1  # steps-to-target train loss (10-step running mean)
    bs_lambda: Annotated[float, Range(0)] = 100.0  # BackSlash lambda; shrink/step = lambda*nu/n (reference 2e3; README)
    bs_c: Annotated[float, Range(0, open_lo=True)] = 1.0
    bs_epochs: Annotated[int, Range(1)] = 5
    # BackSlash starts from the plain-trained model ("trained") or from its initial weights ("init": the
    # GPT-2 recipe's BackSlash run, train.py: 3 BackSlash epochs from scratch, then 8 normal ones)
    bs_from: Literal["trained", "init"] = "trained"
    ft_epochs: Annotated[int, Range(0)] = 2
    ft_lr: Annotated[float, Range(0, open_lo=True)] = 1e-4
    ds_shape_scale: Annotated[float, Range(0, open_lo=True)] = 0.8  # DeepShape nu' = 0.8 nu, beta' = 0.6 beta (spec §3)
    ds_std_scale: Annotated[float, Range(0, open_lo=True)] = 0.6
    ds_adj_minnum: Annotated[int, Range(1)] = 20  # central range rule (reference 1000 for LLM-sized models)
    ds_step_log2: Annotated[int, Range(0)] = 8  # DeepShape quantisation step 2^-s (reference 13 for LLMs)
    rate_step: Annotated[float, Range(0, open_lo=True)] = 2.0 ** -8  # uniform step of the coding-rate metric
    rate_steps_log2: tuple[Annotated[int, Range(0)], ...] = (4, 6, 8, 10)
    n_draws: Annotated[int, Range(1)] = 200_000
    gpt_steps: Annotated[int, Range(0)] = 0  # tiny char GPT (0 = skip)
    gpt_context: Annotated[int, Range(1)] = 32
    gpt_lr: Annotated[float, Range(0, open_lo=True)] = 3e-3
    gpt_xi: Annotated[float, Range(0, open_lo=True)] = 1.0
    gpt_init_embeddings: bool = True   # GG init of embedding tables too (the reference: every 2-D tensor)
    # task "gpt2-text" (full; values of the authors' GPT-2 recipe, README "Full scale")
    lm_context: Annotated[int, Range(2)] = 512        # make_config.py n_positions, make_dataset.py block_size
    lm_dim: Annotated[int, Range(1)] = 256            # n_embd
    lm_layers: Annotated[int, Range(1)] = 4           # n_layer
    lm_heads: Annotated[int, Range(1)] = 4            # n_head
    lm_vocab: Annotated[int, Range(8)] = 8000         # BpeTrainer vocab_size
    lm_min_frequency: Annotated[int, Range(1)] = 2    # BpeTrainer min_frequency
    lm_weight_decay: Annotated[float, Range(0)] = 0.1  # TrainingArguments weight_decay
    lm_warmup_ratio: Annotated[float, Range(0, 1)] = 0.03
    lm_grad_clip: Annotated[float, Range(0, open_lo=True)] = 1.0  # the HF Trainer's max_grad_norm default
    gpt_target_loss: Annotated[float, Range(0)] = 1.5  # reached after ~100 of 300 small-scale steps
    variant: Variant = "paper"                    # TEST-ONLY broken variants (see Variant)

    def validate(self) -> None:
        """Relations between fields, checked when the config resolves (before any run starts)."""
        if self.pipeline_nu not in self.nus:
            raise ConfigError(f"pipeline_nu={self.pipeline_nu} must be one of nus={','.join(map(str, self.nus))}; "
                              f"change pipeline_nu or nus")
        if not any(nu < 2 for nu in self.nus):
            raise ConfigError(f"nus={','.join(map(str, self.nus))} needs at least one shape < 2 (the GG-vs-default "
                              f"claim); add one to nus")
        if self.task == "gpt2-text" and self.lm_dim % self.lm_heads:
            raise ConfigError(f"lm_dim={self.lm_dim} is not a multiple of lm_heads={self.lm_heads}; change one")


SCALES = {
    "smoke": {"hidden": (64, 64), "epochs": 3, "nus": (1.0, 2.0), "bs_epochs": 1, "ft_epochs": 1,
              "n_draws": 200_000, "ds_adj_minnum": 5, "bs_lambda": 10.0},
    "small": {"gpt_steps": 300},
    # the authors' GPT-2 recipe (README "Full scale": phuang1024/DBS @ eaaa60f gpt2/ and gg_prior/): 8 plain
    # epochs; BackSlash 3 epochs from the initial weights + 8 normal epochs, lr 3e-4 throughout, 16 blocks a
    # step; BackSlash rdo 2e3, clip 1 (backslash.py); DeepShape's reference step 2^-13 and adj_minnum 1000
    # (deepshape.py); xi = 1 (GELU counted as linear, as the small-scale char GPT); no char GPT
    "full": {"task": "gpt2-text", "epochs": 8, "batch_size": 16, "lr": 3e-4, "bs_epochs": 3, "ft_epochs": 8,
             "ft_lr": 3e-4, "bs_from": "init", "bs_lambda": 2000.0, "bs_c": 1.0, "xi": 1.0,
             "ds_adj_minnum": 1000, "ds_step_log2": 13, "target_loss": 5.0, "n_draws": 2_000_000,
             "gpt_steps": 0},
}

CLAIMS = [
    # mechanics and invariants (kind="check")
    Claim(id="M-gg-sampler-var", kind="check",
          text="GG draws (nu = 0.5, 1, 2; 200k) have variance within 3 % of xi/fan",
          metric="gg_sample_var_rel_err", op="<=", ref=0.03),
    Claim(id="M-gg-sampler-shape", kind="check", text="Moment-matched shape of GG draws is within 0.05 of nu",
          metric="gg_sample_shape_err", op="<=", ref=0.05),
    Claim(id="M-shape-estimator", kind="check",
          text="Shape estimate of Laplace / Gaussian samples is 1 / 2 within 0.05",
          metric="shape_est_err", op="<=", ref=0.05),
    Claim(id="M-rf8-two-digits", kind="check", text="Every RF8 value has at most two nonzero signed binary digits",
          metric="rf8_max_signed_digits", op="<=", ref=2.0),
    Claim(id="M-rf8-exact", kind="check", text="RF8 is exact for w = 2^a +- 2^b with a - b <= 4",
          metric="rf8_exact_two_term_err", op="==", ref=0.0),
    Claim(id="M-rf8-bound", kind="check", text="RF8 relative error <= 1/8 over a log-uniform sweep of 24 octaves",
          metric="rf8_max_rel_err", op="<=", ref=0.125),
    Claim(id="M-rf8-codec", kind="check",
          text="8-bit RF8 encode/decode reproduces the RF8 value inside the exponent range",
          metric="rf8_codec_mismatch", op="==", ref=0.0),
    Claim(id="M-deepshape-ranks", kind="check", text="DeepShape's remap preserves the order of the parameters",
          metric="deepshape_rank_violations", op="==", ref=0.0),
    # holds by construction (the target shape is set to 0.8 nu): a check of the remap, not a result
    Claim(id="M-deepshape-sharper", kind="check",
          text="DeepShape lowers the estimated shape nu of the central range",
          metric="deepshape_nu_after", op="<", ref="deepshape_nu_before"),
    Claim(id="M-deepshape-entropy", kind="check", text="DeepShape lowers the entropy of the quantised parameters",
          metric="deepshape_entropy_after", op="<", ref="deepshape_entropy_before"),
    # the paper's results (kind="paper"), each with the broken variant that must make it fail
    Claim(id="C2-gg-init-not-worse", kind="paper", teeth="gg-no-fan",
          text="GG init (best nu < 2) is within 1 point of the strongest standard init (best of PyTorch "
               "default, He normal, Xavier normal; accuracy)",
          metric="acc_gg_best_minus_best_standard", op=">=", ref=-1.0, scales=("small", "full")),
    Claim(id="C2-backslash-rate", kind="paper", teeth="backslash-sign-flipped",
          text="BackSlash epochs + normal epochs (small: 5 + 2 from the trained model; full: 3 + 8 from the "
               "initial weights) cut bits/param by >= 20 %",
          metric="backslash_bits_ratio", op="<=", ref=0.8, scales=("small", "full")),
    Claim(id="C2-backslash-acc", kind="paper", teeth="backslash-no-n",
          text="... with accuracy within 2 points of plain training (GG init)",
          metric="acc_backslash_gg", op=">=", ref="acc_plain_gg", tol=2.0, scales=("small", "full")),
    Claim(id="C3-deepshape-rate", kind="paper", teeth="deepshape-inverted",
          text="DeepShape + 2 fine-tune epochs has fewer bits/param than before",
          metric="bits_deepshape", op="<", ref="bits_plain_gg", scales=("small", "full")),
    Claim(id="C3-deepshape-acc", kind="paper", teeth="deepshape-unsorted",
          text="DeepShape + fine-tune is within 2 points of the model before it",
          metric="acc_deepshape", op=">=", ref="acc_plain_gg", tol=2.0, scales=("small", "full")),
    Claim(id="C4-rf8-near-lossless", kind="paper", teeth="rf8-unsigned",
          text="RF8 weights are within 1 point of FP32 (GG init + BackSlash model)",
          metric="acc_backslash_rf8", op=">=", ref="acc_backslash_fp32", tol=1.0, scales=("small", "full")),
    Claim(id="C4-rf8-vs-8bit", kind="paper", teeth="rf8-unsigned",
          text="RF8 weights are within 1 point of the better of FP8 E4M3 and INT8 (symmetric, per tensor) "
               "on the GG init + BackSlash model",
          metric="acc_backslash_rf8", op=">=", ref="acc_backslash_best_fp8_int8", tol=1.0,
          scales=("small", "full")),
]

PLOTS = [
    Plot(name="bits_vs_step", x="step_log2", ys=("bits_default", "bits_plain_gg", "bits_backslash",
                                                 "bits_deepshape"),
         title="gg_priors: coding rate vs quantisation step 2^-s", ylabel="bits / parameter"),
    Plot(name="acc_vs_step", x="step_log2", ys=("acc_default", "acc_plain_gg", "acc_backslash",
                                                "acc_deepshape"),
         title="gg_priors: test accuracy with all parameters on the grid 2^-s", ylabel="accuracy (%)"),
]


@reproduction(
    track="compression",
    paper=Paper(title="It Takes a Good Model to Train a Good Model: Generalized Gaussian Priors for "
                      "Optimized LLMs",
                authors="Jun Wu, Yirong Xiong, Jiangtao Wen, Yuxing Han", year=2025, venue="arXiv",
                url="https://arxiv.org/abs/2506.00486",
                code="https://huggingface.co/spaces/shifeng3711/gg_prior"),
    config=Config,
    scales=SCALES,
    claims=CLAIMS,
    plots=PLOTS,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=5),
               "small": Resources(cpus=2, mem_gb=4, time_min=20),
               "full": Resources(cpus=8, gpus=1, mem_gb=16, time_min=120)},
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    ctx.log("gg_priors: config %s", asdict(cfg))
    if ctx.dry_run:  # the task's loader, tokenizer and model class, as the real run builds them
        task = make_task(cfg, ctx)
        task.build()
        return Outcome(metrics={}, dataset=task.ref)
    metrics, ref = measure(cfg, ctx)
    return Outcome(metrics=metrics, dataset=ref)
