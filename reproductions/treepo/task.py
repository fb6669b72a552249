"""CPU task (spec §6): procedurally generated arithmetic chains with a verifiable final answer between
marker tokens, in single-digit arithmetic modulo ``mod`` (default 10) so that a 2-layer d=64 model can
learn a step. Prompt ``7+5*3=`` (left-to-right), response ``7+5=2;2*3=6;[6]<eos>``; ``[...]`` plays
the role of ``\\boxed{...}``. Character tokenizer (vocab 22 incl. the 5 specials)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suite.models.tokenizer import Tokenizer

SYMBOLS = "0123456789+-*=;[]"
OPEN, CLOSE = "[", "]"


def tokenizer() -> Tokenizer:
    return Tokenizer(SYMBOLS)


@dataclass(frozen=True)
class Problem:
    prompt: str      # "7+5*3="
    solution: str    # "7+5=12;12*3=36;[36]"
    answer: int


MOD = 10


def _apply(a: int, op: str, b: int) -> int:
    return (a + b if op == "+" else a - b if op == "-" else a * b) % MOD


def generate(n: int, seed: int, steps: tuple[int, int] = (2, 4)) -> list[Problem]:
    """``n`` chains of ``steps[0]..steps[1]`` operations on single-digit operands, values mod 10."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):  # data construction, once per run
        v = int(rng.integers(0, MOD))
        prompt, sol = str(v), ""
        for _ in range(int(rng.integers(steps[0], steps[1] + 1))):
            op, b = "+-*"[int(rng.integers(3))], int(rng.integers(0, MOD))
            w = _apply(v, op, b)
            prompt += f"{op}{b}"
            sol += f"{v}{op}{b}={w};"
            v = w
        out.append(Problem(prompt + "=", sol + f"{OPEN}{v}{CLOSE}", v))
    return out


def corrupt(p: Problem, rng: np.random.Generator) -> str:
    """A wrong demonstration (spec §6 SFT on 50 %-correct demos): one step's result is off by 1..3
    and the error propagates to the final answer."""
    steps = p.solution.split(";")[:-1]
    k = int(rng.integers(len(steps)))
    vals = []
    v = None
    for i, s in enumerate(steps):
        lhs, _ = s.split("=")
        a_s, op, b_s = lhs[:-2], lhs[-2], lhs[-1]
        a = int(a_s) if v is None else v
        w = _apply(a, op, int(b_s))
        if i == k:
            w = (w + int(rng.integers(1, MOD))) % MOD
        vals.append(f"{a}{op}{b_s}={w}")
        v = w
    return ";".join(vals) + f";{OPEN}{v}{CLOSE}"


def boxed_answer(text: str) -> int | None:
    """The integer between the first ``[`` and the next ``]`` (the ``\\boxed{}`` analogue)."""
    i = text.find(OPEN)
    j = text.find(CLOSE, i + 1)
    if i < 0 or j < 0:
        return None
    s = text[i + 1:j]
    return int(s) if s.isdigit() else None


def has_box(text: str) -> bool:
    return boxed_answer(text) is not None
