"""Compact GSM-style word problems for the CPU scales (spec §6) and their tensor layout.

A problem: ``"Ann has 7 pens, gets 5 more, then doubles them."`` with the chain answer
``"7+5=12 12*2=24 #### 24"`` (1-2 operations, operands 1-20, + / - / x2 / x3). The answer must fit
``n`` characters; longer ones are redrawn. The shared ``suite.data.gsm8k`` generator writes full
GSM8K-style solutions (150-char questions, 40-char annotated answers), too long for a DLLM trained
in a few CPU minutes, so the CPU scales use this compact template (see README, deviations).

Layout (both models): ``prompt`` = question chars left-padded with PAD to ``P`` then BOS
(length ``P + 1``); ``answer`` = chain chars then EOS up to ``n`` (LLaDA fills the tail with EOS).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from suite.errors import ConfigError
from suite.models.tokenizer import Tokenizer

NAMES = ("Ann", "Bo", "Cy", "Dee", "Eve", "Max", "Liz", "Tom")
OBJECTS = ("pens", "cups", "eggs", "cards", "nuts", "hats")
CHARSET = "".join(sorted(set("".join(NAMES + OBJECTS) + "0123456789+-*=#,. abcdefghijklmnopqrstuvwxyz")))


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # chain "a+b=c c*2=d #### d"
    final: int


def _one(r: random.Random, n: int) -> Problem:
    name, obj = r.choice(NAMES), r.choice(OBJECTS)
    val = r.randint(1, 20)
    parts, steps = [f"{name} has {val} {obj}"], []
    for _ in range(r.randint(1, 2)):
        op = r.choice(("add", "sub", "mul"))
        if op == "add":
            b = r.randint(1, 20)
            parts.append(f"gets {b} more")
            steps.append(f"{val}+{b}={val + b}")
            val += b
        elif op == "sub" and val > 1:
            b = r.randint(1, min(20, val - 1))
            parts.append(f"gives {b} away")
            steps.append(f"{val}-{b}={val - b}")
            val -= b
        else:
            k = r.choice((2, 3))
            parts.append("then doubles them" if k == 2 else "then triples them")
            steps.append(f"{val}*{k}={val * k}")
            val *= k
    q = ", ".join(parts) + "."
    return Problem(q, " ".join(steps) + f" #### {val}", val)


def generate(count: int, seed: int, n: int = 24) -> list[Problem]:
    """``count`` problems whose chain answer fits ``n`` characters (redrawn otherwise)."""
    r, out = random.Random(seed), []
    while len(out) < count:
        p = _one(r, n)
        if len(p.answer) <= n:
            out.append(p)
    return out


def tokenizer() -> Tokenizer:
    """Character vocabulary of the template (about 45 symbols incl. PAD/BOS/EOS/MASK/UNK)."""
    return Tokenizer(CHARSET, "char")


def encode(tok: Tokenizer, questions: list[str], answers: list[str], prompt_len: int,
           n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prompt (N, P+1) left-padded question + BOS, prompt key mask, answer (N, n) chars + EOS fill)."""
    if any(len(q) > prompt_len for q in questions):
        raise ConfigError(f"a question is longer than prompt_len={prompt_len}; raise prompt_len")
    q, qm = tok.encode_batch(questions, pad_to=prompt_len, left_pad=True)
    prompt = torch.cat([q, torch.full((len(questions), 1), tok.bos_id)], 1)
    pmask = torch.cat([qm, torch.ones(len(questions), 1, dtype=torch.bool)], 1)
    a, am = tok.encode_batch(answers, max_len=n, pad_to=n)
    a[~am] = tok.eos_id
    return prompt, pmask, a


def draft_to_state(tok: Tokenizer, drafts: list[str], n: int) -> torch.Tensor:
    """Spec §3.1: re-tokenise draft texts with the DLLM tokenizer, truncate to ``n``, pad with MASK
    (never EOS: padding with EOS would force early termination, spec §7)."""
    ids, m = tok.encode_batch(drafts, max_len=n, pad_to=n)
    ids[~m] = tok.mask_id
    return ids
