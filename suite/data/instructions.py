"""A procedural instruction-tuning pool (offline stand-in for Tulu-3 / Alpaca-style pools).

Every item is an instruction from one of 40 templated task families with a programmatically correct
answer, so a selector's output can be judged exactly: which family it came from, whether its answer
is right, how the family histogram looks. The data-selection papers (MIG, Diversify-and-Conquer,
RDS+) share it; their specs (§6) ask for:

- task families with 1-3 tag strings each, some near-synonyms across families ("string reversal" /
  "reverse text"), so a label graph has something to merge;
- Zipf-distributed family frequencies (head-heavy), ``zipf`` = the exponent s;
- a fraction ``corrupt_frac`` of items whose answer is wrong, and a noisy quality score per item
  (correct ~ N(4, 0.5), wrong ~ N(2, 0.5) by default), as DEITA-style annotations would be;
- optional junk families (their answers are always wrong: random strings), near-duplicate outliers
  (copies of one item with a one-character edit) and distractor chit-chat with free-form replies.

``make_pool`` is deterministic in its seed; ``eval_set`` (not ``test_set``: pytest would collect a
``test_*`` name imported into a test file) draws correct items from a separate RNG
stream (``seed`` + a fixed offset), family-balanced. Everything is plain Python strings plus a few
tensors: a 5,000-item pool builds in well under a second.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from suite.data.base import DatasetRef
from suite.errors import ConfigError

NAME = "instruction-pool-procedural"
_TEST_OFFSET = 7_919  # the test stream's seed offset: test items never share the pool's draws

# kind codes of Pool.kind
NORMAL, JUNK, DUPLICATE, DISTRACTOR = 0, 1, 2, 3

_LETTERS = "abcdefgh"


def _word(r: random.Random) -> str:
    return "".join(r.choice(_LETTERS) for _ in range(r.randint(3, 6)))


def _digits(r: random.Random) -> list[int]:
    return [r.randint(0, 9) for _ in range(r.randint(3, 5))]


@dataclass(frozen=True)
class Family:
    """One task family: templates with ``{x}`` (and ``{y}``), an input sampler, the exact answer."""

    name: str
    tags: tuple[str, ...]
    templates: tuple[str, ...]
    sample: Callable[[random.Random], dict]
    answer: Callable[[dict], str]


def _w(r: random.Random) -> dict:
    return {"x": _word(r)}


def _ab(r: random.Random) -> dict:
    return {"x": r.randint(0, 99), "y": r.randint(0, 99)}


def _small_ab(r: random.Random) -> dict:
    return {"x": r.randint(0, 9), "y": r.randint(0, 9)}


def _n(r: random.Random) -> dict:
    return {"x": r.randint(0, 99)}


def _lst(r: random.Random) -> dict:
    d = _digits(r)
    return {"x": " ".join(map(str, d)), "v": d}


def _vowels(w: str) -> int:
    return sum(c in "aeiou" for c in w)


def _fam(name: str, tags: Sequence[str], templates: Sequence[str], sample: Callable, answer: Callable) -> Family:
    return Family(name, tuple(tags), tuple(templates), sample, answer)


# 40 families: 20 on words, 15 on numbers, 5 on digit lists. Tags overlap on purpose.
FAMILIES: tuple[Family, ...] = (
    _fam("reverse", ("string reversal", "text manipulation"),
         ("Reverse the word {x}.", "Write {x} backwards.", "What is {x} reversed?"), _w, lambda d: d["x"][::-1]),
    _fam("uppercase", ("capitalization", "text manipulation"),
         ("Write {x} in capital letters.", "Uppercase {x}.", "Convert {x} to upper case."), _w,
         lambda d: d["x"].upper()),
    _fam("first_letter", ("character lookup",), ("What is the first letter of {x}?", "First letter of {x}:"), _w,
         lambda d: d["x"][0]),
    _fam("last_letter", ("character lookup",), ("What is the last letter of {x}?", "Last letter of {x}:"), _w,
         lambda d: d["x"][-1]),
    _fam("length", ("counting", "string length"), ("How many letters are in {x}?", "Length of {x}:"), _w,
         lambda d: str(len(d["x"]))),
    _fam("vowel_count", ("counting", "vowel counting"), ("How many vowels are in {x}?", "Count the vowels in {x}."),
         _w, lambda d: str(_vowels(d["x"]))),
    _fam("sort_letters", ("sorting", "alphabetical order"),
         ("Sort the letters of {x}.", "Put the letters of {x} in alphabetical order."), _w,
         lambda d: "".join(sorted(d["x"]))),
    _fam("dedupe", ("deduplication", "text manipulation"),
         ("Remove repeated letters from {x}.", "Keep the first of each letter in {x}."), _w,
         lambda d: "".join(dict.fromkeys(d["x"]))),
    _fam("double_letters", ("text manipulation", "repetition"), ("Double every letter of {x}.",), _w,
         lambda d: "".join(c + c for c in d["x"])),
    _fam("rotate_left", ("rotation", "text manipulation"), ("Rotate {x} left by one.", "Shift {x} left once."), _w,
         lambda d: d["x"][1:] + d["x"][0]),
    _fam("rotate_right", ("rotation",), ("Rotate {x} right by one.", "Shift {x} right once."), _w,
         lambda d: d["x"][-1] + d["x"][:-1]),
    _fam("swap_ends", ("text manipulation", "character swap"), ("Swap the first and last letters of {x}.",), _w,
         lambda d: d["x"][-1] + d["x"][1:-1] + d["x"][0]),
    _fam("remove_vowels", ("vowel removal", "text manipulation"), ("Remove the vowels from {x}.", "Delete vowels: {x}"),
         _w, lambda d: "".join(c for c in d["x"] if c not in "aeiou") or "-"),
    _fam("count_a", ("counting", "character lookup"), ("How many times does a occur in {x}?",), _w,
         lambda d: str(d["x"].count("a"))),
    _fam("caesar", ("cipher", "character shift"), ("Shift every letter of {x} by one.", "Caesar +1: {x}"), _w,
         lambda d: "".join(chr(ord(c) + 1) for c in d["x"])),
    _fam("palindrome", ("palindrome check", "yes/no question"), ("Is {x} a palindrome?",), _w,
         lambda d: "yes" if d["x"] == d["x"][::-1] else "no"),
    _fam("repeat", ("repetition",), ("Repeat {x} twice.", "Write {x} two times."), _w, lambda d: d["x"] * 2),
    _fam("second_letter", ("character lookup",), ("What is the second letter of {x}?",), _w, lambda d: d["x"][1]),
    _fam("middle_letter", ("character lookup",), ("What is the middle letter of {x}?",), _w,
         lambda d: d["x"][len(d["x"]) // 2]),
    _fam("every_other", ("subsequence", "text manipulation"), ("Keep every other letter of {x}.",), _w,
         lambda d: d["x"][::2]),
    _fam("add", ("arithmetic", "addition"), ("What is {x} plus {y}?", "Add {x} and {y}.", "{x} + {y} ="), _ab,
         lambda d: str(d["x"] + d["y"])),
    _fam("subtract", ("arithmetic", "subtraction"), ("What is {x} minus {y}?", "{x} - {y} ="), _ab,
         lambda d: str(d["x"] - d["y"])),
    _fam("max2", ("comparison", "maximum"), ("Which is larger, {x} or {y}?", "max({x}, {y}) ="), _ab,
         lambda d: str(max(d["x"], d["y"]))),
    _fam("min2", ("comparison", "minimum"), ("Which is smaller, {x} or {y}?", "min({x}, {y}) ="), _ab,
         lambda d: str(min(d["x"], d["y"]))),
    _fam("compare", ("comparison", "yes/no question"), ("Is {x} greater than {y}?",), _ab,
         lambda d: "yes" if d["x"] > d["y"] else "no"),
    _fam("parity", ("parity", "yes/no question"), ("Is {x} even?",), _n, lambda d: "yes" if d["x"] % 2 == 0 else "no"),
    _fam("double", ("arithmetic", "multiplication"), ("What is twice {x}?", "Double {x}."), _n,
         lambda d: str(2 * d["x"])),
    _fam("last_digit", ("digit lookup",), ("What is the last digit of {x}?",), _n, lambda d: str(d["x"] % 10)),
    _fam("digit_sum", ("digit sum", "arithmetic"), ("What is the digit sum of {x}?",), _n,
         lambda d: str(sum(map(int, str(d["x"]))))),
    _fam("successor", ("arithmetic", "counting"), ("What number comes after {x}?", "{x} + 1 ="), _n,
         lambda d: str(d["x"] + 1)),
    _fam("predecessor", ("arithmetic", "counting"), ("What number comes before {x}?", "{x} - 1 ="), _n,
         lambda d: str(d["x"] - 1)),
    _fam("multiply", ("arithmetic", "multiplication"), ("What is {x} times {y}?", "{x} * {y} ="), _small_ab,
         lambda d: str(d["x"] * d["y"])),
    _fam("reverse_number", ("number reversal", "reverse text"), ("Reverse the digits of {x}.",), _n,
         lambda d: str(d["x"])[::-1]),
    _fam("abs_diff", ("arithmetic", "subtraction"), ("What is the distance between {x} and {y}?",), _ab,
         lambda d: str(abs(d["x"] - d["y"]))),
    _fam("square", ("arithmetic", "multiplication"), ("What is {x} squared?",), _small_ab,
         lambda d: str(d["x"] ** 2)),
    _fam("sort_list", ("sorting", "order numbers"), ("Sort the list {x}.", "Order ascending: {x}"), _lst,
         lambda d: " ".join(map(str, sorted(d["v"])))),
    _fam("list_max", ("maximum", "list processing"), ("What is the largest of {x}?",), _lst,
         lambda d: str(max(d["v"]))),
    _fam("list_sum", ("addition", "list processing"), ("What is the sum of {x}?", "Add up {x}."), _lst,
         lambda d: str(sum(d["v"]))),
    _fam("list_length", ("counting", "list processing"), ("How many numbers are in {x}?",), _lst,
         lambda d: str(len(d["v"]))),
    _fam("reverse_list", ("reverse text", "list processing"), ("Reverse the list {x}.",), _lst,
         lambda d: " ".join(map(str, d["v"][::-1]))),
)

_CHAT = (("Hello, how are you?", "I am fine, thanks."), ("Tell me something nice.", "You are doing great."),
         ("What a lovely day.", "It really is."), ("Thanks for the help!", "You are welcome."),
         ("Good night.", "Sleep well."), ("Any plans today?", "Just reading."))


@dataclass
class Pool:
    """Items of an instruction pool, column by column (see the module docstring)."""

    instructions: list[str]
    answers: list[str]
    gold: list[str]
    family: torch.Tensor  # (N,) long; -1 for distractor chit-chat
    tags: list[tuple[str, ...]]
    correct: torch.Tensor  # (N,) bool: answer == gold
    quality: torch.Tensor  # (N,) float: noisy quality score
    kind: torch.Tensor  # (N,) long: NORMAL, JUNK, DUPLICATE, DISTRACTOR
    family_names: list[str]
    junk: frozenset[int] = frozenset()
    ref: DatasetRef = field(default_factory=lambda: DatasetRef(NAME, "stand-in"))

    def __len__(self) -> int:
        return len(self.instructions)

    def subset(self, idx: Sequence[int] | torch.Tensor) -> "Pool":
        ix = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        il = ix.tolist()
        return Pool([self.instructions[i] for i in il], [self.answers[i] for i in il], [self.gold[i] for i in il],
                    self.family[ix], [self.tags[i] for i in il], self.correct[ix], self.quality[ix], self.kind[ix],
                    self.family_names, self.junk, self.ref)

    def texts(self) -> list[str]:
        """Instruction and answer as one string per item (what an embedder or an LM reads)."""
        return [f"{q}\n{a}" for q, a in zip(self.instructions, self.answers)]


def _corrupt(gold: str, r: random.Random) -> str:
    """A wrong answer of similar length: one character changed (or a random string)."""
    alphabet = _LETTERS + string.digits
    for _ in range(10):
        if r.random() < 0.5 and gold:
            i = r.randrange(len(gold))
            out = gold[:i] + r.choice(alphabet) + gold[i + 1:]
        else:
            out = "".join(r.choice(alphabet) for _ in range(max(1, len(gold))))
        if out != gold:
            return out
    return gold + "x"


def _item(fam: Family, r: random.Random) -> tuple[str, str]:
    d = fam.sample(r)
    return r.choice(fam.templates).format(**d), fam.answer(d)


def make_pool(n: int, seed: int = 0, *, n_families: int = 40, zipf: float = 1.1, corrupt_frac: float = 0.3,
              junk_families: int = 0, near_duplicates: int = 0, distractor_frac: float = 0.0,
              quality: tuple[float, float, float, float] = (4.0, 0.5, 2.0, 0.5)) -> Pool:
    """``n`` items over the first ``n_families`` families with Zipf(``zipf``) frequencies (family
    ranks shuffled by the seed). ``corrupt_frac`` of the normal items get a wrong answer;
    ``junk_families`` of the families (chosen by the seed) always have random-string answers;
    ``near_duplicates`` items are one-character edits of a single item (an outlier cluster);
    ``distractor_frac`` of the items are chit-chat with family -1. ``quality`` = (mean, std) for
    correct items then (mean, std) for wrong ones."""
    if not 1 <= n_families <= len(FAMILIES):
        raise ConfigError(f"make_pool: n_families={n_families}; use 1..{len(FAMILIES)}")
    if n < 1 or not 0 <= corrupt_frac <= 1 or not 0 <= distractor_frac < 1 or zipf < 0:
        raise ConfigError("make_pool: need n >= 1, 0 <= corrupt_frac <= 1, 0 <= distractor_frac < 1, zipf >= 0")
    if not 0 <= junk_families < n_families or near_duplicates < 0 or near_duplicates >= n:
        raise ConfigError("make_pool: need 0 <= junk_families < n_families and 0 <= near_duplicates < n")
    r = random.Random(seed)
    fams = FAMILIES[:n_families]
    ranks = list(range(n_families))
    r.shuffle(ranks)  # family f has Zipf rank ranks[f]
    weights = [1.0 / (ranks[f] + 1) ** zipf for f in range(n_families)]
    junk = frozenset(r.sample(range(n_families), junk_families))
    n_dis = int(round(distractor_frac * n))
    n_main = n - n_dis - near_duplicates
    cols: dict[str, list] = {k: [] for k in ("q", "a", "g", "f", "k")}

    def add(q: str, a: str, g: str, f: int, k: int) -> None:
        for key, v in zip("qagfk", (q, a, g, f, k)):
            cols[key].append(v)

    for f in r.choices(range(n_families), weights=weights, k=n_main):
        q, g = _item(fams[f], r)
        if f in junk:
            add(q, "".join(r.choice(_LETTERS) for _ in range(r.randint(2, 6))), g, f, JUNK)
        else:
            add(q, _corrupt(g, r) if r.random() < corrupt_frac else g, g, f, NORMAL)
    if near_duplicates:
        f = r.choice([f for f in range(n_families) if f not in junk] or [0])
        q, g = _item(fams[f], r)
        for _ in range(near_duplicates):
            i = r.randrange(len(q))
            add(q[:i] + r.choice(_LETTERS) + q[i + 1:], g, g, f, DUPLICATE)
    for _ in range(n_dis):
        q, a = r.choice(_CHAT)
        add(q, a, a, -1, DISTRACTOR)
    order = list(range(n))
    r.shuffle(order)
    pick = lambda key: [cols[key][i] for i in order]  # noqa: E731
    qs, ans, gold, fam, kind = pick("q"), pick("a"), pick("g"), pick("f"), pick("k")
    correct = torch.tensor([a == g for a, g in zip(ans, gold)])
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, generator=g)
    qual = torch.where(correct, quality[0] + quality[1] * noise, quality[2] + quality[3] * noise)
    tags = [fams[f].tags if f >= 0 else ("chit-chat",) for f in fam]
    return Pool(qs, ans, gold, torch.tensor(fam), tags, correct, qual.float(), torch.tensor(kind),
                [x.name for x in fams], junk)


def eval_set(families: Sequence[int], per_family: int = 10, seed: int = 0) -> Pool:
    """``per_family`` correct items of each family in ``families`` (family-balanced), from an RNG
    stream separate from :func:`make_pool`'s, quality 4.0."""
    if per_family < 1 or not families or any(not 0 <= f < len(FAMILIES) for f in families):
        raise ConfigError(f"eval_set: need per_family >= 1 and family ids in 0..{len(FAMILIES) - 1}")
    r = random.Random(seed + _TEST_OFFSET)
    qs, gs, fs = [], [], []
    for f in families:
        for _ in range(per_family):
            q, g = _item(FAMILIES[f], r)
            qs.append(q), gs.append(g), fs.append(f)
    n = len(qs)
    return Pool(qs, list(gs), gs, torch.tensor(fs), [FAMILIES[f].tags for f in fs], torch.ones(n, dtype=torch.bool),
                torch.full((n,), 4.0), torch.zeros(n, dtype=torch.long), [x.name for x in FAMILIES])


__all__ = ["FAMILIES", "Family", "Pool", "make_pool", "eval_set", "NORMAL", "JUNK", "DUPLICATE", "DISTRACTOR"]
