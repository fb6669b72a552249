"""ListOps (Nangia & Bowman 2018; LRA, Tay et al. 2021): grammar, evaluator, tokenizer, generator.

Grammar (LRA token set): ``[MIN``, ``[MAX``, ``[MED`` (integer median), ``[SM`` (sum mod 10), each
closed by ``]``, arguments are digits 0-9 or nested lists. LRA writes trees left-branching with
parentheses, ``( ( ( [MAX 2 ) 9 ) ] )``; the tokenizer drops ``(`` / ``)`` so both forms map to the
same ids. Target = the value of the expression (10 classes). The procedural generator is an
offline stand-in (provenance ``stand-in``) with LRA's defaults scaled down.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from suite.data.base import ArrayDataset, DatasetRef

OPS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VOCAB = ("<pad>",) + tuple(str(d) for d in range(10)) + OPS + (END,)
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
PAD_ID = 0


def apply_op(op: str, args: Sequence[int]) -> int:
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":
        return int(np.median(args))  # LRA: int(np.median), i.e. truncated for even counts
    if op == "[SM":
        return sum(args) % 10
    raise ValueError(f"unknown ListOps operator {op!r}")


def evaluate(tokens: Sequence[str]) -> int:
    """Value of a tokenised expression (parentheses already dropped); ValueError if malformed."""
    stack: list[list] = []
    result: int | None = None
    for t in tokens:
        if t in OPS:
            stack.append([t])
        elif t == END:
            if not stack or len(stack[-1]) < 2:
                raise ValueError("']' closes no operator with arguments")
            op, *args = stack.pop()
            v = apply_op(op, args)
            if stack:
                stack[-1].append(v)
            else:
                result = v
        elif t.isdigit() and len(t) == 1:
            if not stack:
                if result is None and len(tokens) == 1:
                    return int(t)
                raise ValueError("digit outside any list")
            stack[-1].append(int(t))
        else:
            raise ValueError(f"unknown token {t!r}")
    if stack or result is None:
        raise ValueError("unbalanced expression")
    return result


def split_tokens(source: str) -> list[str]:
    """Whitespace tokens of an LRA ``Source`` string without ``(`` and ``)``."""
    return [t for t in source.split() if t not in ("(", ")")]


def tokenize(sources: Sequence[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Int ids (N, max_len) padded with 0, and lengths (N,); tokens past ``max_len`` are cut."""
    ids = np.zeros((len(sources), max_len), dtype=np.int64)
    lengths = np.zeros(len(sources), dtype=np.int64)
    for i, s in enumerate(sources):
        toks = split_tokens(s)[:max_len]
        ids[i, : len(toks)] = [TOKEN_ID[t] for t in toks]  # KeyError on an unknown token
        lengths[i] = len(toks)
    return torch.from_numpy(ids), torch.from_numpy(lengths)


@dataclass(frozen=True)
class ListOpsConfig:
    """Generator settings (LRA used max_depth 10, max_args 10, lengths 500-2000)."""

    n: int = 2000
    max_depth: int = 6
    max_args: int = 5
    min_length: int = 10
    max_length: int = 200
    value_p: float = 0.25  # probability that a non-leaf position is a digit (LRA: 0.25)
    parens: bool = True
    seed: int = 0


class _TooLong(Exception):
    pass


def _tree(rng: random.Random, depth: int, cfg: ListOpsConfig, count: list[int]):
    """A random tree; ``count[0]`` tracks its token count and generation stops past max_length."""
    count[0] += 1
    if count[0] > cfg.max_length:
        raise _TooLong
    if depth >= cfg.max_depth or (depth > 0 and rng.random() < cfg.value_p):
        return rng.randrange(10)
    op = rng.choice(OPS)
    count[0] += 1  # the closing bracket
    return (op, [_tree(rng, depth + 1, cfg, count) for _ in range(rng.randint(2, cfg.max_args))])


def _value(t) -> int:
    return t if isinstance(t, int) else apply_op(t[0], [_value(a) for a in t[1]])


def _string(t, parens: bool) -> str:
    if isinstance(t, int):
        return str(t)
    op, args = t
    if not parens:
        return " ".join([op] + [_string(a, False) for a in args] + [END])
    s = op  # left-branching binarisation as in LRA: ( ( ( op a1 ) a2 ) ] )
    for a in args:
        s = f"( {s} {_string(a, True)} )"
    return f"( {s} {END} )"


def generate(cfg: ListOpsConfig) -> tuple[list[str], list[int]]:
    """``cfg.n`` (source, target) pairs with token length in [min_length, max_length] (rejection)."""
    rng = random.Random(cfg.seed)
    sources: list[str] = []
    targets: list[int] = []
    tries = 0
    while len(sources) < cfg.n:
        tries += 1
        if tries > 1000 * cfg.n + 10000:
            raise ValueError(f"ListOps: lengths [{cfg.min_length}, {cfg.max_length}] are unreachable "
                             f"with max_depth={cfg.max_depth}, max_args={cfg.max_args}")
        count = [0]
        try:
            t = _tree(rng, 0, cfg, count)
        except _TooLong:
            continue
        if count[0] >= cfg.min_length:
            sources.append(_string(t, cfg.parens))
            targets.append(_value(t))
    return sources, targets


def procedural_listops(cfg: ListOpsConfig = ListOpsConfig(), cache: bool = True) -> ArrayDataset:
    """Tokenised procedural ListOps (x ids (N, max_length), y value), cached on disk by config."""

    def build() -> ArrayDataset:
        sources, targets = generate(cfg)
        x, lengths = tokenize(sources, cfg.max_length)
        return ArrayDataset(x, torch.tensor(targets), DatasetRef("listops-procedural", "stand-in"),
                            {"lengths": lengths, "source": sources, "vocab": VOCAB})

    if not cache:
        return build()
    from suite.data.cache import cached

    return cached("listops", {"v": 1, **asdict(cfg)}, build)
