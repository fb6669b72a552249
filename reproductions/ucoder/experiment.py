"""CPU protocol (spec §6): a tiny causal transformer maps problem text to a DSL program; it is
pretrained on labelled pairs (the stand-in "pretrained base"), then improved for R rounds without
labels: sample N candidates per generated problem, execute on random inputs, select (consensus /
random executable candidate), self-train on the selected pairs. Selection precision is measured
against the hidden programs, never used for training."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from suite.context import RunContext
from suite.models import decoding
from suite.models.tokenizer import Tokenizer, pad_sequences
from suite.models.transformer import TransformerLM
from suite.train import TrainConfig, fit

from . import dsl as D
from .method import consensus, fit_probe, select_min_nll, select_random, signature

SEP = "=>"


def tokenizer() -> Tokenizer:
    return Tokenizer(D.vocabulary(), level="word")


def encode_pairs(tok: Tokenizer, texts: list[str], progs: list[str]) -> tuple[torch.Tensor, ...]:
    """(tokens, key mask, loss mask over the program + EOS) for ``<bos> text => program <eos>``."""
    seqs = [tok.encode(f"{t} {SEP} {p}", bos=True, eos=True) for t, p in zip(texts, progs)]
    plen = len(tok.encode(f"{texts[0]} {SEP}", bos=True))  # fixed text length
    toks, km = pad_sequences(seqs, tok.pad_id)
    lens, L = km.sum(1), toks.shape[1]
    c = torch.arange(L - 1)[None]
    lm = (c >= plen - 1) & (c < lens[:, None] - 1)
    return toks, km, lm


def seq_logprobs(model: TransformerLM, toks: torch.Tensor, km: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
    lp = torch.gather(model(toks, km)[:, :-1].float().log_softmax(-1), 2, toks[:, 1:, None]).squeeze(2)
    return lp * lm


def sft(model: TransformerLM, tok: Tokenizer, texts: list[str], progs: list[str], steps: int, batch: int, lr: float,
        ctx: RunContext, name: str) -> float:
    """Next-token loss on the program (pretraining, and stage 6 consolidation)."""
    data = encode_pairs(tok, texts, progs)

    def loss_fn(m: TransformerLM, b: tuple[torch.Tensor, ...]) -> torch.Tensor:
        t, k, lm = b
        return -seq_logprobs(m, t, k, lm).sum() / lm.sum()

    tc = TrainConfig(steps=steps, batch_size=batch, lr=lr, optimizer="adamw", weight_decay=0.01,
                     schedule="linear_warmup_cosine", warmup_steps=max(1, steps // 10), log_every=max(1, steps // 4))
    return fit(model, loss_fn, data, tc, ctx=ctx, name=name).final_loss


@torch.no_grad()
def sample(model: TransformerLM, tok: Tokenizer, texts: list[str], n: int, temperature: float, max_new: int,
           gen: torch.Generator, chunk: int = 4096) -> list[list[str]]:
    """``n`` programs per text (stage 3), decoded with a key-value cache (``suite.models.decoding``, issue 17
    item 3): each new token runs through the network alone instead of the whole sequence again. Prompts are
    left-padded with a key mask, so texts of any length decode as they would alone (the DSL's texts all
    have TEXT_LEN words, so the rows are not padded here)."""
    dev = next(model.parameters()).device
    ids, km = pad_sequences([tok.encode(f"{t} {SEP}", bos=True) for t in texts], tok.pad_id, left_pad=True)
    ids, km = ids.repeat_interleave(n, 0).to(dev), km.repeat_interleave(n, 0).to(dev)
    outs = []
    for lo in range(0, len(ids), chunk):
        o = decoding.generate(model, ids[lo:lo + chunk], max_new, temperature=temperature, eos_id=tok.eos_id,
                              generator=gen, key_mask=km[lo:lo + chunk])
        outs += tok.decode_batch(o[:, ids.shape[1]:])
    return [outs[i * n:(i + 1) * n] for i in range(len(texts))]


@torch.no_grad()
def score_candidates(model: TransformerLM, tok: Tokenizer, texts: list[str], progs: list[str],
                     chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate: NLL (sum), mean token log-prob, and the mean-pooled final hidden state over the
    program tokens (features of the representation probe, C4)."""
    nll, mlp, feats = [], [], []
    for lo in range(0, len(texts), chunk):
        t, k, lm = encode_pairs(tok, texts[lo:lo + chunk], progs[lo:lo + chunk])
        lp = seq_logprobs(model, t, k, lm)
        nll.append(-lp.sum(1))
        mlp.append(lp.sum(1) / lm.sum(1).clamp_min(1))
        h = model.hidden(t, k)[:, 1:]
        w = lm.float()[..., None]
        feats.append((h * w).sum(1) / w.sum(1).clamp_min(1))
    return torch.cat(nll).numpy(), torch.cat(mlp).numpy(), torch.cat(feats).numpy()


def passes(prog: str, truth: str, inputs: list[list[int]]) -> bool:
    return all(D.execute(prog, x) == D.execute(truth, x) for x in inputs)


def pass_at_1(model: TransformerLM, tok: Tokenizer, probs: list[D.Problem], hidden: list[list[list[int]]],
              max_new: int) -> float:
    """Greedy pass@1 on held-out problems, judged on hidden test inputs against the hidden program."""
    outs = sample(model, tok, [p.text for p in probs], 1, 0.0, max_new, torch.Generator().manual_seed(0))
    return float(np.mean([passes(o[0], p.program, h) for o, p, h in zip(outs, probs, hidden)]))


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic, ties averaged)."""
    pos, neg = label.sum(), (~label).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    u, inv, cnt = np.unique(score, return_inverse=True, return_counts=True)
    r = (np.cumsum(cnt) - (cnt - 1) / 2.0)[inv]  # average ranks of ties
    return float((r[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def ipc_round(model: TransformerLM, tok: Tokenizer, probs: list[D.Problem], cfg: Any, rng: np.random.Generator,
              gen: torch.Generator, rule: str) -> dict[str, Any]:
    """Stages 2–5 of one round with selection ``rule`` ('consensus' | 'random'); returns the selected
    pairs and the selection diagnostics (precision vs the hidden programs, used for reporting only)."""
    inputs = D.test_inputs(len(probs), cfg.n_tests, int(rng.integers(1 << 30)))          # stage 2 (random)
    hidden = D.test_inputs(len(probs), cfg.n_hidden_tests, int(rng.integers(1 << 30)))  # evaluation only
    cands = sample(model, tok, [p.text for p in probs], cfg.n_samples, cfg.temperature, cfg.max_new, gen)  # 3
    flat_t = [p.text for p in probs for _ in range(cfg.n_samples)]
    flat_c = [c for cs in cands for c in cs]
    nll, mlp, feats = score_candidates(model, tok, flat_t, flat_c)
    N = cfg.n_samples
    cache: dict[tuple[str, int], tuple[str, ...]] = {}

    def sig(i: int, c: str) -> tuple[str, ...]:  # stage 4, memoised per (program, problem)
        key = (c, i)
        if key not in cache:
            cache[key] = signature(lambda x: D.execute(c, x), inputs[i])
        return cache[key]

    sigs = [[sig(i, c) for c in cs] for i, cs in enumerate(cands)]
    correct = np.array([[passes(c, p.program, h) for c in cs] for cs, p, h in zip(cands, probs, hidden)])
    # representation probe (C4): pseudo-labels = membership of the consensus cluster (no ground truth)
    pre = [consensus(s, inputs[i], mlp[i * N:(i + 1) * N], 0.0) for i, s in enumerate(sigs)]
    member = np.zeros((len(probs), N), dtype=bool)
    for i, s in enumerate(pre):
        member[i, s.cluster] = True
    half = len(probs) // 2
    probe = fit_probe(feats[:half * N], member[:half].ravel())
    pscore = probe(feats)
    if cfg.variant == "untrained-probe":  # TEST-ONLY broken variant: a probe that learned nothing
        pscore = np.zeros_like(pscore)
    out: dict[str, Any] = {"probe_auc": auc(pscore[half * N:], correct[half:].ravel()),
                           "nll_auc": auc(-nll[half * N:], correct[half:].ravel()),
                           "cand_acc": float(correct.mean())}
    chosen = []
    for i, s in enumerate(sigs):
        sl = slice(i * N, (i + 1) * N)
        if rule == "consensus":
            c = consensus(s, inputs[i], mlp[sl], cfg.gamma, pscore[sl] if cfg.probe_rank else None,
                          pick="smallest" if cfg.variant == "anti-consensus" else "largest").chosen
        elif rule == "random":
            c = select_random(s, inputs[i], rng)
        else:
            c = select_min_nll(s, inputs[i], nll[sl])
        chosen.append(c)
    chosen_a = np.array(chosen)
    kept = np.flatnonzero(chosen_a >= 0)
    out["kept_frac"] = float(len(kept) / len(probs))
    out["precision"] = float(correct[kept, chosen_a[kept]].mean()) if len(kept) else float("nan")
    if rule == "consensus":  # precision of the min-NLL rule on the same candidate pool (ablation, §4)
        mn = np.array([select_min_nll(s, inputs[i], nll[i * N:(i + 1) * N]) for i, s in enumerate(sigs)])
        k2 = np.flatnonzero(mn >= 0)
        out["precision_min_nll"] = float(correct[k2, mn[k2]].mean()) if len(k2) else float("nan")
        rn = np.array([select_random(s, inputs[i], rng) for i, s in enumerate(sigs)])
        k3 = np.flatnonzero(rn >= 0)
        out["precision_random"] = float(correct[k3, rn[k3]].mean()) if len(k3) else float("nan")
    out["pairs"] = ([probs[i].text for i in kept], [cands[i][chosen_a[i]] for i in kept])
    return out


def self_train(base: TransformerLM, tok: Tokenizer, rule: str, cfg: Any, ctx: RunContext,
               test: list[D.Problem], hidden: list[list[list[int]]]) -> dict[str, float]:
    """R rounds of IPC (stage 6: SFT on the selected pairs; the improved model samples the next round)."""
    model = copy.deepcopy(base)
    off = sum(map(ord, rule))
    rng, gen = np.random.default_rng(ctx.seed * 31 + off), ctx.generator(500 + off)
    m: dict[str, float] = {}
    for r in range(1, cfg.rounds + 1):
        probs = D.generate(cfg.n_problems, ctx.seed * 1000 + 100 + r, cfg.max_ops)  # stage 1 stand-in
        info = ipc_round(model, tok, probs, cfg, rng, gen, rule)
        texts, progs = info.pop("pairs")
        if progs:
            sft(model, tok, texts, progs, cfg.st_steps, cfg.batch, cfg.st_lr, ctx, f"st_{rule}_r{r}")
        m.update({f"{k}_{rule}_r{r}": float(v) for k, v in info.items()})
        m[f"pass1_{rule}_r{r}"] = pass_at_1(model, tok, test, hidden, cfg.max_new)
    return m
