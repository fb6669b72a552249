"""Final answers scored the way the reference evaluators score them (issue 17 item 4).

* **GSM8K as lm-evaluation-harness scores it** (task files ``gsm8k.yaml`` and ``gsm8k-cot.yaml``, version
  3.0): the generation is cut at the task's stop strings; two filters pull the answer out of it
  (``strict-match``: the first match of the task's anchored pattern; ``flexible-extract``: the last
  number-like run); exact match then compares prediction and reference after deleting commas, ``$``,
  everything up to ``#### `` and a final period, case-folded. Unlike :mod:`suite.metrics.text` it does not
  normalise numbers (``1200.00`` is not ``1200``), which is what makes our number the harness's number.
* **``\\boxed{}`` answers as the MATH benchmark's evaluator scores them** (Hendrycks et al. 2021, the
  ``is_equiv`` that lm-evaluation-harness's ``hendrycks_math`` task uses): the content of the last
  ``\\boxed{...}`` (or ``\\boxed x``, or ``\\fbox{...}``), compared after the same string normalisation.

``suite/metrics/test_answers.py`` feeds the same outputs to these functions and to lm-evaluation-harness's
own filters, metric and MATH utilities, and requires identical results.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from suite.errors import ConfigError, UnknownNameError

INVALID = "[invalid]"  # the harness's fallback when a filter finds nothing


@dataclass(frozen=True)
class HarnessTask:
    """The scoring half of an lm-evaluation-harness generate-until task."""

    until: tuple[str, ...]
    strict: str  # regex; the first match, its first non-empty group
    flexible: str = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"  # regex; the last match
    ignore: tuple[str, ...] = (",", r"\$", "(?s).*#### ", r"\.$")  # deleted from both sides, in order


GSM8K_TASKS = {
    "gsm8k": HarnessTask(until=("Question:", "</s>", "<|im_end|>"), strict=r"#### (\-?[0-9\.\,]+)"),
    "gsm8k_cot": HarnessTask(until=("Q:", "</s>", "<|im_end|>"), strict=r"The answer is (\-?[0-9\.\,]+)."),
}


def harness_task(name: str) -> HarnessTask:
    if name not in GSM8K_TASKS:
        raise UnknownNameError(f"unknown lm-evaluation-harness task {name!r}; use one of {sorted(GSM8K_TASKS)}")
    return GSM8K_TASKS[name]


def cut_at_stops(text: str, until: Sequence[str]) -> str:
    """The generation up to the first occurrence of any stop string (generate-until)."""
    end = min((i for i in (text.find(s) for s in until) if i >= 0), default=len(text))
    return text[:end]


def regex_pick(text: str, pattern: str, which: int) -> str:
    """Match ``which`` (0 first, -1 last) of ``pattern`` in ``text``; of a multi-group match, the first
    non-empty group; stripped. :data:`INVALID` when nothing matches."""
    found = re.findall(pattern, text)
    if not found:
        return INVALID
    hit = found[which]
    if isinstance(hit, tuple):
        hit = next((g for g in hit if g), INVALID)
    return hit.strip()


def _harness_form(s: str, ignore: Sequence[str]) -> str:
    for pattern in ignore:
        s = re.sub(pattern, "", s)
    return s.lower()


def gsm8k_harness(completions: Sequence[str], answers: Sequence[str], task: str = "gsm8k"
                  ) -> dict[str, float]:
    """``{"strict-match": acc, "flexible-extract": acc}`` of raw generations against the dataset's
    ``answer`` fields (the ``#### N`` solutions), as lm-evaluation-harness reports GSM8K."""
    t = harness_task(task)
    if len(completions) != len(answers) or not answers:
        raise ConfigError(f"gsm8k_harness got {len(completions)} completions for {len(answers)} answers; "
                          f"pass one completion per answer")
    refs = [_harness_form(a, t.ignore) for a in answers]
    out = {}
    for name, pattern, which in (("strict-match", t.strict, 0), ("flexible-extract", t.flexible, -1)):
        preds = [_harness_form(regex_pick(cut_at_stops(c, t.until), pattern, which), t.ignore) for c in completions]
        out[name] = sum(p == r for p, r in zip(preds, refs)) / len(refs)
    return out


# --------------------------------------------------------------------------- \boxed{} (MATH)

def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (braces balanced), of ``\\boxed x`` (up to the
    next ``$``), or of ``\\fbox{...}`` when there is no ``\\boxed``; None when there is none or it is
    unclosed. The MATH evaluator's rule, so a model's answer is read as the benchmark reads it."""
    if "\\boxed " in text:
        return text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth, open_at = 0, None
    for j in range(start, len(text)):
        if text[j] == "{":
            depth += 1
            open_at = j if open_at is None else open_at
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                head = text[start:open_at]
                # the evaluator only unwraps "\boxed{...}"; "\fbox{...}" or "\boxed\n{" is not an answer
                return text[open_at + 1:j] if head == "\\boxed" else None
    return None


def _fix_sqrt(s: str) -> str:  # \sqrt3 -> \sqrt{3}
    head, *rest = s.split("\\sqrt")
    if any(not p for p in rest):
        raise ValueError("\\sqrt without an argument")
    return head + "".join("\\sqrt" + (p if p[:1] == "{" else "{" + p[:1] + "}" + p[1:]) for p in rest)


def _fix_fracs(s: str) -> str | None:  # \frac12 -> \frac{1}{2}, \frac1{7} -> \frac{1}{7}; None: leave s as is
    head, *rest = s.split("\\frac")
    out = [head]
    for p in rest:
        if not p:
            raise ValueError("\\frac without arguments")
        if p[:1] == "{":
            out.append("\\frac" + p)
        elif len(p) < 2:
            return None
        elif p[1] != "{":
            out.append("\\frac{" + p[0] + "}{" + p[1] + "}" + p[2:])
        else:
            out.append("\\frac{" + p[0] + "}" + p[1:])
    return "".join(out)


def _fix_slash(s: str) -> str:  # "3/4" -> \frac{3}{4}; a non-integer side is where the rules break down
    parts = s.split("/")
    if len(parts) != 2:
        return s
    a, b = int(parts[0]), int(parts[1])  # ValueError: the caller compares the raw strings
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def normalize_math(s: str) -> str:
    """The MATH evaluator's canonical form of an answer string (spacing, ``\\left``/``\\right``, degrees,
    ``\\$``, trailing ``\\text{ unit}``, percent, leading-zero decimals, a short ``x =`` prefix, ``\\sqrt3``,
    ``\\frac12``, ``0.5`` and ``a/b``). Raises ValueError where the evaluator's own rules break down."""
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", "")):
        s = s.replace(old, new)
    if "\\text{ " in s:
        unit = s.split("\\text{ ")
        if len(unit) != 2:
            raise ValueError("more than one unit")
        s = unit[0]
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    if "\\sqrt" in s:
        s = _fix_sqrt(s)
    s = s.replace(" ", "")
    fracs = _fix_fracs(s)
    s = fracs if fracs is not None else s
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_slash(s)


def math_equiv(pred: str | None, gold: str | None) -> bool:
    """Whether two answers are equal after :func:`normalize_math` (raw equality where it breaks down)."""
    if pred is None or gold is None:
        return pred is None and gold is None
    try:
        return normalize_math(pred) == normalize_math(gold)
    except (ValueError, IndexError):
        return pred == gold
