"""Incremental character-level constraints (spec §6) as DFAs, with a counted checker.

``Checker.prefix(text)`` / ``Checker.complete(text)`` are the constraint evaluations AWRS counts
(spec §3: ``condition.prefix`` for tokens, ``condition.complete`` for EOS); each runs the DFA from
the start over the whole text. ``token_table`` lifts the DFA to tokens (state x token -> state) for
the vectorised sampler, which then counts the calls the sequential algorithm would have made.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

ALPHABET = "abcde0123456789(),:{}\""


@dataclass
class DFA:
    """``delta[s][c]`` -> next state (missing = dead); every live state can reach ``accept``."""

    name: str
    delta: list[dict[str, int]]
    accept: frozenset[int]
    start: int = 0

    def run(self, text: str, state: int | None = None) -> int:
        s = self.start if state is None else state
        for ch in text:
            if s < 0:
                return -1
            s = self.delta[s].get(ch, -1)
        return s


def regex_dfa(lo: int = 2, hi: int = 4, max_letters: int | None = None) -> DFA:
    """``[a-c]+[0-9]{lo,hi}`` (or ``[a-c]{1,max_letters}`` when bounded)."""
    n_let = max_letters or 1
    delta: list[dict[str, int]] = [dict() for _ in range(1 + n_let + hi)]
    for i in range(n_let + 1):  # states 0..n_let: letters read
        if i < n_let:
            delta[i].update({c: i + 1 for c in "abc"})
        elif max_letters is None:
            delta[i].update({c: i for c in "abc"})
        if i > 0:
            delta[i].update({d: n_let + 1 for d in "0123456789"})
    for j in range(1, hi):  # state n_let + j: j digits read
        delta[n_let + j].update({d: n_let + j + 1 for d in "0123456789"})
    accept = frozenset(n_let + j for j in range(lo, hi + 1))
    return DFA(f"regex[a-c]{'+' if max_letters is None else '{1,%d}' % max_letters}[0-9]{{{lo},{hi}}}", delta, accept)


def parens_dfa(max_depth: int = 3) -> DFA:
    """Non-empty balanced parentheses of depth <= ``max_depth``. State 0 = start, 1+d = depth d."""
    delta: list[dict[str, int]] = [dict() for _ in range(max_depth + 2)]
    delta[0]["("] = 2
    for d in range(max_depth + 1):
        if d < max_depth:
            delta[1 + d]["("] = 2 + d
        if d > 0:
            delta[1 + d][")"] = d
    return DFA(f"parens-depth<={max_depth}", delta, frozenset({1}))


@dataclass
class Checker:
    """Counted constraint evaluations on token strings (spec §3 ``condition``)."""

    dfa: DFA
    calls: int = field(default=0)

    def prefix(self, text: str) -> bool:
        self.calls += 1
        return self.dfa.run(text) >= 0

    def complete(self, text: str) -> bool:
        self.calls += 1
        return self.dfa.run(text) in self.dfa.accept


def token_table(dfa: DFA, tokens: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(``trans`` (S, V) long, -1 = dead; ``accepting`` (S,) bool) for the token vocabulary."""
    n = len(dfa.delta)
    trans = torch.tensor([[dfa.run(t, s) for t in tokens] for s in range(n)], dtype=torch.long)
    accepting = torch.tensor([s in dfa.accept for s in range(n)])
    return trans, accepting


def make(name: str) -> DFA:
    if name == "regex":
        return regex_dfa()
    if name == "regex_short":
        return regex_dfa(1, 2, max_letters=1)
    if name == "parens":
        return parens_dfa()
    from suite.errors import UnknownNameError

    raise UnknownNameError(f"unknown constraint {name!r}; use regex, regex_short or parens")
