"""CPU protocol (spec §6): train A (causal LM), B (causal LM + span corruption, 50/50) and
C (Prefix-LM + the same mixture) on the same number of sequences, then measure left-to-right
pass@k and single-line infill on held-out programs."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from suite.context import RunContext
from suite.metrics import mean_pass_at_k
from suite.models.tokenizer import Tokenizer
from suite.models.transformer import TransformerLM
from suite.train import TrainConfig, fit

from . import programs as P
from .method import EOM, EOT, SpanConfig, encode_infill_prompt, lm_loss, sample, sample_spans, span_corrupt, \
    uncorrupt

MODELS = {"A": ("causal", False), "B": ("mixture", False), "C": ("mixture", True)}  # objective, prefix-LM


def build_training_set(progs: list[P.Program], tok: Tokenizer, objective: str, prefix_lm: bool, sc_prob: float,
                       span: SpanConfig, seed: int, max_len: int, variant: str = "paper") -> tuple[torch.Tensor, ...]:
    """Sequences (N, L), key mask, loss mask, prefix end. ``mixture``: each document is span-corrupted
    with probability ``sc_prob`` (§3), else plain causal. Prefix-LM: loss only after the prefix
    (causal documents: the signature + docstring; corrupted ones: up to <sep>)."""
    rng = np.random.default_rng(seed)
    eot = tok.stoi[EOT]
    seqs, pend = [], []
    for p in progs:  # data construction, once per run
        ids = tok.encode(p.text)
        if objective == "mixture" and rng.random() < sc_prob:
            s = span_corrupt(ids, sample_spans(len(ids), span, rng), tok, variant)
            seqs.append(s)
            pend.append(s.index(eot) + 2)
        else:
            seqs.append(ids + [eot])
            pend.append(len(tok.encode(p.header)))
    n, L = len(seqs), min(max_len, max(map(len, seqs)))
    toks = torch.full((n, L), tok.pad_id, dtype=torch.long)
    lens = torch.tensor([min(len(s), L) for s in seqs])
    toks[torch.arange(L)[None] < lens[:, None]] = torch.tensor([t for s in seqs for t in s[:L]])
    km = torch.arange(L)[None] < lens[:, None]
    pe = torch.tensor(pend)
    lm = km & (torch.arange(L)[None] >= pe[:, None]) if prefix_lm else km.clone()
    return toks, km, lm, pe


def train_model(name: str, cfg: Any, ctx: RunContext, tok: Tokenizer, progs: list[P.Program]) -> tuple[TransformerLM, dict]:
    objective, prefix_lm = MODELS[name]
    sc_prob = 0.0 if cfg.variant == "no-span-corruption" else cfg.sc_prob  # TEST-ONLY: span corruption skipped
    data = build_training_set(progs, tok, objective, prefix_lm, sc_prob,
                              SpanConfig(cfg.span_frac, cfg.span_mean, cfg.max_spans), ctx.seed + 7, cfg.max_len,
                              cfg.variant)
    torch.manual_seed(ctx.seed * 7919 + ord(name))  # same init recipe per model, distinct streams
    model = TransformerLM(tok.vocab_size, cfg.max_len, cfg.dim, cfg.depth, cfg.heads, causal=True,
                          pos_encoding=cfg.pos_encoding)

    def loss_fn(m: TransformerLM, b: tuple[torch.Tensor, ...]) -> torch.Tensor:
        t, km, lm, pe = b
        L = int(km.sum(1).max())
        return lm_loss(m, t[:, :L], km[:, :L], lm[:, :L], pe if prefix_lm else None)

    tc = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, optimizer="adamw", weight_decay=0.01,
                     schedule="linear_warmup_cosine", warmup_steps=max(1, cfg.steps // 20),
                     log_every=max(1, cfg.steps // 10))
    if cfg.variant == "untrained-mixture" and objective == "mixture":  # TEST-ONLY: training skipped
        return model, {f"train_loss_{name}": float("nan"), f"train_s_{name}": 0.0, f"train_tokens_{name}": 0.0}
    res = fit(model, loss_fn, data, tc, ctx=ctx, name=f"model_{name}")
    return model, {f"train_loss_{name}": res.final_loss, f"train_s_{name}": res.wall_s,
                   f"train_tokens_{name}": float(data[1].sum()) * cfg.steps * cfg.batch_size / len(progs)}


def l2r_pass(model: TransformerLM, name: str, cfg: Any, ctx: RunContext, tok: Tokenizer,
             progs: list[P.Program]) -> dict[str, float]:
    """Left-to-right: prompt = signature + docstring, generate the body until <|endoftext|>; unit
    tests on each of ``n_samples`` samples; unbiased pass@k (Chen et al. 2021)."""
    prefix_lm = MODELS[name][1]
    prompts = [tok.encode(p.header) for p in progs]
    gen = ctx.generator(17 + ord(name))
    correct = np.zeros(len(progs), dtype=np.int64)
    for _ in range(cfg.n_samples):
        outs = sample(model, prompts, cfg.max_new, [tok.stoi[EOT]], tok.pad_id, cfg.temperature, prefix_lm, gen=gen)
        texts = [tok.decode(o, skip_special=False) for o in outs]
        texts = [t.split("\n\n")[0] + "\n" for t in texts]  # truncate_before_pattern "\n\n" (§3)
        correct += np.array([P.passes(p, t) for p, t in zip(progs, texts)])
    n = np.full(len(progs), cfg.n_samples)
    return {f"pass1_{name}": mean_pass_at_k(n, correct, 1),
            **({f"pass{cfg.n_samples}_{name}": mean_pass_at_k(n, correct, cfg.n_samples)} if cfg.n_samples > 1 else {})}


def _fills(model: TransformerLM, name: str, cfg: Any, tok: Tokenizer, pre: list[str], suf: list[str],
           l2r_stops: str) -> list[str]:
    """Infill of the gap between each ``pre`` and ``suf``. Mixture models get the model-card prompt
    (prefix <mask_1> suffix <|endoftext|> <sep> <mask_1>) and generate until <eom>; the causal-only
    model cannot use the suffix and writes left to right from the prefix until one of ``l2r_stops``."""
    objective, prefix_lm = MODELS[name]
    if objective == "mixture":
        prompts = [encode_infill_prompt(a, b, tok) for a, b in zip(pre, suf)]
        outs = sample(model, prompts, cfg.max_line, [tok.stoi[EOM], tok.stoi[EOT]], tok.pad_id, 0.0, prefix_lm,
                      prefix_trim=1)
    else:
        stops = [tok.stoi[c] for c in l2r_stops] + [tok.stoi[EOT]]
        outs = sample(model, [tok.encode(a) for a in pre], cfg.max_line, stops, tok.pad_id, 0.0, False)
    return [tok.decode(o, skip_special=False) for o in outs]


def infill(model: TransformerLM, name: str, cfg: Any, ctx: RunContext, tok: Tokenizer,
           progs: list[P.Program]) -> dict[str, float]:
    """Two single-span infill tasks on held-out programs (spec §6 small (1)), exact match (EM):

    - ``infill_em``: one body line masked (the spec's task). In these programs the prefix (the
      docstring and the lines above) already determines the line, so a left-to-right model can
      write it too: this measures infilling, not what the suffix adds.
    - ``infill_doc_em``: one docstring clause masked ("then add 4"). Only the suffix (the body line
      that spells it out) determines it, so this is the task where seeing the suffix must pay.
    """
    r = np.random.default_rng(cfg.infill_seed)
    lines = [int(r.integers(len(p.body))) for p in progs]
    clauses = [p.clause_split(int(r.integers(p.n_clauses))) for p in progs]
    pre = [p.header + "".join(p.body[:j]) for p, j in zip(progs, lines)]
    suf = ["".join(p.body[j + 1:]) for p, j in zip(progs, lines)]
    doc_pre, doc_gold, doc_suf = (list(x) for x in zip(*clauses))
    fills = _fills(model, name, cfg, tok, pre, suf, "\n")
    em = [f.rstrip("\n") == p.body[j].rstrip("\n") for f, p, j in zip(fills, progs, lines)]
    ok = [P.passes(p, "".join(p.body[:j]) + f.rstrip("\n") + "\n" + "".join(p.body[j + 1:]))
          for f, p, j in zip(fills, progs, lines)]
    doc_fills = _fills(model, name, cfg, tok, doc_pre, doc_suf, ",.")
    return {f"infill_em_{name}": float(np.mean(em)), f"infill_pass_{name}": float(np.mean(ok)),
            f"infill_doc_em_{name}": float(np.mean([f == g for f, g in zip(doc_fills, doc_gold)]))}


def roundtrip_rate(tok: Tokenizer, n: int, seed: int, span: SpanConfig, variant: str = "paper") -> float:
    """Fraction of ``n`` random token sequences rebuilt exactly from their span corruption."""
    rng = np.random.default_rng(seed)
    syms = [i for i, s in enumerate(tok.itos) if len(s) == 1]
    ok = 0
    for _ in range(n):
        ids = [syms[i] for i in rng.integers(len(syms), size=int(rng.integers(2, 200)))]
        ok += uncorrupt(span_corrupt(ids, sample_spans(len(ids), span, rng), tok, variant), tok) == ids
    return ok / n
