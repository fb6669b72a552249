"""CPU protocol (spec §6): train the tiny DLLM and the auxiliary AR model, build drafts, decode
every row of the §5 table (B0, B1, M-inject(ρ)±R, M-interp(α)) and the stub mechanics checks."""
from __future__ import annotations

import re
import time
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import spearmanr

from suite.context import RunContext
from suite.metrics import exact_match, gsm8k_extract
from suite.models.tokenizer import Tokenizer
from suite.models.transformer import TransformerLM
from suite.spec import curve_metrics
from suite.train import TrainConfig, fit

from . import data as D
from .method import DecodeConfig, Decoded, StubDLLM, TinyDLLM, broken_drafts, causal_loss, decode, inject, \
    interp_weights, masked_diffusion_loss

_ANSWER_IS = re.compile(r"[Tt]he answer is\s*:?\s*(-?\$?\d[\d,]*(?:\.\d+)?)")


def extract(text: str) -> str | None:
    """Spec §4: the number after '####', else after 'The answer is', else the last number."""
    got = gsm8k_extract(text, "strict")
    if got is None:
        m = _ANSWER_IS.findall(text)
        got = m[-1] if m else gsm8k_extract(text, "flexible")
    return got


def accuracy(texts: list[str], golds: list[str]) -> float:
    return float(np.mean([exact_match(extract(t), g) for t, g in zip(texts, golds)]))


# ----------------------------------------------------------------------------- stub mechanics (§6 smoke)

def stub_checks(cfg: Any, ctx: RunContext) -> dict[str, float]:
    """The §6 smoke assertions on a stub DLLM that always predicts the gold token."""
    tok = D.tokenizer()
    probs = D.generate(cfg.stub_problems, seed=10_000 + ctx.seed, n=cfg.n)
    _, _, gold = D.encode(tok, [p.question for p in probs], [p.answer for p in probs], cfg.prompt_len, cfg.n)
    golds = [str(p.final) for p in probs]
    dc = DecodeConfig(tau=cfg.tau, block_len=cfg.block_len, tau_remask=cfg.tau_remask, variant=cfg.variant)
    m_id, no_prov = tok.mask_id, torch.zeros_like(gold, dtype=torch.bool)

    def run(x0: torch.Tensor, prov: torch.Tensor, remask: bool) -> tuple[Decoded, StubDLLM]:
        stub = StubDLLM(gold, tok.vocab_size, m_id)
        dcr = DecodeConfig(**{**dc.__dict__, "remask": remask})
        return decode(stub, x0, prov, m_id, dcr, keep_trace=True), stub

    b1, stub_b1 = run(torch.full_like(gold, m_id), no_prov, False)
    x_r0, p_r0 = inject(gold, 0.0, m_id, ctx.generator(1))
    r0, _ = run(x_r0, p_r0, False)
    same = (torch.equal(b1.tokens, r0.tokens) and torch.equal(b1.nfe, r0.nfe)
            and len(b1.trace) == len(r0.trace) and all(torch.equal(a, b) for a, b in zip(b1.trace, r0.trace)))
    x1, p1 = inject(gold, 1.0, m_id, ctx.generator(2))
    oracle, _ = run(x1, p1, False)
    # oracle prior with corruption ε: a fraction ε of the gold tokens replaced at random
    g = ctx.generator(3)
    wrong = torch.rand(gold.shape, generator=g) < cfg.stub_eps
    rnd = 5 + (gold - 5 + torch.randint(1, tok.vocab_size - 5, gold.shape, generator=g)) % (tok.vocab_size - 5)
    noisy = torch.where(wrong, rnd, gold)
    xe, pe = inject(noisy, 1.0, m_id, ctx.generator(4))
    no_r, _ = run(xe, pe, False)
    with_r, _ = run(xe, pe, True)
    acc = lambda d: accuracy(tok.decode_batch(d.tokens), golds)  # noqa: E731
    a_b1 = acc(b1)
    return {
        "stub_acc_b1": a_b1, "stub_nfe_b1": float(b1.nfe.float().mean()),
        "stub_rho0_identical": float(same),
        "stub_oracle_nfe_rho1": float(oracle.nfe.float().mean()),
        "stub_oracle_acc_rho1_minus_b1": acc(oracle) - a_b1,
        "stub_eps_acc_noremask_minus_b1": acc(no_r) - a_b1,
        "stub_eps_acc_remask_minus_b1": acc(with_r) - a_b1,
        "stub_eps_nfe_remask": float(with_r.nfe.float().mean()),
        "stub_nfe_minus_forward_rows": float(b1.nfe.sum() - stub_b1.rows_seen),
    }


# ----------------------------------------------------------------------------- tiny models (§6 small)

def build_models(cfg: Any, tok: Tokenizer) -> tuple[TransformerLM, TransformerLM]:
    L = cfg.prompt_len + 1 + cfg.n
    dllm = TransformerLM(tok.vocab_size, L, cfg.dim, cfg.depth, cfg.heads, causal=False)
    aux = TransformerLM(tok.vocab_size, L, cfg.aux_dim, cfg.aux_depth, cfg.heads, causal=True)
    return dllm, aux


def train_models(cfg: Any, ctx: RunContext, tok: Tokenizer, train: tuple[torch.Tensor, ...],
                 dllm: TransformerLM, aux: TransformerLM) -> dict[str, float]:
    pr, pm, an = train
    syms = torch.arange(5, tok.vocab_size)
    tc = dict(batch_size=cfg.batch_size, lr=cfg.lr, optimizer="adamw", weight_decay=0.01,
              schedule="linear_warmup_cosine", warmup_steps=max(1, cfg.steps // 20), log_every=max(1, cfg.steps // 10))
    loss_d: Callable = lambda m, b: masked_diffusion_loss(m, b[0], b[1], b[2], tok.mask_id, syms,  # noqa: E731
                                                          cfg.visible_noise, cfg.visible_weight)
    t0 = time.perf_counter()
    out: dict[str, float] = {}
    if cfg.variant != "untrained-dllm":  # TEST-ONLY teeth: decode with the randomly initialised DLLM
        rd = fit(dllm, loss_d, (pr, pm, an), TrainConfig(steps=cfg.steps, **tc), ctx=ctx, name="dllm")
        out["dllm_train_loss"] = rd.final_loss
    t1 = time.perf_counter()
    aux_steps = max(1, int(round(cfg.aux_frac * cfg.steps)))  # §6: 10 % of the DLLM's steps
    loss_a: Callable = lambda m, b: causal_loss(m, b[0], b[1], tok.pad_id, tok.eos_id)  # noqa: E731
    tc["warmup_steps"], tc["log_every"] = max(1, aux_steps // 20), max(1, aux_steps // 5)
    ra = fit(aux, loss_a, (pr, an), TrainConfig(steps=aux_steps, **tc), ctx=ctx, name="aux")
    return {**out, "aux_train_loss": ra.final_loss, "dllm_train_s": t1 - t0,
            "aux_train_s": time.perf_counter() - t1, "aux_steps": float(aux_steps)}


def aux_drafts(aux: TransformerLM, prompt: torch.Tensor, tok: Tokenizer, n: int) -> tuple[list[str], float]:
    """§3.1: greedy drafts of the auxiliary model (text, then re-tokenised by the DLLM tokenizer)."""
    out = aux.generate(prompt, max_new_tokens=n, temperature=0.0, eos_id=tok.eos_id)[:, prompt.shape[1]:]
    texts = tok.decode_batch(out)
    n_tok = float(np.mean([len(tok.encode(t)) + 1 for t in texts]))  # + EOS
    return texts, n_tok


def evaluate(cfg: Any, ctx: RunContext, tok: Tokenizer, dllm_model: TransformerLM, aux: TransformerLM,
             test: tuple[torch.Tensor, torch.Tensor, torch.Tensor], golds: list[str]) -> dict[str, float]:
    """Every row of the §5 table on the held-out problems; NFE is counted per sequence."""
    pr, pm, gold = test
    m_id = tok.mask_id
    dllm = TinyDLLM(dllm_model, pr, pm, m_id, [tok.pad_id, tok.bos_id, m_id, tok.unk_id])
    aux.eval()
    t0 = time.perf_counter()
    texts, aux_tokens = aux_drafts(aux, pr, tok, cfg.n)
    aux_s = time.perf_counter() - t0
    draft = D.draft_to_state(tok, texts, cfg.n)
    draft = broken_drafts(cfg.variant, draft, gold, m_id, torch.arange(5, tok.vocab_size), ctx.generator(99))
    empty = torch.full((len(golds), cfg.n), m_id)
    no_prov = torch.zeros_like(empty, dtype=torch.bool)
    base = DecodeConfig(tau=cfg.tau, block_len=cfg.block_len, tau_remask=cfg.tau_remask, variant=cfg.variant)
    met: dict[str, float] = {"aux_acc": accuracy(texts, golds), "aux_tokens": aux_tokens, "aux_wall_s": aux_s}

    def row(name: str, x0: torch.Tensor, prov: torch.Tensor, remask: bool = False, fixed_k: int = 0,
            mix: Any = None, rule: str = "confidence") -> tuple[float, float, float]:
        dc = DecodeConfig(**{**base.__dict__, "remask": remask, "fixed_k": fixed_k, "remask_rule": rule})
        t = time.perf_counter()
        d = decode(dllm, x0, prov, m_id, dc, mix=mix, generator=ctx.generator(7))
        wall = time.perf_counter() - t
        acc = accuracy(tok.decode_batch(d.tokens), golds)
        ctx.log("row %s: acc %.3f nfe %.2f remasked %.2f (%.1fs)", name, acc, float(d.nfe.float().mean()),
                float(d.remasked.float().mean()), wall)
        return acc, float(d.nfe.float().mean()), wall

    met["acc_b0"], met["nfe_b0"], met["wall_b0"] = row("B0", empty, no_prov, fixed_k=1)
    met["acc_b1"], met["nfe_b1"], met["wall_b1"] = row("B1", empty, no_prov)
    curves: dict[str, list[float]] = {k: [] for k in ("acc", "nfe", "acc_r", "nfe_r")}
    for rho in cfg.rhos:
        seeds = 1 if rho in (0.0, 1.0) else cfg.inj_seeds  # ρ ∈ {0, 1} draw nothing random
        acc_s: dict[str, list[float]] = {k: [] for k in curves}
        for s in range(seeds):
            x0, prov = inject(draft, rho, m_id, ctx.generator(100 + s))
            a, f, _ = row(f"inject rho={rho} s={s}", x0, prov)
            ar, fr, _ = row(f"inject+R rho={rho} s={s}", x0, prov, remask=True)
            for k, v in zip(curves, (a, f, ar, fr)):
                acc_s[k].append(v)
        for k in curves:
            curves[k].append(float(np.mean(acc_s[k])))
    met.update(curve_metrics("acc_inject", "rho", cfg.rhos, curves["acc"]))
    met.update(curve_metrics("nfe_inject", "rho", cfg.rhos, curves["nfe"]))
    met.update(curve_metrics("acc_injectR", "rho", cfg.rhos, curves["acc_r"]))
    met.update(curve_metrics("nfe_injectR", "rho", cfg.rhos, curves["nfe_r"]))
    # C2 control arm (ρ = 1): remask as many provisional tokens, but at random positions
    x1, prov1 = inject(draft, 1.0, m_id, ctx.generator(100))
    met["acc_injectRrand"], met["nfe_injectRrand"], _ = row("inject+R(random) rho=1", x1, prov1, remask=True,
                                                             rule="random")
    ia, inf_ = [], []
    for alpha in cfg.alphas:
        a, f, _ = row(f"interp alpha={alpha}", empty, no_prov, mix=(draft, interp_weights(draft, alpha, m_id)))
        ia.append(a)
        inf_.append(f)
    met.update(curve_metrics("acc_interp", "alpha", cfg.alphas, ia))
    met.update(curve_metrics("nfe_interp", "alpha", cfg.alphas, inf_))
    # headline numbers (§4): NFE reduction = 1 - NFE(method) / NFE(B1), ρ = 1
    i1 = list(cfg.rhos).index(1.0)
    met["nfe_reduction_inject_rho1"] = 1.0 - curves["nfe"][i1] / met["nfe_b1"]
    met["nfe_reduction_injectR_rho1"] = 1.0 - curves["nfe_r"][i1] / met["nfe_b1"]
    met["nfe_reduction_interp_best"] = 1.0 - min(inf_) / met["nfe_b1"] if inf_ else float("nan")
    met["acc_inject_minus_b1"] = curves["acc"][i1] - met["acc_b1"]
    met["acc_injectR_minus_b1"] = curves["acc_r"][i1] - met["acc_b1"]
    met["acc_injectR_minus_inject"] = curves["acc_r"][i1] - curves["acc"][i1]
    met["acc_injectR_minus_random"] = curves["acc_r"][i1] - met["acc_injectRrand"]
    met["spearman_nfe_rho"] = spearman(cfg.rhos, curves["nfe"])
    met["spearman_nfe_rho_remask"] = spearman(cfg.rhos, curves["nfe_r"])
    return met


def spearman(xs: Any, ys: list[float]) -> float:
    """Rank correlation; a flat curve has none: report 0."""
    return 0.0 if len(set(ys)) < 2 else float(spearmanr(xs, ys).statistic)
