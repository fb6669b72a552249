"""Text-level rule checkers for the English ``jqzl_prompt`` specs of the RL parquet (full scale; our
own code after the description of ``IF.py``): per-constraint verdicts, the all-satisfied flag and the
dense partial credit ("point") of §3.4. Keys not listed in :data:`KEYS` are ignored (README)."""
from __future__ import annotations

import re
from typing import Any, Mapping

KEYS = ("keywords", "low_word_cnt", "max_word_cnt", "num_sentences", "letter", "paragraphs_num", "end_phrase",
        "num_highlights", "low_capital_cnt", "max_capital_cnt", "prompt_to_repeat")
REPEAT = ("First repeat the request word for word without change, then give your answer (1. do not say any "
          "words or characters before repeating the request; 2. the request you need to repeat does not include "
          "this sentence).")


def _range(cnt: int, lo: int, hi: int) -> tuple[bool, float] | None:
    """(holds, credit) for a count with IF.py's lo/hi conventions; None when unconstrained."""
    if lo > 0 and hi > lo:
        return lo <= cnt <= hi, 0.1
    if lo > 0 and hi == lo:
        return cnt == lo, 0.1
    if lo > 0:
        return cnt >= lo, 0.05
    if hi > 0:
        return cnt <= hi, 0.05
    return None


def check_en(answer: str, query: str, spec: Mapping[str, Any]) -> list[tuple[str, bool, float]]:
    """(constraint, holds, partial credit) for each constraint present in ``spec``."""
    out: list[tuple[str, bool, float]] = []
    text = answer
    if spec.get("prompt_to_repeat", -1) != -1:
        req = query.replace(REPEAT, "").strip()
        ok = text.startswith(req)
        out.append(("prompt_to_repeat", ok, 0.1))
        text = text.replace(req, "").strip() if ok else text
    for (lo, hi), w in zip(spec.get("keywords_num", []), spec.get("keywords", [])):
        cnt = text.count(w)
        r = _range(cnt, lo, hi)
        out.append((f"keyword:{w}",) + (r if r is not None else (cnt == 0, 0.05)))
    r = _range(len(re.findall(r"\b\w+\b", text)), spec.get("low_word_cnt", -1), spec.get("max_word_cnt", -1))
    if r is not None:
        out.append(("word_count",) + r)
    n = spec.get("num_sentences", -1)
    if n > 0:
        cnt = len([s for s in re.split(r"[.!?]", text.strip()) if s.strip()])
        style = spec.get("sentences_style", -1)
        out.append(("num_sentences",) + ((cnt == n, 0.2) if style == 0 else (cnt > n, 0.05) if style == 1
                                         else (cnt < n, 0.05)))
    letter = spec.get("letter", "")
    if letter:
        cnt, lo, hi = text.count(letter), spec.get("low_letter_num", -1), spec.get("max_letter_num", -100)
        if lo > 0:
            out.append(("letter_min", cnt >= lo, 0.05))
        elif hi > 0:
            out.append(("letter_max", cnt <= hi, 0.05))
        elif hi < 0 and hi != -100:
            out.append(("letter_none", cnt == 0, 0.2))
    pn, sep = spec.get("paragraphs_num", -1), spec.get("paragraphs", "")
    if pn > 0 and sep in ("\n\n", "\n\n\n", "***"):
        out.append(("paragraphs", len([p for p in text.split(sep) if p.strip()]) == pn, 0.1))
    if spec.get("end_phrase", ""):
        out.append(("end_phrase", text.endswith(spec["end_phrase"]), 0.1))
    h = spec.get("num_highlights", -1)
    if h > 0:
        out.append(("highlights", len(re.findall(r"(\*[^*]+\*|_[^_]+_)", text)) >= h, 0.1))
    caps = sum(1 for w in text.split() if w.isupper() and len(w) >= 2)
    r = _range(caps, spec.get("low_capital_cnt", -1), spec.get("max_capital_cnt", -1))
    if r is not None:
        out.append(("capitals",) + r)
    return out


def score_text(output: str, query: str, spec: Mapping[str, Any]) -> tuple[bool, float, float]:
    """(has ``</think>``, acc, point) of one model output; the answer follows the last ``</think>``."""
    if "</think>" not in output:
        return False, 0.0, 0.0
    res = check_en(output.split("</think>")[-1].strip(), query, spec)
    return True, float(all(ok for _, ok, _ in res)), float(sum(c for _, ok, c in res if ok))
