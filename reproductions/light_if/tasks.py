"""Toy constrained-writing tasks with machine-checkable specs (spec §6; stand-in for §3.1's
prompt synthesis).

An instruction holds 2-4 of 5 constraint types over a 60-word vocabulary (12 letters x 5 words):

=========  ===============================================  ====================  ======
type       meaning                                          prompt slot           credit
=========  ===============================================  ====================  ======
len        the answer has lo..lo+2 words                    ``len n<lo> n<hi>``   0.1
cnt        word w appears exactly k times                   ``cnt <w> n<k>``      0.1
start      the first word is w                              ``start <w> _``       0.1
end        the last word is w                               ``end <w> _``         0.1
nolet      no word starts with letter l                     ``nolet L<l> _``      0.2
=========  ===============================================  ====================  ======

Partial credits follow the released checker (``IF.py``: 0.1 for exact/range counts, end phrase and
first word, 0.2 for a forbidden letter). Inactive slots read ``<type> off _``, so every prompt has the
same length (no padding). There is no thinking segment at this scale (spec §6): like Qwen3's chat
template with thinking disabled, the prompt ends with an empty think block (``answer </think>``) and
the response is ``w_1 .. w_n <eos>``. The reward parses the output from that ``</think>`` on, so the
``</think>`` rule of ``IF.py`` is kept (and tested on hand-written outputs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from suite.models.tokenizer import Tokenizer

LETTERS = "abcdefghijkl"
WORDS = [f"{c}{i}" for c in LETTERS for i in range(5)]  # 60 words; letter = first character
TYPES = ("len", "cnt", "start", "end", "nolet")
CREDIT = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.2])        # partial credit per type (IF.py step scores)
THINK = "</think>"
MAX_WORDS = 12
PROMPT_LEN = 3 + 3 * len(TYPES)                          # <bos> + 5 slots x 3 + "answer </think>"
RESP_LEN = MAX_WORDS + 1                                 # words + <eos>


def tokenizer() -> Tokenizer:
    nums = [f"n{i}" for i in range(MAX_WORDS + 1)]
    lets = [f"L{c}" for c in LETTERS]
    return Tokenizer([*WORDS, *nums, *lets, *TYPES, "off", "_", "answer", THINK], level="word")


@dataclass
class Specs:
    """Constraint specs of N prompts (``jqzl_prompt`` analogue). ``active`` (N, 5) bool per type;
    word arguments are word indices 0..59, ``letter`` a letter index 0..11."""

    active: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    kw: torch.Tensor
    k: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    letter: torch.Tensor

    def __len__(self) -> int:
        return self.active.shape[0]

    def __getitem__(self, idx: torch.Tensor) -> "Specs":
        return Specs(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def sample_specs(n: int, rng: np.random.Generator, min_c: int = 2, max_c: int = 4) -> Specs:
    """N random instructions with 2-4 active, mutually satisfiable constraints."""
    nc = rng.integers(min_c, max_c + 1, size=n)
    order = np.argsort(rng.random((n, len(TYPES))), 1)
    active = np.zeros((n, len(TYPES)), bool)
    np.put_along_axis(active, order, np.arange(len(TYPES))[None] < nc[:, None], 1)
    letter = rng.integers(len(LETTERS), size=n)
    # keyword/start/end: distinct words whose first letter is not the forbidden one
    allowed = np.arange(60)[None] // 5 != letter[:, None]
    scores = np.where(allowed, rng.random((n, 60)), -1.0)
    pick = np.argsort(-scores, 1)[:, :3]
    kw, start, end = pick[:, 0], pick[:, 1], pick[:, 2]
    k = rng.integers(1, 4, size=n)
    need = active[:, 1] * k + active[:, 2] + active[:, 3]
    lo = np.maximum(rng.integers(2, MAX_WORDS - 1, size=n), np.maximum(need, 2))
    lo = np.minimum(lo, MAX_WORDS - 2)
    t = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    return Specs(torch.as_tensor(active), t(lo), t(lo + 2), t(kw), t(k), t(start), t(end), t(letter))


def encode_prompts(specs: Specs, tok: Tokenizer) -> torch.Tensor:
    """(N, PROMPT_LEN) ids: ``<bos> len n6 n8 cnt c3 n2 start off _ end b1 _ nolet La _ answer </think>``."""
    s = tok.stoi
    word = torch.tensor([s[w] for w in WORDS])
    num = torch.tensor([s[f"n{i}"] for i in range(MAX_WORDS + 1)])
    let = torch.tensor([s[f"L{c}"] for c in LETTERS])
    off, blank = s["off"], s["_"]
    n = len(specs)
    args = torch.stack([num[specs.lo], num[specs.hi], word[specs.kw], num[specs.k], word[specs.start],
                        torch.full((n,), blank), word[specs.end], torch.full((n,), blank),
                        let[specs.letter], torch.full((n,), blank)], 1).view(n, 5, 2)
    act = specs.active[..., None]
    args = torch.where(act, args, torch.tensor([off, blank]))
    types = torch.tensor([s[t] for t in TYPES]).expand(n, 5)[..., None]
    body = torch.cat([types, args], 2).reshape(n, 15)
    return torch.cat([torch.full((n, 1), tok.bos_id), body, torch.full((n, 1), s["answer"]),
                      torch.full((n, 1), s[THINK])], 1)


def sample_valid_answers(specs: Specs, rng: np.random.Generator) -> torch.Tensor:
    """(N, MAX_WORDS) word indices (-1 = none) drawn uniformly over the words the spec allows.

    Proposal (spec §6 "rejection sampling a uniform policy", made efficient): length uniform over the
    allowed range, free positions uniform over the allowed words, start/end fixed, the keyword put at
    k uniformly chosen free positions. :func:`check` filters the rest (see :func:`valid_sft_set`).
    """
    n = len(specs)
    a = specs.active.numpy()
    lo = np.where(a[:, 0], specs.lo.numpy(), 2)
    hi = np.where(a[:, 0], specs.hi.numpy(), 10)
    need = a[:, 1] * specs.k.numpy() + a[:, 2] + a[:, 3]
    lo = np.maximum(lo, need)
    length = lo + (rng.random(n) * (hi - lo + 1)).astype(int)
    pos = np.arange(MAX_WORDS)[None]
    letter, kw = specs.letter.numpy(), specs.kw.numpy()
    ok = np.ones((n, 60), bool)
    ok &= ~(a[:, 4:5] & (np.arange(60)[None] // 5 == letter[:, None]))
    ok[np.arange(n), kw] &= ~a[:, 1]
    words = np.argmax(np.where(ok[:, None, :], rng.random((n, MAX_WORDS, 60)), -1.0), 2)
    first, last = pos == 0, pos == (length - 1)[:, None]
    words = np.where(first & a[:, 2:3], specs.start.numpy()[:, None], words)
    words = np.where(last & a[:, 3:4], specs.end.numpy()[:, None], words)
    free = (pos < length[:, None]) & ~(first & a[:, 2:3]) & ~(last & a[:, 3:4])
    rank = np.argsort(np.argsort(-np.where(free, rng.random((n, MAX_WORDS)), -1.0), 1), 1)
    put = a[:, 1:2] & (rank < specs.k.numpy()[:, None]) & free
    words = np.where(put, kw[:, None], words)
    return torch.as_tensor(np.where(pos < length[:, None], words, -1), dtype=torch.long)


def answers_to_response(words: torch.Tensor, tok: Tokenizer) -> torch.Tensor:
    """Word indices (N, MAX_WORDS) -> response ids (N, RESP_LEN): ``w.. <eos> <pad>..``."""
    wid = torch.tensor([tok.stoi[w] for w in WORDS])
    n = words.shape[0]
    body = torch.where(words >= 0, wid[words.clamp(min=0)], torch.full_like(words, tok.pad_id))
    out = torch.cat([body, torch.full((n, 1), tok.pad_id)], 1)
    out[torch.arange(n), (words >= 0).sum(1)] = tok.eos_id
    return out


@dataclass
class Parsed:
    """A batch of responses parsed like ``IF.py``: ``has_think``; answer token ids (N, R) with
    ``ans_mask``; ``resp_len`` = valid response length (tokens up to and including <eos>)."""

    has_think: torch.Tensor
    answer: torch.Tensor
    ans_mask: torch.Tensor
    resp_len: torch.Tensor
    finished: torch.Tensor


def parse(resp: torch.Tensor, tok: Tokenizer, prefix: torch.Tensor | None = None) -> Parsed:
    """Answer = tokens after the LAST ``</think>`` and before the first ``<eos>`` (§7). ``prefix``
    (N, P): template tokens that precede the response (the prompt's ``</think>``); ``resp_len``
    counts response tokens only."""
    npre = 0 if prefix is None else prefix.shape[1]
    if prefix is not None:
        resp = torch.cat([prefix, resp], 1)
    n, r = resp.shape
    pos = torch.arange(r)[None].expand(n, r)
    is_eos = resp == tok.eos_id
    finished = is_eos.any(1)
    first_eos = torch.where(finished, torch.where(is_eos, pos, r).min(1).values, torch.full((n,), r))
    in_resp = pos < first_eos[:, None]
    is_think = (resp == tok.stoi[THINK]) & in_resp
    has_think = is_think.any(1)
    last_think = torch.where(is_think, pos, -1).max(1).values
    ans_mask = in_resp & (pos > last_think[:, None]) & has_think[:, None]
    resp_len = torch.where(finished, first_eos + 1, torch.full((n,), r)) - npre
    return Parsed(has_think, resp, ans_mask, resp_len, finished)


def check(p: Parsed, specs: Specs, tok: Tokenizer) -> torch.Tensor:
    """(N, 5) bool: constraint j holds (inactive constraints read True). Vectorised checkers."""
    v = tok.vocab_size
    word_of = torch.full((v,), -1, dtype=torch.long)
    word_of[torch.tensor([tok.stoi[w] for w in WORDS])] = torch.arange(60)
    w = torch.where(p.ans_mask, word_of[p.answer], torch.full_like(p.answer, -2))  # -1 non-word, -2 outside
    m = p.ans_mask
    nw = m.sum(1)
    n, r = w.shape
    first = torch.where(m.any(1), w[torch.arange(n), m.float().argmax(1)], torch.full((n,), -2))
    last_pos = torch.where(m, torch.arange(r)[None], -1).max(1).values
    last = torch.where(last_pos >= 0, w[torch.arange(n), last_pos.clamp(min=0)], torch.full((n,), -2))
    letter = torch.where(w >= 0, w // 5, torch.full_like(w, -1))
    sat = torch.stack([
        (nw >= specs.lo) & (nw <= specs.hi),
        (w == specs.kw[:, None]).sum(1) == specs.k,
        first == specs.start,
        last == specs.end,
        ~(m & (letter == specs.letter[:, None])).any(1),
    ], 1)
    return (sat | ~specs.active) & p.has_think[:, None]


def render(prompt: torch.Tensor, resp: torch.Tensor, tok: Tokenizer) -> str:
    """Readable text of one (prompt, response) pair."""
    return tok.decode(prompt.tolist()) + " || " + tok.decode(resp.tolist(), skip_special=False)
