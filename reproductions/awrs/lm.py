"""Exact token-bigram LM over multi-character tokens (spec §6), trained by counting.

Corpus: strings of the regex and parentheses languages; a fraction ``valid_frac`` is valid, the
rest are corrupted copies or random strings over the alphabet. Vocabulary: every single character
plus the most frequent 2- and 3-character substrings. Strings are tokenised greedily (longest match).
``logp[prev, next]``: prev in [0, V] (V = start), next in [0, V] (V = EOS); closed form, so exact.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import torch

from .constraints import ALPHABET


def _regex_string(r: random.Random) -> str:
    return "".join(r.choice("abc") for _ in range(r.randint(1, 3))) + "".join(
        r.choice("0123456789") for _ in range(r.randint(2, 4)))


def _parens_string(r: random.Random, max_depth: int = 3) -> str:
    out, d = [], 0
    n = r.randint(1, 4)  # pairs
    opened = 0
    while opened < n or d > 0:
        if d < max_depth and opened < n and (d == 0 or r.random() < 0.5):
            out.append("(")
            d, opened = d + 1, opened + 1
        else:
            out.append(")")
            d -= 1
    return "".join(out)


def corpus(n: int, valid_frac: float, seed: int) -> list[str]:
    """``n`` strings, half from each language; ``valid_frac`` of them valid (data generation, once)."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        s = _regex_string(r) if i % 2 == 0 else _parens_string(r)
        if r.random() >= valid_frac:
            if r.random() < 0.5:  # corrupt one to two characters
                s = list(s)
                for _ in range(r.randint(1, 2)):
                    s[r.randrange(len(s))] = r.choice(ALPHABET)
                s = "".join(s)
            else:
                s = "".join(r.choice(ALPHABET) for _ in range(r.randint(2, 8)))
        out.append(s)
    return out


def build_vocab(texts: list[str], size: int) -> list[str]:
    """All single characters + the ``size - len(ALPHABET)`` most frequent 2/3-grams."""
    grams: Counter[str] = Counter()
    for t in texts:
        for k in (2, 3):
            grams.update(t[i:i + k] for i in range(len(t) - k + 1))
    multi = [g for g, _ in grams.most_common(max(0, size - len(ALPHABET)))]
    return list(ALPHABET) + multi


def tokenize(text: str, index: dict[str, int]) -> list[int]:
    """Greedy longest-match tokenisation (tokens of 1-3 characters)."""
    out, i = [], 0
    while i < len(text):
        for k in (3, 2, 1):
            if text[i:i + k] in index:
                out.append(index[text[i:i + k]])
                i += k
                break
        else:
            raise ValueError(f"character {text[i]!r} is not in the vocabulary")
    return out


@dataclass
class BigramLM:
    tokens: list[str]
    logp: torch.Tensor  # (V+1, V+1) float64

    @property
    def vocab(self) -> int:
        return len(self.tokens)

    @property
    def eos(self) -> int:
        return len(self.tokens)

    @classmethod
    def train(cls, texts: list[str], vocab_size: int, alpha: float = 0.1) -> "BigramLM":
        tokens = build_vocab(texts, vocab_size)
        index = {t: i for i, t in enumerate(tokens)}
        v = len(tokens)
        counts = torch.full((v + 1, v + 1), alpha, dtype=torch.float64)
        prev, nxt = [], []
        for t in texts:
            ids = tokenize(t, index)
            prev += [v] + ids
            nxt += ids + [v]
        counts.index_put_((torch.tensor(prev), torch.tensor(nxt)), torch.ones(len(prev), dtype=torch.float64),
                          accumulate=True)
        return cls(tokens, (counts / counts.sum(1, keepdim=True)).log())

    def encode(self, text: str) -> list[int]:
        return tokenize(text, {t: i for i, t in enumerate(self.tokens)})
