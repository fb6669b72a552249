"""localist_llm: Diederich, *Localist LLMs with Recruitment Learning* (arXiv 2025; companion papers
arXiv 2510.09338, 2511.03559).

Attention with a locality dial lambda (a bias of -lambda*M on keys outside the query's semantic block and a
temperature tau0 (1 - lambda/2)), a group-sparsity penalty lambda*gamma*R on attention outside the target
block, attention entropy and pointer fidelity, and block recruitment by a BIC/MDL penalised-likelihood test.
CPU scales: the spec's synthetic pointer task and a stream of bigram domains; full scale: a WikiText
character (byte) LM swept over lambda and recruitment on text shards. The formalisation is the spec's
(the paper has no code); see README.md for which parts are ours.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources

from .experiment import mechanism_metrics, pointer_metrics, recruitment_stream, wikitext_metrics
from .method import Variant
from .tasks import DOMAINS_REF, POINTER_REF, load_domains, load_wikitext

Lam = Annotated[float, Range(0, 1)]


@dataclass
class Config:
    # --- attention and penalty (spec §3); tau0, M, gamma are the spec's defaults, not the paper's (none given)
    tau0: Annotated[float, Range(0, open_lo=True)] = 1.0
    margin: Annotated[float, Range(0)] = 4.0            # M; inf = hard block mask
    gamma: Annotated[float, Range(0)] = 0.1
    penalty_eps: Annotated[float, Range(0, open_lo=True)] = 1e-8   # sqrt(x^2 + eps) smoothing (spec §7)
    # --- pointer task (spec §6): K blocks of anchor + P (key, value) pairs
    n_blocks: Annotated[int, Range(2)] = 4
    n_pairs: Annotated[int, Range(1)] = 8
    n_keys: Annotated[int, Range(1)] = 8                 # key vocabulary; = n_pairs: every key in every block
    n_values: Annotated[int, Range(2)] = 16
    anchor_codes: Literal["orthogonal", "learned"] = "orthogonal"   # fixed near-orthogonal anchor embeddings
    # --- model: a small causal transformer, attention-only by default (spec §6: "1-2 attention layers, d=64")
    dim: Annotated[int, Range(4)] = 64
    depth: Annotated[int, Range(1)] = 2
    heads: Annotated[int, Range(1)] = 4
    mlp_ratio: Annotated[float, Range(0)] = 0.0
    steps: Annotated[int, Range(1)] = 800
    batch_size: Annotated[int, Range(1)] = 32
    lr: Annotated[float, Range(0, open_lo=True)] = 3e-3
    weight_decay: Annotated[float, Range(0)] = 0.0
    n_eval: Annotated[int, Range(1)] = 1000
    # --- the dial protocol (spec §6): train at each lambda_train; the dial_lambda model is evaluated at every
    # lambda_eval without retraining; penalty_ablation adds the dial_lambda model trained with gamma = 0
    lambda_train: tuple[Lam, ...] = (0.0, 0.5, 1.0)
    lambda_eval: tuple[Lam, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    dial_lambda: Lam = 0.5
    penalty_ablation: bool = True
    # --- recruitment (spec §3, §6): bigram domains, the first rec_known have blocks, the rest are new
    rec_kind: Literal["unigram", "bigram"] = "bigram"
    rec_vocab: Annotated[int, Range(2)] = 16
    rec_domains: Annotated[int, Range(2)] = 3
    rec_known: Annotated[int, Range(1)] = 2
    rec_concentration: Annotated[float, Range(0, open_lo=True)] = 0.5   # Dirichlet rows of the domains
    rec_domain_seed: Annotated[int, Range(0)] = 0                       # fixed domains; run seeds vary streams
    rec_prior: Annotated[float, Range(0, open_lo=True)] = 0.5           # Dirichlet smoothing of block counts
    rec_init_tokens: Annotated[int, Range(2)] = 5000
    rec_batch_tokens: Annotated[int, Range(2)] = 1000
    rec_batches: Annotated[int, Range(1)] = 10
    rec_source: Literal["synthetic", "text"] = "synthetic"
    domains_dir: str = "localist-domains"
    domain_files: tuple[str, ...] = ("wiki.txt", "legal.txt", "code.txt")
    # --- full scale (spec §5): WikiText byte-level LM, 2 layers, lambda swept
    wikitext: bool = False
    wikitext_dir: str = "wikitext-2-raw"
    text_blocks: Literal["sentence", "fixed"] = "sentence"
    block_size: Annotated[int, Range(1)] = 64
    context: Annotated[int, Range(8)] = 256
    lm_dim: Annotated[int, Range(4)] = 256
    lm_depth: Annotated[int, Range(1)] = 2
    lm_heads: Annotated[int, Range(1)] = 8
    lm_mlp_ratio: Annotated[float, Range(0)] = 4.0
    lm_steps: Annotated[int, Range(1)] = 20000
    lm_batch_size: Annotated[int, Range(1)] = 64
    lm_lr: Annotated[float, Range(0, open_lo=True)] = 1e-3
    lm_lambda_train: tuple[Lam, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    lm_lambda_eval: tuple[Lam, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    lm_dial_lambda: Lam = 0.6                           # the LM whose dial is swept (2511.03559's best lambda)
    eval_tokens: Annotated[int, Range(1)] = 250_000
    lm_eval_chunk: Annotated[int, Range(1)] = 32
    checkpoint_every: Annotated[int, Range(0)] = 0
    variant: Variant = "correct"   # TEETH ONLY: a deliberately broken method (method.py, recruit.py)

    def validate(self) -> None:
        if self.dial_lambda not in self.lambda_train:
            raise ConfigError(f"dial_lambda={self.dial_lambda} must be one of lambda_train={self.lambda_train}")
        if self.wikitext and self.lm_dial_lambda not in self.lm_lambda_train:
            raise ConfigError(f"lm_dial_lambda={self.lm_dial_lambda} must be one of lm_lambda_train")
        if self.n_pairs > self.n_keys:
            raise ConfigError(f"n_pairs={self.n_pairs} > n_keys={self.n_keys}: keys within a block are distinct")
        if self.rec_known >= self.rec_domains and self.rec_source == "synthetic":
            raise ConfigError("rec_known must be < rec_domains (at least one new domain to recruit for)")
        if self.rec_source == "text" and self.rec_known >= len(self.domain_files):
            raise ConfigError("rec_known must be < len(domain_files)")
        if self.n_blocks > self.dim and self.anchor_codes == "orthogonal":
            raise ConfigError(f"n_blocks={self.n_blocks} orthogonal anchors need dim >= n_blocks")


SCALES = {
    "smoke": {"steps": 40, "n_eval": 200, "lambda_train": (0.5,), "lambda_eval": (0.0, 0.5, 1.0),
              "penalty_ablation": False, "rec_batches": 3, "rec_init_tokens": 3000},
    "small": {},
    "full": {"wikitext": True, "rec_source": "text", "rec_kind": "unigram", "rec_init_tokens": 200_000,
             "rec_batch_tokens": 20_000, "rec_batches": 20, "steps": 3000, "n_eval": 5000,
             "checkpoint_every": 1000},
}

_SMALL = ("small", "full")
_PAPER_ENTROPY = "2511.03559 (WikiText, 2-layer LM): 7.18 bits at lambda=0 vs 5.36 at lambda=1, a drop of 1.82 bits; " \
                 "their setup, qualitative only (spec §2)"

CLAIMS = [
    # ---- C1/C2: the dial on one trained model, without retraining (spec §6 small)
    Claim(id="C1-dial-lowers-entropy", kind="paper", teeth="dial-ignored", metric="dial_entropy_drop", op=">=",
          ref=1.0, scales=_SMALL, paper=1.82, paper_note=_PAPER_ENTROPY,
          text="turning the dial from 0 to 1 on the model trained at lambda=0.5 lowers the mean attention entropy "
               "by >= 1 bit (threshold calibrated on seeds 100-102, README)"),
    Claim(id="C1-dial-raises-fidelity", kind="paper", teeth="dial-ignored", metric="dial_fidelity_gain", op=">=",
          ref=0.25, scales=_SMALL,
          text="the same dial raises pointer fidelity (attention mass in the target block) by >= 0.25"),
    Claim(id="C1-dial-monotone", kind="paper", teeth="dial-sign-flipped", metric="dial_monotone_violation",
          op="<=", ref=0.0, scales=_SMALL,
          text="spec §6: along lambda_eval = 0, .25, .5, .75, 1 entropy never rises and fidelity never falls "
               "(largest step the wrong way = 0)"),
    Claim(id="C2-fidelity-at-lambda1", kind="paper", teeth="dial-sign-flipped", metric="fidelity_localist",
          op=">=", ref=0.95, scales=_SMALL,
          text="spec §6: the model trained and run at lambda=1 puts >= 95 % of its attention in the target block"),
    Claim(id="C1-localist-accuracy", kind="paper", teeth="dial-sign-flipped", metric="acc_gain_localist", op=">=",
          ref=0.5, scales=_SMALL,
          text="spec §6: on the rule-defined pointer task, accuracy at lambda=1 exceeds accuracy at lambda=0 "
               "(each trained at its lambda, same data) by >= 0.5"),
    Claim(id="C2-penalty-concentrates", kind="paper", teeth="penalty-sign-flipped", metric="penalty_fidelity_gain",
          op=">=", ref=0.05, scales=("small",),
          text="the group-sparsity penalty concentrates attention within blocks: at lambda=0.5, the model trained "
               "with lambda*gamma*R has higher fidelity than the same model trained with gamma=0 (>= 0.05)"),
    # ---- C3: recruitment (spec §6 small)
    Claim(id="C3-recruits-new-domain", kind="paper", teeth="recruit-never", metric="rec_delay_max", op="<=",
          ref=1.0, scales=("smoke", "small", "full"),
          text="a block is recruited on the first batch of the new domain C"),
    Claim(id="C3-no-false-recruitment", kind="paper", teeth="no-complexity-cost", metric="rec_false_recruits",
          op="<=", ref=0.0, scales=("smoke", "small", "full"),
          text="no block is recruited while streaming the known domains A, B (nor on C once it has a block, nor on "
               "A when it returns)"),
    Claim(id="C3-blocks-match-domains", kind="paper", teeth="no-complexity-cost", metric="rec_blocks_minus_domains",
          op="==", ref=0.0, scales=("smoke", "small", "full"),
          text="after the stream the model holds exactly one block per ground-truth domain"),
    # ---- full scale only (WikiText, spec §5): the companion paper's LM numbers
    Claim(id="C1-wikitext-dial-entropy", kind="paper", metric="wt_dial_entropy_drop", op=">", ref=0.0,
          scales=("full",), paper=1.82, paper_note=_PAPER_ENTROPY,
          no_teeth="full scale only (WikiText); teeth run at small scale, where C1-dial-lowers-entropy carries "
                   "the same mechanism's teeth (dial-ignored)",
          text="WikiText LM: the dial lowers mean attention entropy (lambda_eval 0 -> 1, the lambda=0.6 model)"),
    Claim(id="C1-wikitext-intermediate-best", kind="paper", metric="wt_ppl_intermediate_gain", op=">", ref=0.0,
          scales=("full",), paper=4.65,
          paper_note="2511.03559: best test perplexity 4.65 at lambda=0.6 (their tokenisation unclear); the "
                     "measured value is min(PPL(0), PPL(1)) - min over intermediate lambdas",
          no_teeth="full scale only (WikiText); no CPU-scale stand-in has an interpretability/perplexity trade-off "
                   "to break",
          text="WikiText LM: the best test perplexity is at an intermediate lambda, not at 0 or 1"),
    # ---- checks: mechanisms on constructed inputs (spec §6 smoke)
    Claim(id="dial0-is-standard-attention", kind="check", metric="dial0_max_abs_diff", op="<=", ref=1e-12,
          text="lambda=0, tau0=1: the attention equals torch's scaled-dot-product attention (float64, 1e-12)"),
    Claim(id="hard-mask-offblock", kind="check", metric="hardmask_offblock_constructed", op="<=", ref=1e-6,
          text="spec §6: lambda=1, M=inf leaves < 1e-6 attention mass outside the target block"),
    Claim(id="hard-mask-offblock-trained", kind="check", metric="hardmask_offblock", op="<=", ref=1e-6,
          scales=_SMALL, text="the same on the trained localist model (hard-masking baseline, spec §4)"),
    Claim(id="offblock-bound", kind="check", metric="offblock_bound_excess", op="<=", ref=1e-12,
          text="C2's bound: off-block mass <= (n_off/n_in) exp(-(lambda M - logit gap)) at lambda = .25 ... 1"),
    Claim(id="penalty-gradient", kind="check", metric="penalty_grad_err", op="<=", ref=1e-9,
          text="autograd of R equals the closed form sqrt(|B_k|) alpha_ij / ||alpha_i,B_k|| off the target block"),
    Claim(id="penalty-zero-inside", kind="check", metric="penalty_inside_map", op="<=", ref=1e-12,
          text="R = 0 for attention entirely inside the target block (eps = 0)"),
    Claim(id="metric-formulas", kind="check", metric="metric_formula_err", op="<=", ref=1e-12,
          text="entropy: uniform over 16 -> 4 bits, one-hot -> 0; fidelity and hit rate on constructed maps"),
    Claim(id="bic-criterion", kind="check", metric="bic_decision_errors", op="==", ref=0.0,
          text="spec §6: Delta just below / above (p/2) ln|D| gives no / yes, in nats and as MDL in bits"),
]


@reproduction(
    track="analysis",
    paper=Paper(title="Localist LLMs with Recruitment Learning", authors="Joachim Diederich", year=2025,
                venue="arXiv", url="https://arxiv.org/abs/2510.09338", code=""),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2),
               "small": Resources(cpus=1, mem_gb=2, time_min=10),
               "full": Resources(cpus=8, gpus=1, mem_gb=32, time_min=720)},
    claims=CLAIMS,
    plots=[Plot(name="dial", x="lambda_eval", ys=("dial_entropy", "dial_fidelity"),
                title="The locality dial without retraining (pointer task, model trained at lambda=0.5)")],
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    ctx.log("localist_llm: config %s", asdict(cfg))
    variant = cfg.variant
    metrics: dict[str, float] = {}
    per_metric: dict[str, DatasetRef] = {}
    text_ref = None
    if cfg.wikitext:
        streams, text_ref = load_wikitext(ctx, cfg.wikitext_dir)
        metrics.update(wikitext_metrics(cfg, streams, ctx, variant))
    domain_text, rec_ref = None, DOMAINS_REF
    if cfg.rec_source == "text":
        domain_text, rec_ref = load_domains(ctx, cfg.domains_dir, cfg.domain_files)
    pointer = pointer_metrics(cfg, ctx, variant)
    if ctx.dry_run:
        return Outcome(metrics={}, dataset=text_ref or POINTER_REF)
    metrics.update(pointer)
    metrics.update(mechanism_metrics(cfg, variant))
    rec = recruitment_stream(cfg, ctx, variant, domain_text)
    metrics.update(rec)
    if text_ref is not None:  # the pointer task and the checks are stand-ins even at full scale
        per_metric.update({k: POINTER_REF for k in metrics if not k.startswith(("wt_", "rec_"))})
    per_metric.update({k: rec_ref for k in rec})
    return Outcome(metrics=metrics, dataset=text_ref or POINTER_REF, metric_datasets=per_metric)
