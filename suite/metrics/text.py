"""GSM8K answer extraction and exact match (Cobbe et al. 2021 answer format ``#### N``).

``strict``: the number after the last ``#### ``; ``flexible``: the last number anywhere in the text.
Numbers compare after normalisation: ``$``, thousands commas, a trailing period and trailing zeros
of decimals are dropped (``$1,200.00`` == ``1200``).
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Sequence

from suite.errors import ConfigError, UnknownNameError

_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"
_STRICT = re.compile(r"####\s*(" + _NUM + ")")
_ANY = re.compile(_NUM)


def gsm8k_extract(text: str, mode: str = "strict") -> str | None:
    """The answer string in ``text`` (normalised), or None when there is none."""
    if mode == "strict":
        found = _STRICT.findall(text)
    elif mode == "flexible":
        found = _ANY.findall(text)
    else:
        raise UnknownNameError(f"unknown extraction mode {mode!r}; use 'strict' or 'flexible'")
    return normalize_number(found[-1]) if found else None


def normalize_number(s: str) -> str:
    """Canonical text of a number (``-$1,200.50`` -> ``-1200.5``); non-numbers are stripped only."""
    t = s.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        d = Decimal(t)
    except InvalidOperation:
        return s.strip()
    if not d.is_finite():
        return s.strip()
    out = format(d.normalize(), "f") if d != d.to_integral_value() else str(int(d))
    return "0" if out in ("-0", "") else out


def exact_match(pred: str | None, gold: str | None) -> bool:
    """Equality after number normalisation (strings compare stripped); None never matches."""
    if pred is None or gold is None:
        return False
    return normalize_number(pred) == normalize_number(gold)


def gsm8k_accuracy(completions: Sequence[str], answers: Sequence[str], mode: str = "strict") -> float:
    """Fraction of completions whose extracted answer matches the gold ``#### N`` of ``answers``
    (a bare number also works as gold)."""
    if len(completions) != len(answers) or not answers:
        raise ConfigError(f"gsm8k_accuracy got {len(completions)} completions for {len(answers)} answers; "
                          f"pass one completion per answer")
    hits = 0
    for c, a in zip(completions, answers):
        gold = gsm8k_extract(a, "strict") or gsm8k_extract(a, "flexible")
        hits += exact_match(gsm8k_extract(c, mode), gold)
    return hits / len(answers)
