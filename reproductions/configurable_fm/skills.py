"""The tiny LM of the CPU protocol (spec §6): a 2-layer decoder-only transformer with a ReLU FFN, trained
in the job on a procedurally generated multi-skill corpus with a task-tag token.

Sequence layout (right-padded with PAD to ``MAX_LEN``)::

    [TAG] x_1 .. x_n [=] y_1 .. y_m [EOS]

Skills (spec §6): COPY (repeat a digit string), REVERSE, SORT (ascending), ADD (two 3-digit numbers,
``a + b``; the 4-digit sum is written least-significant digit first, our choice for learnability),
PARITY (a 0/1 string; the answer is the XOR of its bits). Strings have 4..8 symbols, so every
sequence has <= 20 tokens. The loss and the exact-match score cover the answer tokens and EOS.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from suite.models import TransformerLM
from suite.models.blocks import FeedForward

SKILLS = ("copy", "reverse", "sort", "add", "parity")
PLUS, SEP, EOS, PAD = 10, 11, 12, 13
TAG0 = 14  # tag of skill k is TAG0 + k
VOCAB = TAG0 + len(SKILLS)
MAX_LEN = 20


@dataclass
class SkillBatch:
    tokens: torch.Tensor  # (B, MAX_LEN) long
    target: torch.Tensor  # (B, MAX_LEN) bool: positions whose token is predicted and scored (answer + EOS)
    skill: torch.Tensor   # (B,) long index into SKILLS
    real: torch.Tensor    # (B, MAX_LEN) bool: non-pad tokens


def _answer(skill: str, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt body, answer) for rows ``x`` (B, n) of digits."""
    if skill == "copy":
        return x, x
    if skill == "reverse":
        return x, x.flip(1)
    if skill == "sort":
        return x, x.sort(1).values
    if skill == "parity":
        return x, x.sum(1, keepdim=True) % 2
    raise ValueError(skill)


def generate(n_per_skill: int, gen: torch.Generator, min_len: int = 4, max_len: int = 8,
             skills: tuple[str, ...] = SKILLS) -> SkillBatch:
    """``n_per_skill`` sequences of every skill (vectorised; one loop over skills and string lengths)."""
    toks, tgts, labs = [], [], []
    for k, skill in enumerate(skills):
        kid = SKILLS.index(skill)
        if skill == "add":
            a = torch.randint(100, 1000, (n_per_skill,), generator=gen)
            b = torch.randint(100, 1000, (n_per_skill,), generator=gen)
            s = a + b
            digits = lambda v, m: torch.stack([(v // 10 ** (m - 1 - j)) % 10 for j in range(m)], 1)  # noqa: E731
            body = torch.cat([digits(a, 3), torch.full((n_per_skill, 1), PLUS), digits(b, 3)], 1)
            ans = digits(s, 4).flip(1)  # least-significant digit first
            rows = [(body, ans)]
        else:
            lens = torch.randint(min_len, max_len + 1, (n_per_skill,), generator=gen)
            hi = 2 if skill == "parity" else 10
            x = torch.randint(0, hi, (n_per_skill, max_len), generator=gen)
            rows = []
            for n in range(min_len, max_len + 1):
                sel = lens == n
                if sel.any():
                    body, ans = _answer(skill, x[sel, :n], n)
                    rows.append((body, ans))
        for body, ans in rows:
            b = body.shape[0]
            seq = torch.cat([torch.full((b, 1), TAG0 + kid), body, torch.full((b, 1), SEP), ans,
                             torch.full((b, 1), EOS)], 1)
            tgt = torch.zeros_like(seq, dtype=torch.bool)
            tgt[:, body.shape[1] + 2:] = True
            pad = MAX_LEN - seq.shape[1]
            toks.append(F.pad(seq, (0, pad), value=PAD))
            tgts.append(F.pad(tgt, (0, pad), value=False))
            labs.append(torch.full((b,), k))
    tokens, target, skill = torch.cat(toks), torch.cat(tgts), torch.cat(labs)
    perm = torch.randperm(tokens.shape[0], generator=gen)
    tokens, target, skill = tokens[perm], target[perm], skill[perm]
    return SkillBatch(tokens, target, skill, tokens != PAD)


def build_lm(dim: int = 64, depth: int = 2, heads: int = 4, ffn: int = 256, seed: int = 0) -> TransformerLM:
    """The spec §6 model: d=64, 2 layers, 4 heads, FFN 256 with ReLU (``Block.mlp`` swapped for a ReLU one)."""
    torch.manual_seed(seed)
    lm = TransformerLM(VOCAB, MAX_LEN, dim, depth, heads)
    for blk in lm.blocks:
        blk.mlp = FeedForward(dim, ffn, act="relu")
        for m in blk.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
    return lm


def down_projections(lm: TransformerLM) -> list[nn.Linear]:
    """W_down of every FFN: its input is the neuron activation a = relu(W1 x + b1) (spec §3)."""
    return [blk.mlp.fc2 for blk in lm.blocks]


def answer_loss(lm: TransformerLM, tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the answer tokens and EOS."""
    logits = lm(tokens[:, :-1])
    tgt = target[:, 1:]
    return F.cross_entropy(logits[tgt], tokens[:, 1:][tgt])


@torch.no_grad()
def score(lm: TransformerLM, data: SkillBatch, n_skills: int, batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Per-skill quality (higher is better), each (n_skills,): ``exact`` = all answer tokens are the argmax
    under teacher forcing (= greedy decoding reproduces the answer exactly), ``token`` = fraction of
    answer tokens that are the argmax, ``neg_nll`` = minus the mean answer-token NLL."""
    exact, tok, nll = [], [], []
    for i in range(0, data.tokens.shape[0], batch_size):
        t, g = data.tokens[i:i + batch_size], data.target[i:i + batch_size, 1:]
        logits = lm(t[:, :-1]).float()
        y = t[:, 1:]
        ok = (logits.argmax(-1) == y) | ~g
        lp = -F.cross_entropy(logits.transpose(1, 2), y, reduction="none") * g
        cnt = g.sum(1).clamp_min(1)
        exact.append(ok.all(1).float())
        tok.append((ok & g).sum(1) / cnt)
        nll.append(lp.sum(1) / cnt)
    lab = data.skill
    out = {}
    for name, v in (("exact", exact), ("token", tok), ("neg_nll", nll)):
        v = torch.cat(v)
        out[name] = torch.zeros(n_skills).index_add_(0, lab, v) / torch.bincount(lab, minlength=n_skills).clamp_min(1)
    return out
