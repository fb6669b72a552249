"""CPU protocol (spec §6): (a) plain SFT vs Entropy-SFT on rejection-filtered uniform answers;
(b) GRPO from a weak SFT policy with the binary reward vs the dense reward (and dense + TEA).
Also the §6 smoke mechanics (selection, reward cases, TEA weights) as measured rates."""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch

from suite.context import RunContext
from suite.models.tokenizer import Tokenizer
from suite.models import decoding
from suite.models.transformer import TransformerLM
from suite.rl import token_logprobs
from suite.train import TrainConfig, fit

from . import tasks as T
from .method import EntropySFT, GRPOConfig, RewardConfig, compute_score, entropy_sft_select, grpo_advantage, \
    grpo_loss, sft_loss, tea_weights, token_entropy

SEQ_LEN = T.PROMPT_LEN + T.RESP_LEN


# --------------------------------------------------------------------------- data

def build_sft_set(specs: T.Specs, tok: Tokenizer, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences (N, SEQ_LEN) = prompt + ``</think> answer <eos>``, answers drawn uniformly over the
    valid ones; rows failing any checker are rejected (§3.2 rejection sampling, §6 (a))."""
    prompts = T.encode_prompts(specs, tok)
    resp = T.answers_to_response(T.sample_valid_answers(specs, rng), tok)
    ok = T.check(T.parse(resp, tok, prompts[:, -1:]), specs, tok).all(1)
    return torch.cat([prompts, resp], 1)[ok], ok


def format_set(specs: T.Specs, tok: Tokenizer, rng: np.random.Generator, length_only: bool = True) -> torch.Tensor:
    """Base-policy corpus (our stand-in for the pretrained model the paper fine-tunes): the same prompts
    with answers of uniform words that obey only the length constraint (``length_only``; else 2-10
    words): the base knows the answer format and when to stop, but not the other constraints."""
    act = torch.zeros_like(specs.active)
    act[:, 0] = specs.active[:, 0] & length_only
    none = T.Specs(act, *(getattr(specs, f) for f in ("lo", "hi", "kw", "k", "start", "end", "letter")))
    resp = T.answers_to_response(T.sample_valid_answers(none, rng), tok)
    return torch.cat([T.encode_prompts(specs, tok), resp], 1)


def response_mask(resp_len: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(N, SEQ_LEN - 1) bool over next-token targets: the response tokens up to and including <eos>."""
    j = torch.arange(SEQ_LEN - 1)[None] - (T.PROMPT_LEN - 1)
    return (j >= 0) & (j < resp_len[:, None])


def new_policy(cfg: Any, tok: Tokenizer, seed: int) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(tok.vocab_size, SEQ_LEN, cfg.dim, cfg.depth, cfg.heads, causal=True)


# --------------------------------------------------------------------------- (a) SFT

def train_sft(model: TransformerLM, seqs: torch.Tensor, tok: Tokenizer, esft: EntropySFT, steps: int, cfg: Any,
              ctx: RunContext, name: str) -> dict[str, float]:
    """Plain SFT or Entropy-SFT (§3.3) through ``suite.train.fit``; loss on response tokens only."""
    def loss_fn(m: TransformerLM, b: torch.Tensor) -> torch.Tensor:
        x, y = b[:, :-1], b[:, 1:]
        valid = (y != tok.pad_id) & (torch.arange(y.shape[1])[None] >= T.PROMPT_LEN - 1)
        return sft_loss(m(x), y, valid, esft)

    tc = TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.sft_lr, optimizer="adamw", weight_decay=0.0,
                     schedule="linear_warmup_cosine", warmup_steps=max(1, steps // 100),
                     log_every=max(1, steps // 5))
    res = fit(model, loss_fn, seqs, tc, ctx=ctx, name=name)
    return {f"train_loss_{name}": res.final_loss, f"train_s_{name}": res.wall_s}


# --------------------------------------------------------------------------- rollouts and evaluation

@torch.no_grad()
def rollout(model: TransformerLM, prompts: torch.Tensor, tok: Tokenizer, temperature: float,
            gen: torch.Generator) -> torch.Tensor:
    """Responses (N, RESP_LEN) sampled after the fixed-length prompts; <eos>-filled after the end."""
    out = decoding.generate(model, prompts, T.RESP_LEN, temperature=temperature, eos_id=tok.eos_id, generator=gen)
    resp = out[:, T.PROMPT_LEN:]
    pad = T.RESP_LEN - resp.shape[1]
    return torch.cat([resp, torch.full((resp.shape[0], pad), tok.eos_id)], 1) if pad else resp


@torch.no_grad()
def evaluate(model: TransformerLM, specs: T.Specs, tok: Tokenizer, gen: torch.Generator,
             temperature: float = 1.0) -> dict[str, float]:
    """Constraint satisfaction of sampled answers and the policy's mean token entropy on them."""
    model.eval()
    prompts = T.encode_prompts(specs, tok)
    resp = rollout(model, prompts, tok, temperature, gen)
    p = T.parse(resp, tok, prompts[:, -1:])
    sat = T.check(p, specs, tok)
    seq = torch.cat([prompts, resp], 1)
    mask = response_mask(p.resp_len, len(specs))
    ent = token_entropy(model(seq[:, :-1]))
    act = specs.active
    return {"all_sat": float(sat.all(1).float().mean()),
            "constraint_sat": float((sat & act).sum() / act.sum()),
            "entropy": float((ent * mask).sum() / mask.sum()),
            "answer_words": float(p.ans_mask.sum(1).float().mean()),
            "think_rate": float(p.has_think.float().mean())}


def reward_of(resp: torch.Tensor, prompts: torch.Tensor, specs: T.Specs, tok: Tokenizer,
              rcfg: RewardConfig) -> dict[str, torch.Tensor]:
    """Reward terms of responses; the output is parsed from the prompt's closing ``</think>`` on."""
    p = T.parse(resp, tok, prompts[:, -1:])
    sat = T.check(p, specs, tok)
    out = compute_score(sat, specs.active, T.CREDIT, p.has_think, p.resp_len, rcfg)
    out["resp_len"] = p.resp_len
    return out


# --------------------------------------------------------------------------- (b) GRPO / TEA-RL

def train_rl(model: TransformerLM, specs: T.Specs, tok: Tokenizer, rcfg: RewardConfig, gcfg: GRPOConfig,
             cfg: Any, ctx: RunContext, name: str) -> dict[str, float]:
    """GRPO (n rollouts per prompt, temperature 1, one update per rollout batch) through ``fit``."""
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    prompts = T.encode_prompts(specs, tok)
    pick = ctx.generator(211)
    roll = ctx.generator(307)
    g = cfg.rl_group
    log: list[dict[str, float]] = []

    def data(step: int) -> torch.Tensor:
        return torch.randint(len(specs), (cfg.rl_prompts,), generator=pick)

    def loss_fn(m: TransformerLM, idx: torch.Tensor) -> torch.Tensor:
        rows = idx.repeat_interleave(g)
        resp = rollout(m, prompts[rows], tok, cfg.rl_temperature, roll)
        sp = specs[rows]
        r = reward_of(resp, prompts[rows], sp, tok, rcfg)
        adv = grpo_advantage(r["score"], g)
        seq = torch.cat([prompts[rows], resp], 1)
        mask = response_mask(r["resp_len"], len(rows))
        x, y = seq[:, :-1], seq[:, 1:]
        with torch.no_grad():
            ref_logp = token_logprobs(ref(x), y) if gcfg.kl_coef > 0 else None
        m.train()
        loss, info = grpo_loss(m(x), y, mask, adv, None, ref_logp, gcfg)
        zero = (r["score"].view(-1, g).std(1) < 1e-8).float().mean()
        log.append({"score": float(r["score"].mean()), "acc": float(r["acc"].mean()), "zero_var": float(zero), **info})
        return loss

    tc = TrainConfig(steps=cfg.rl_steps, batch_size=cfg.rl_prompts, lr=cfg.rl_lr, optimizer="adamw",
                     weight_decay=0.0, schedule="constant", log_every=max(1, cfg.rl_steps // 5))
    fit(model, loss_fn, data, tc, ctx=ctx, name=name)
    k = max(1, len(log) // 10)
    return {f"rl_zero_var_first_{name}": float(np.mean([d["zero_var"] for d in log[:k]])),
            f"rl_train_acc_last_{name}": float(np.mean([d["acc"] for d in log[-k:]]))}


# --------------------------------------------------------------------------- smoke mechanics (§6)

def selection_exact_rate(esft: EntropySFT, ref_lambda: float, ref_ratio: float, trials: int, seed: int) -> float:
    """Fraction of random micro-batches whose Entropy-SFT selection equals a numpy reference top-k of
    δ = CE - λH over valid tokens, k = max(floor(ρN), 1) (the paper's rule with the configured λ, ρ)."""
    rng = np.random.default_rng(seed)
    ok = 0
    for _ in range(trials):
        b, t = int(rng.integers(1, 5)), int(rng.integers(1, 12))
        ce, h = rng.exponential(2.0, (b, t)), rng.exponential(1.5, (b, t))
        valid = rng.random((b, t)) < 0.7
        valid.flat[int(rng.integers(b * t))] = True
        got = entropy_sft_select(torch.tensor(ce), torch.tensor(h), torch.tensor(valid), esft).numpy()
        d = (ce - ref_lambda * h).reshape(-1)
        cand = np.flatnonzero(valid.reshape(-1))
        k = max(int(math.floor(ref_ratio * len(cand))), 1)
        want = cand[np.argsort(-d[cand], kind="stable")[:k]]
        ok += set(got.tolist()) == set(want.tolist())
    return ok / trials


def reward_cases(tok: Tokenizer, max_len: int = 16) -> list[tuple[str, float, float]]:
    """Hand-written responses (§6 smoke): (case, computed score, expected score) with the dense reward
    and a ``max_len``-token budget for the cosine term."""
    spec = T.Specs(active=torch.tensor([[True, True, False, True, True]]), lo=torch.tensor([3]),
                   hi=torch.tensor([5]), kw=torch.tensor([T.WORDS.index("c1")]), k=torch.tensor([2]),
                   start=torch.tensor([0]), end=torch.tensor([T.WORDS.index("d4")]),
                   letter=torch.tensor([T.LETTERS.index("k")]))
    rc = RewardConfig("dense", max_len=max_len)

    def score(text: str, length: int | None = None) -> float:
        ids = torch.tensor([tok.encode(text)])
        p = T.parse(ids, tok)
        if length is not None:
            p.resp_len = torch.tensor([length])
        sat = T.check(p, spec, tok)
        return float(compute_score(sat, spec.active, T.CREDIT, p.has_think, p.resp_len, rc)["score"][0])

    def cos(n: int) -> float:
        return 0.5 * (1 - math.cos(math.pi * n / max_len))

    full, part = 1 + 0.1 + 0.1 + 0.1 + 0.2, 0.1 + 0.2   # all 4 credits; length + nolet only
    return [
        ("no-think", score("c1 c1 a0 d4 <eos>"), 0.0),
        ("all", score("</think> c1 a0 c1 d4 <eos>"), full + 2 * full * cos(6)),
        ("partial", score("</think> c1 a0 a2 b3 <eos>"), part + 2 * part * cos(6)),
        ("below-0.2", score("</think> k1 <eos>"), 0.0 - cos(3)),
        ("last-think", score("</think> k0 k0 </think> c1 a0 c1 d4 <eos>"), full + 2 * full * cos(9)),
        ("no-eos", score("</think> c1 a0 c1 d4"), full + 2 * full * cos(5)),
        ("over-length", score("</think> c1 a0 c1 d4 <eos>", length=max_len), full - 2.0),
        ("len0-cos", cos(0), 0.0),
        ("half-cos", cos(max_len // 2), 0.5),
    ]


def tea_checks(trials: int, seed: int, alpha: float = 10.0, ub: float = 5.0) -> float:
    """Fraction of random batches whose TEA weights sum to <= α, lie in [0, ub], vanish on masked
    tokens, and reach ub on a token whose covariance dominates."""
    g = torch.Generator().manual_seed(seed)
    ok = 0
    for _ in range(trials):
        a0 = torch.randn(6, 1, generator=g)
        a0[0] = a0[1:].abs().max() + 1.0       # token (0, 0) has the most extreme advantage
        adv = a0.expand(6, 7)
        lp = -torch.rand(6, 7, generator=g) * 3
        m = torch.rand(6, 7, generator=g) < 0.8
        m[0, 0] = True
        w = tea_weights(adv, lp, m, alpha, ub)
        big = lp.clone()
        big[0, 0] = 1e3 * float(torch.sign(adv[0, 0] - adv[m].mean()))
        w2 = tea_weights(adv, big, m, alpha, ub)
        ok += bool(w.sum() <= alpha + 1e-5 and w.min() >= 0 and w.max() <= ub + 1e-6
                   and (w[~m] == 0).all() and abs(float(w2[0, 0]) - ub) < 1e-6)
    return ok / trials


def mechanics(cfg: Any, esft: EntropySFT, tok: Tokenizer, seed: int) -> dict[str, float]:
    cases = reward_cases(tok)
    return {"sft_selection_exact": selection_exact_rate(esft, cfg.entropy_coef, cfg.token_ratio, 200, seed),
            "reward_cases_exact": float(np.mean([abs(a - b) < 1e-5 for _, a, b in cases])),
            "tea_weights_ok": tea_checks(50, seed)}


__all__ = ["build_sft_set", "train_sft", "evaluate", "train_rl", "mechanics", "new_policy", "reward_cases"]
