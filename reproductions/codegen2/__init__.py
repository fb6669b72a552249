"""CodeGen2 (Nijkamp, Hayashi, Xiong, Savarese, Zhou; ICLR 2023): causal LM + span corruption in one
causal objective, infill sampling, Prefix-LM ablation.

CPU scales (spec §6): three tiny models trained on the same procedural toy-Python sequences for the
same steps — A causal only, B 50/50 causal + span corruption, C Prefix-LM + the mixture — scored by
left-to-right pass@k (unit tests, unbiased estimator) and single-line infill exact match. Full scale
(spec §5): released CodeGen2 checkpoints on HumanEval through the HF adapter. See README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError, UnknownNameError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Resources

from . import programs as P
from .experiment import MODELS, infill, l2r_pass, roundtrip_rate, train_model
from .method import SpanConfig, tokenizer

# TEST-ONLY broken variants: "drop-last" loses the last token of every corrupted span from the target;
# "no-span-corruption" skips the span-corruption step (B and C train on plain causal documents);
# "untrained-mixture" skips training of the mixture models B and C.
Variant = Literal["paper", "drop-last", "no-span-corruption", "untrained-mixture"]


@dataclass
class Config:
    n_train: Annotated[int, Range(1)] = 30000
    n_eval: Annotated[int, Range(1)] = 300
    dim: Annotated[int, Range(1)] = 128
    depth: Annotated[int, Range(1)] = 2
    heads: Annotated[int, Range(1)] = 4
    pos_encoding: str = "rope"    # CodeGen2 is a GPT-J-style decoder with rotary embeddings (§3)
    max_len: Annotated[int, Range(1)] = 224
    steps: Annotated[int, Range(1)] = 400
    batch_size: Annotated[int, Range(1)] = 32
    lr: Annotated[float, Range(0, open_lo=True)] = 2e-3
    sc_prob: Annotated[float, Range(0, 1)] = 0.5  # §3: half the sequences span-corrupted
    span_frac: Annotated[float, Range(0, 1)] = 0.15  # UNVERIFIED (§3): corrupted fraction
    # UNVERIFIED: Poisson(3) BPE tokens in §3 ≈ 10 characters at our char level
    span_mean: Annotated[float, Range(0, open_lo=True)] = 10.0
    max_spans: Annotated[int, Range(1)] = 8  # sentinels <mask_1..8> at CPU scale (paper: 16)
    models: tuple[str, ...] = ("A", "B", "C")
    n_samples: Annotated[int, Range(1)] = 2  # samples per problem for pass@k
    temperature: Annotated[float, Range(0)] = 0.2  # §4: 0.2 for pass@1
    max_new: Annotated[int, Range(1)] = 96
    max_line: Annotated[int, Range(1)] = 24
    infill_seed: Annotated[int, Range(0)] = 1
    roundtrip_n: Annotated[int, Range(1)] = 1000
    variant: Variant = "paper"
    # full scale (§5)
    model_dir: str = ""
    humaneval: str = "humaneval/HumanEval.jsonl.gz"
    full_samples: Annotated[int, Range(1)] = 200
    full_batch: Annotated[int, Range(1)] = 16
    # §4 / Codex protocol: n = 200 samples at T = 0.2 for pass@1 and at T = 0.8 for pass@100, top-p 0.95
    full_t_low: Annotated[float, Range(0, open_lo=True)] = 0.2
    full_t_high: Annotated[float, Range(0, open_lo=True)] = 0.8
    full_top_p: Annotated[float, Range(0, 1, open_lo=True)] = 0.95
    # True: the CodeGen2 checkpoints ship their modelling code (official README: trust_remote_code=True);
    # load_causal_lm then runs it. Only for trusted folders.
    trust_remote_code: bool = True

    def validate(self) -> None:
        """Relations between fields, checked when the config resolves (before any run starts)."""
        if self.dim % self.heads:
            raise ConfigError(f"dim={self.dim} is not divisible by heads={self.heads}; change dim or heads")


SCALES = {
    "smoke": {"n_train": 256, "n_eval": 12, "dim": 32, "depth": 1, "steps": 20, "batch_size": 16,
              "n_samples": 1, "max_new": 48, "roundtrip_n": 1000},
    "small": {},
    "full": {"model_dir": "models/codegen2-1B", "full_samples": 200},
}

CLAIMS = [
    Claim(id="M-span-roundtrip", text="rebuilding the source from (corrupted, spans) is exact (1000 random sequences)",
          metric="sc_roundtrip_exact", op="==", ref=1.0, scales=("smoke", "small"), kind="check"),
    Claim(id="L2-infill", text="the mixture model (B) infills a masked docstring clause, which only the suffix "
                               "determines, ≥ 15 pts better (exact match) than the causal-only model (A)",
          metric="infill_doc_em_B_minus_A", op=">=", ref=0.15, scales=("small",),
          kind="paper", teeth="no-span-corruption"),
    Claim(id="L2-infill-prefixlm", text="the Prefix-LM mixture model (C) also infills the clause ≥ 15 pts better than A",
          metric="infill_doc_em_C_minus_A", op=">=", ref=0.15, scales=("small",),
          kind="paper", teeth="no-span-corruption"),
    Claim(id="L3-l2r-kept", text="the mixture keeps most left-to-right ability: pass@1(B) ≥ 0.7 × pass@1(A)",
          metric="pass1_B_over_A", op=">=", ref=0.7, scales=("small",),
          paper_note="paper: mixture slightly worse than causal on HumanEval at equal compute (L3)",
          kind="paper", teeth="untrained-mixture"),
    # Issue 14: `R-humaneval-pass1` (released checkpoint pass@1 >= 0.0) could not fail and was removed;
    # `humaneval_pass1` is still measured and reported at full scale. What full scale checks instead:
    Claim(id="M-humaneval-harness", text="every canonical HumanEval solution passes its tests in our execution "
                                         "harness (child interpreter, timeout)",
          metric="humaneval_canonical_ok", op="==", ref=1.0, scales=("full",), kind="check"),
]


def _dataset() -> DatasetRef:
    return DatasetRef("toy-python-procedural", "stand-in")


@reproduction(
    track="reasoning",
    paper=Paper(title="CodeGen2: Lessons for Training LLMs on Programming and Natural Languages",
                authors="Erik Nijkamp, Hiroaki Hayashi, Caiming Xiong, Silvio Savarese, Yingbo Zhou", year=2023,
                venue="ICLR", url="https://arxiv.org/abs/2305.02309", code="https://github.com/salesforce/CodeGen2"),
    config=Config,
    scales=SCALES,
    claims=CLAIMS,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=5),
               "small": Resources(cpus=2, mem_gb=4, time_min=20),
               "full": Resources(cpus=8, gpus=1, mem_gb=64, time_min=24 * 60)},
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    bad = [m for m in cfg.models if m not in MODELS]
    if bad or not {"A", "B"} <= set(cfg.models):
        raise UnknownNameError(f"models={cfg.models!r}: use A, B (required) and optionally C")
    if ctx.scale == "full" or cfg.model_dir:
        from .full import run_full

        return run_full(cfg, ctx)
    ctx.log("codegen2 config %s", asdict(cfg))
    progs = P.generate(cfg.n_train + cfg.n_eval, seed=ctx.seed)
    train, test = progs[:cfg.n_train], progs[cfg.n_train:]
    tok = tokenizer("".join(sorted(set("".join(p.text for p in progs)))))
    span = SpanConfig(cfg.span_frac, cfg.span_mean, cfg.max_spans)
    if ctx.dry_run:
        return Outcome(metrics={}, dataset=_dataset())
    m: dict[str, float] = {"sc_roundtrip_exact": roundtrip_rate(tok, cfg.roundtrip_n, ctx.seed, span, cfg.variant)}
    for name in cfg.models:
        model, info = train_model(name, cfg, ctx, tok, train)
        m.update(info)
        m.update(l2r_pass(model, name, cfg, ctx, tok, test))
        m.update(infill(model, name, cfg, ctx, tok, test))
    m["infill_em_B_minus_A"] = m["infill_em_B"] - m["infill_em_A"]
    m["infill_doc_em_B_minus_A"] = m["infill_doc_em_B"] - m["infill_doc_em_A"]
    m["pass1_B_minus_A"] = m["pass1_B"] - m["pass1_A"]
    m["pass1_B_over_A"] = m["pass1_B"] / m["pass1_A"] if m["pass1_A"] > 0 else float(m["pass1_B"] > 0)
    if "C" in cfg.models:
        m["infill_em_C_minus_A"] = m["infill_em_C"] - m["infill_em_A"]
        m["infill_em_C_minus_B"] = m["infill_em_C"] - m["infill_em_B"]
        m["infill_doc_em_C_minus_A"] = m["infill_doc_em_C"] - m["infill_doc_em_A"]
        m["pass1_C_minus_B"] = m["pass1_C"] - m["pass1_B"]
    return Outcome(metrics=m, dataset=_dataset())
