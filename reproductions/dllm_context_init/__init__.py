"""Context-aware initialisation for diffusion LMs (Miao, Huang, Han, Jiang 2025; arXiv 2512.19004).

One run trains (CPU scales) or loads (full) a masked diffusion LM and a small auxiliary AR model,
then decodes the same problems with every row of the spec's §5 table under the same adaptive
threshold decoder: B0 (fixed steps), B1 (all-[MASK] start), M-inject(ρ) with and without
confidence-based remasking (+R) over the whole ρ curve, and M-interp(α). NFE counts DLLM forward
passes per sequence. The §6 stub-DLLM mechanics checks run at every scale. See README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated


from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources

from . import data as D
from .experiment import build_models, evaluate, stub_checks, train_models
from .method import Variant


@dataclass
class Config:
    # answer / prompt layout (§6: character level, n = 24)
    n: Annotated[int, Range(1)] = 24
    prompt_len: Annotated[int, Range(1)] = 56
    block_len: Annotated[int, Range(1)] = 24  # semi-AR block B (§3.4: 32 at full scale with n = 256)
    # data
    n_train: Annotated[int, Range(1)] = 20000
    n_eval: Annotated[int, Range(1)] = 300
    # tiny DLLM (bidirectional) and auxiliary AR model (§6)
    dim: Annotated[int, Range(1)] = 96
    depth: Annotated[int, Range(1)] = 2
    heads: Annotated[int, Range(1)] = 4
    aux_dim: Annotated[int, Range(1)] = 64
    aux_depth: Annotated[int, Range(1)] = 2
    steps: Annotated[int, Range(1)] = 2000
    aux_frac: Annotated[float, Range(0, 1)] = 0.1  # auxiliary model trains 10 % of the DLLM's steps (imperfect drafts)
    batch_size: Annotated[int, Range(1)] = 64
    lr: Annotated[float, Range(0, open_lo=True)] = 2e-3
    # our addition (README): denoising of visible tokens, makes p(x_j|x) a score
    visible_noise: Annotated[float, Range(0, 1)] = 0.1
    visible_weight: Annotated[float, Range(0)] = 1.0
    # decoder (§3.3-3.4; UNVERIFIED defaults)
    tau: Annotated[float, Range(0, 1, open_lo=True)] = 0.9
    tau_remask: Annotated[float, Range(0, 1)] = 0.3
    rhos: tuple[Annotated[float, Range(0, 1)], ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    alphas: tuple[Annotated[float, Range(0, 1)], ...] = (0.3, 0.5, 0.7)
    inj_seeds: Annotated[int, Range(1)] = 3  # injection masks averaged per ρ (§6)
    # stub mechanics (§6 smoke)
    stub_problems: Annotated[int, Range(1)] = 64
    stub_eps: Annotated[float, Range(0, 1)] = 0.3
    variant: Variant = "paper"    # TEST-ONLY broken variants (method.Variant); teeth of the paper claims
    # full scale (§5): folders under the data root
    dllm_dir: str = ""
    aux_dir: str = ""
    gsm8k_dir: str = "gsm8k"
    mask_id: Annotated[int, Range(0)] = 126336
    max_problems: Annotated[int, Range(0)] = 0  # 0 = all 1319
    full_batch: Annotated[int, Range(1)] = 16
    aux_max_new_tokens: Annotated[int, Range(1)] = 256
    # True: LLaDA ships its modelling code in the checkpoint folder (AutoModel + trust_remote_code runs it);
    # the DLLM only, the auxiliary AR model (Qwen2.5) loads with the library's own code. Only for trusted folders.
    trust_remote_code: bool = True

    def validate(self) -> None:
        """Relations between fields, checked when the config resolves (before any run starts)."""
        if self.dim % self.heads:
            raise ConfigError(f"dim={self.dim} is not divisible by heads={self.heads}; change dim or heads")
        if self.aux_dim % self.heads:
            raise ConfigError(f"aux_dim={self.aux_dim} is not divisible by heads={self.heads}; change aux_dim or heads")


SCALES = {
    "smoke": {"n_train": 256, "n_eval": 16, "steps": 10, "dim": 32, "depth": 1, "aux_dim": 32, "aux_depth": 1,
              "batch_size": 32, "inj_seeds": 1, "rhos": (0.0, 0.5, 1.0), "alphas": (0.5,), "stub_problems": 48},
    "small": {},
    "full": {"n": 256, "block_len": 32, "dllm_dir": "models/LLaDA-8B-Instruct",
             "aux_dir": "models/Qwen2.5-0.5B-Instruct", "inj_seeds": 1},
}

CLAIMS = [
    # mechanics (§6 smoke): stub DLLM that always predicts gold
    Claim(id="M-rho0-is-baseline", text="ρ = 0 reproduces the B1 trajectory and NFE bit for bit (stub DLLM)",
          metric="stub_rho0_identical", op="==", ref=1.0, kind="check"),
    Claim(id="M-oracle-one-pass", text="oracle prior with ρ = 1 needs exactly one DLLM pass (stub)",
          metric="stub_oracle_nfe_rho1", op="==", ref=1.0, kind="check"),
    Claim(id="M-oracle-same-acc", text="oracle prior with ρ = 1 keeps the baseline accuracy (stub)",
          metric="stub_oracle_acc_rho1_minus_b1", op="==", ref=0.0, kind="check"),
    Claim(id="M-overcommit", text="corrupted prior (ε = 0.3, ρ = 1) without remasking leaves wrong tokens "
                                  "committed: accuracy falls below B1 (stub)",
          metric="stub_eps_acc_noremask_minus_b1", op="<", ref=0.0, kind="check"),
    Claim(id="M-remask-restores", text="with confidence-based remasking the corrupted prior restores the "
                                       "baseline accuracy (stub)",
          metric="stub_eps_acc_remask_minus_b1", op=">=", ref=0.0, kind="check"),
    Claim(id="M-nfe-per-forward", text="NFE counts exactly one per DLLM forward pass per sequence",
          metric="stub_nfe_minus_forward_rows", op="==", ref=0.0, kind="check"),
    # the paper's claims (§2, thresholds of §6 small). Issue 14: without remasking injected tokens are
    # frozen unscored, so the NFE saving at ρ = 1 only counts the positions the draft left open and
    # cannot fail (an untrained DLLM with random drafts gives 0.75). The NFE claims are therefore
    # measured with remasking on (+R): an injected token saves a pass only if the DLLM keeps it.
    Claim(id="C1-nfe-reduction", text="warm start (token injection, ρ = 1, with confidence-based remasking) "
                                      "needs ≥ 20 % fewer DLLM NFE than the all-[MASK] start under the same "
                                      "threshold decoder",
          metric="nfe_reduction_injectR_rho1", op=">=", ref=0.2, scales=("small", "full"), paper=0.35,
          paper_note="abstract: 'about 35% fewer NFE' on GSM8K (one setting; decoder details unverified)",
          kind="paper", teeth="random-drafts"),
    Claim(id="C1-nfe-monotone", text="NFE (with remasking) is non-increasing in the injection rate ρ (Spearman < 0)",
          metric="spearman_nfe_rho_remask", op="<", ref=0.0, scales=("small", "full"),
          kind="paper", teeth="untrained-dllm"),
    Claim(id="C2-no-free-accuracy", text="warm start does not beat the baseline's accuracy by more than 2 pts",
          metric="acc_inject_minus_b1", op="<=", ref=0.02, scales=("small", "full"),
          paper_note="paper: naive warm start lowers accuracy; no gap number retrieved",
          kind="paper", teeth="gold-drafts"),
    # Issue 14: "no worse" also held with an untrained DLLM (chance-level accuracy either way), so it is a
    # check now; the paper's C2 ("prior skepticism recovers accuracy") is carried by the control arm below.
    Claim(id="C2-remask-no-worse", text="remasking (+R) keeps accuracy within 1 pt of plain injection or better",
          metric="acc_injectR_minus_inject", op=">=", ref=-0.01, scales=("small", "full"), kind="check"),
    Claim(id="C2-remask-beats-random", text="confidence-based remasking (the DLLM's own scores decide which "
                                            "injected tokens go back) is more accurate at ρ = 1 than remasking "
                                            "as many injected tokens per pass at random positions",
          metric="acc_injectR_minus_random", op=">", ref=0.0, scales=("small", "full"),
          paper_note="paper: confidence-based remasking ('prior skepticism') recovers part of the accuracy lost "
                     "by naive warm start; no number retrieved",
          kind="paper", teeth="untrained-dllm"),
]

PLOTS = [
    Plot(name="nfe_vs_rho", x="rho", ys=("nfe_inject", "nfe_injectR"), title="DLLM NFE vs injection rate",
         ylabel="mean NFE"),
    Plot(name="acc_vs_rho", x="rho", ys=("acc_inject", "acc_injectR"), title="Accuracy vs injection rate",
         ylabel="exact match"),
    Plot(name="interp_vs_alpha", x="alpha", ys=("nfe_interp", "acc_interp"), title="Embedding interpolation"),
]


@reproduction(
    track="reasoning",
    paper=Paper(title="Context-Aware Initialization for Reducing Generative Path Length in Diffusion "
                      "Language Models",
                authors="Tongyuan Miao, Gary Huang, Kai Jun Han, Annie Jiang", year=2025, venue="arXiv",
                url="https://arxiv.org/abs/2512.19004", code=""),
    config=Config,
    scales=SCALES,
    claims=CLAIMS,
    plots=PLOTS,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=5),
               "small": Resources(cpus=2, mem_gb=4, time_min=20),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=24 * 60)},
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    if ctx.scale == "full" or cfg.dllm_dir:
        from .full import run_full

        return run_full(cfg, ctx)
    ctx.log("dllm_context_init config %s", asdict(cfg))
    tok = D.tokenizer()
    probs = D.generate(cfg.n_train + cfg.n_eval, seed=ctx.seed, n=cfg.n)
    train, test = probs[:cfg.n_train], probs[cfg.n_train:]
    enc = lambda ps: D.encode(tok, [p.question for p in ps], [p.answer for p in ps], cfg.prompt_len, cfg.n)  # noqa: E731
    dllm, aux = build_models(cfg, tok)
    ref = DatasetRef("gsm-compact-synthetic", "stand-in")
    if ctx.dry_run:
        return Outcome(metrics={}, dataset=ref)
    metrics = stub_checks(cfg, ctx)
    metrics.update(train_models(cfg, ctx, tok, enc(train), dllm, aux))
    metrics.update(evaluate(cfg, ctx, tok, dllm, aux, enc(test), [str(p.final) for p in test]))
    return Outcome(metrics=metrics, dataset=ref,
                   notes={"params_dllm": sum(p.numel() for p in dllm.parameters()),
                          "params_aux": sum(p.numel() for p in aux.parameters())})


__all__ = ["Config", "run"]
