"""CPU stand-in for stage 1 (spec §6): a procedural problem prior over a list DSL with ops map(+k),
map(*k), filter(>k), filter(even), reverse, sort, take(n), sum, max (sum/max only last). A hidden
program has 1–4 ops; its "problem text" is rendered by synonym templates. The hidden program is used
only for evaluation (precision of the selection, held-out pass@1)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# op -> (text templates with {k}, takes an argument, argument range)
OPS: dict[str, tuple[tuple[str, ...], bool, tuple[int, int]]] = {
    "map+": (("add {k} to each", "increase every item by {k}", "plus {k} each"), True, (1, 5)),
    "map*": (("multiply each by {k}", "scale items by {k}", "times {k} each"), True, (2, 3)),
    "filter>": (("keep items above {k}", "drop items not above {k}", "only values over {k}"), True, (0, 8)),
    "even": (("keep even items", "drop odd items", "only even values"), False, (0, 0)),
    "reverse": (("reverse the list", "flip the order", "reverse it"), False, (0, 0)),
    "sort": (("sort ascending", "order from small to large", "sort it"), False, (0, 0)),
    "take": (("keep the first {k}", "take {k} items", "first {k} only"), True, (1, 4)),
    "sum": (("return the sum", "add them all up", "total of items"), False, (0, 0)),
    "max": (("return the largest", "give the maximum", "biggest item"), False, (0, 0)),
}
TERMINAL = ("sum", "max")
ERR = "ERR"  # symbolic output of a program that does not parse or raises (spec §3 stage 4)
TEXT_LEN = 24  # problem texts are right-filled with "_" to this many words (fixed prompt length)


@dataclass(frozen=True)
class Problem:
    text: str       # rendered description, TEXT_LEN words
    program: str    # hidden ground truth, e.g. "map+ 2 filter> 3 sort"


def generate(n: int, seed: int, max_ops: int = 4) -> list[Problem]:
    rng = np.random.default_rng(seed)
    names = [o for o in OPS if o not in TERMINAL]
    out = []
    for _ in range(n):  # data construction
        k_ops = int(rng.integers(1, max_ops + 1))
        prog, text = [], []
        for i in range(k_ops):
            op = str(rng.choice(list(OPS) if i == k_ops - 1 else names))
            tmpl, has_k, (lo, hi) = OPS[op]
            k = int(rng.integers(lo, hi + 1))
            prog += [op, str(k)] if has_k else [op]
            text += tmpl[int(rng.integers(len(tmpl)))].format(k=k).split() + ["then"]
        words = text[:-1]
        out.append(Problem(" ".join(words + ["_"] * (TEXT_LEN - len(words))), " ".join(prog)))
    return out


def vocabulary() -> list[str]:
    words = {w for t, _, _ in OPS.values() for s in t for w in s.replace("{k}", "").split()}
    return sorted(words | set(OPS) | {str(i) for i in range(10)} | {"then", "_", "=>"})


def execute(program: str, xs: list[int]) -> object:
    """Run a DSL program on one input list; ERR when it does not parse or fails."""
    toks = program.split()
    v: object = list(xs)
    i = 0
    try:
        while i < len(toks):
            op = toks[i]
            if op not in OPS or not isinstance(v, list):
                return ERR
            if OPS[op][1]:
                k = int(toks[i + 1])
                i += 2
            else:
                k = 0
                i += 1
            if op == "map+":
                v = [a + k for a in v]
            elif op == "map*":
                v = [a * k for a in v]
            elif op == "filter>":
                v = [a for a in v if a > k]
            elif op == "even":
                v = [a for a in v if a % 2 == 0]
            elif op == "reverse":
                v = v[::-1]
            elif op == "sort":
                v = sorted(v)
            elif op == "take":
                v = v[:k]
            elif op == "sum":
                v = sum(v)
            elif op == "max":
                v = max(v) if v else ERR
        return v if toks else ERR
    except (ValueError, IndexError):
        return ERR


def test_inputs(n_problems: int, m: int, seed: int) -> list[list[list[int]]]:
    """``m`` random integer lists per problem (spec §6: random lists instead of model-written tests,
    documented in the README); lengths 3–8, values 0–9, so filters/take/sort are exercised."""
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, 10, size=int(rng.integers(3, 9))).tolist() for _ in range(m)]
            for _ in range(n_problems)]
