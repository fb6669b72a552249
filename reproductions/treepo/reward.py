"""The full path's outcome reward r_i (spec §3), scored the way the official TreePO code scores a leaf.

Reference (README "Full-scale reward"): ``multimodal-art-projection/TreePO`` @ f055523. ``run_treepo_train.sh`` sets
``reward_model.reward_manager=dapo`` and no custom reward function, so every decoded leaf goes through
``verl/utils/reward_score/__init__.py:default_compute_score`` to ``math_verify_timeout.compute_score``:

1. ``extract_solution``: the text from the first ``<|im_start|>assistant`` on, cut at the first stop word (then
   stripped);
2. ``extract_answer(text, data_name="math")`` of the Qwen2.5-Math evaluation toolkit (``QwenLM/Qwen2.5-Math``
   ``evaluation/parser.py``; TreePO vendors it as ``verl/utils/reward_score/qwen_math_eval_toolkit/parser.py``, the
   two identical in ``extract_answer``/``strip_string``), which ends with its ``strip_string``;
3. answer and ground truth wrapped in ``\\boxed{}`` (unless they already hold ``\\boxed``), read with Math-Verify's
   ``parse`` and compared pair by pair with its ``sympy_expr_eq`` (``hf_verify_with_try`` /
   ``verify_without_timeout``), each parse and each comparison under a 5 s timeout.

Written from reading those files; no code is copied. The unit words of ``strip_string`` are data, transcribed.
Ours scores 1 / 0 as spec §3 says (official: +1 / -1).
"""
from __future__ import annotations

import inspect
import re
import threading
from functools import lru_cache
from itertools import product
from typing import Any, Callable

from suite.errors import SuiteError
from suite.metrics.answers import cut_at_stops

# math_verify_timeout.extract_solution: the assistant marker and the stop words; nothing after a stop word is read
ASSISTANT = "<|im_start|>assistant"
STOPS = ("</s>", "<|im_end|>", "<|endoftext|>", "[END]", "</answer>")
TIMEOUT_S = 5                             # parse (Math-Verify's parsing_timeout) and each comparison (@timeout(5))
FLOAT_ROUNDING, NUMERIC_PRECISION = 6, 15  # verify_without_timeout's defaults
# The official call is sympy_expr_eq(gold, target, 6, 15, True), written for math-verify <= 0.7, whose fifth
# argument was `strict`; from 0.8 on (0.9.0 is what `pip install math_verify` gives and what we pin) that position is
# `allow_set_relation_comp`, so the official scorer runs with it True and `strict` at its default True.
ALLOW_SET_RELATION = True
INSTALL = "pip install math-verify==0.9.0"


# --------------------------------------------------------------------------- 1. what the scorer reads

def solution_text(text: str) -> str:
    """``extract_solution``'s cut: from the first assistant marker on, up to the first stop word, stripped when a
    stop word was found (the official splits at each stop word in turn; none overlaps another, so this is the
    same prefix)."""
    at = text.find(ASSISTANT)
    if at >= 0:
        text = text[at:]
    return cut_at_stops(text, STOPS).strip() if any(s in text for s in STOPS) else text


# --------------------------------------------------------------------------- 2. Qwen-Math extract_answer, math mode

def _brace_content(after: str) -> str:
    """After ``boxed{``: the text up to the brace that closes it, or all of it when none does."""
    depth = 0
    for i, ch in enumerate(after):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return after[1:i]
    return after[1:]


def qwen_extract_answer(text: str) -> str:
    """Qwen2.5-Math ``evaluation/parser.py:extract_answer(text, "math")`` (use_last_number=True): Minerva's
    "final answer is $…$. I hope", else what follows the last ``boxed`` (its brace group, closed or not, or up to
    a ``$``), else "…he answer is X", else "final answer is X", else "答案是 X", else the last number; newlines,
    one leading ``:`` and one trailing ``.`` and ``/`` dropped; then :func:`qwen_strip_string`."""
    text = text.replace("\u043a\u0438", "")  # the "ки" step tag of process-reward data
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        after = text.rsplit("boxed", 1)[1]
        if not after:
            return ""
        pred = _brace_content(after) if after[0] == "{" else after.split("$")[0].strip()
    elif "he answer is" in text:
        pred = text.rsplit("he answer is", 1)[1].strip()
    elif "final answer is" in text:
        pred = text.rsplit("final answer is", 1)[1].strip()
    elif "答案是" in text:
        pred = text.split("答案是")[1].strip().split("\n\n")[0].strip()  # after the first one
    else:
        numbers = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))
        pred = numbers[-1] if numbers else ""
    pred = re.sub(r"\n\s*", "", pred)
    if pred.startswith(":"):
        pred = pred[1:]
    for tail in (".", "/"):
        if pred.endswith(tail):
            pred = pred[:-1]
    return qwen_strip_string(pred)


# strip_string's unit words (from MathQA; parser.py `unit_texts`), in its order, then each with an "s": used as regex
# patterns as they stand (so "q ." matches "q" + space + any character), which is what the official code does.
_UNITS = ("east|degree|mph|kmph|ft|m sqaure| m east|sq m|deg|mile|q .|monkey|prime|ratio|profit of rs|rd|o|gm|p . m|"
          "lb|tile|per|dm|lt|gain|ab|way|west|a .|b .|c .|d .|e .|f .|g .|h .|t|a|h|no change|men|soldier|pie|bc|"
          "excess|st|inches|noon|percent|by|gal|kmh|c|acre|rise|a . m|th|π r 2|sq|mark|l|toy|coin|sq . m|gallon|"
          "° f|profit|minw|yr|women|feet|am|pm|hr|cu cm|square|v â € ™|are|rupee|rounds|cubic|cc|mtr|s|ohm|number|"
          "kmph|day|hour|minute|min|second|man|woman|sec|cube|mt|sq inch|mp|∏ cm ³|hectare|more|sec|unit|cu . m|"
          "cm 2|rs .|rs|kg|g|month|km|m|cm|mm|apple|liter|loss|yard|pure|year|increase|decrease|d|less|Surface|"
          "litre|pi sq m|s .|metre|meter|inch").split("|")
UNIT_WORDS = tuple(_UNITS + [u + "s" for u in _UNITS])
_UNIT_RES = tuple(re.compile(r"(^|\W)" + u + r"($|\W)") for u in UNIT_WORDS)


def qwen_strip_string(s: str) -> str:
    """Qwen2.5-Math ``evaluation/parser.py:strip_string(s, skip_unit=False)``: the prediction's canonical form
    (the ground truth does not go through it in the official scorer)."""
    s = str(s).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)  # arrays and bmatrix read as pmatrix
    s = s.replace("\\end{array}", "\\end{pmatrix}").replace("bmatrix", "pmatrix")
    for old, new in (("tfrac", "frac"), ("dfrac", "frac"), ("\\neq", "\\ne"), ("\\leq", "\\le"), ("\\geq", "\\ge"),
                     ("\\left", ""), ("\\right", ""), ("\\{", "{"), ("\\}", "}")):
        s = s.replace(old, new)
    no_unit = re.sub(r"\\text\{.*?\}$", "", s).strip()  # a trailing \text{…} from the first \text{ on
    if no_unit and no_unit != s:
        s = no_unit
    for _ in range(2):  # unit words, twice over, unless that would leave nothing
        for unit in _UNIT_RES:
            t = unit.sub(r"\1\2", s)
            if t:
                s = t
    for old in ("^{\\circ}", "^\\circ", "\\$", "$", "\\(", "\\)"):
        s = s.replace(old, "")
    s = word_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for key in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(key, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    # (parser.py's unwrapping of "{x}", "(x)", "[x]" requires the bracketed string to be alphanumeric: never true)
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox\{.*?\}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)  # 2.00x -> 2x, 3.000 -> 3
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # "k = 5" -> "5"
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    return _slash_to_frac(_brace_fracs(s))


def _brace_fracs(s: str) -> str:
    """``_fix_fracs``: ``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{7}`` -> ``\\frac{1}{7}``; the input unchanged when
    a ``\\frac`` has fewer than two characters after it."""
    head, *rest = s.split("\\frac")
    out = head
    for part in rest:
        if part[:1] == "{":
            out += "\\frac" + part
        elif len(part) < 2:
            return s
        elif part[1] == "{":
            out += "\\frac{" + part[0] + "}" + part[1:]
        else:
            out += "\\frac{" + part[0] + "}{" + part[1] + "}" + part[2:]
    return out


def _slash_to_frac(s: str) -> str:
    """``_fix_a_slash_b``: ``a/b`` of two integers (or a side holding "sqrt") -> ``\\frac{a}{b}`` when the string is
    exactly their ``a/b``; otherwise unchanged."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = (p if "sqrt" in p else int(p) for p in parts)
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


_DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
_WORD_VALUES = {w: i for i, w in enumerate(_DIGIT_WORDS + "ten eleven twelve thirteen fourteen fifteen sixteen "
                                           "seventeen eighteen nineteen".split())}
_WORD_VALUES.update({w: 10 * k for k, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)})
_WORD_VALUES.update(hundred=100, thousand=1000, million=10 ** 6, billion=10 ** 9)


def _group(words: list[str]) -> int:
    """word2number's ``number_formation``: the value of the words in front of a scale word."""
    v = [_WORD_VALUES[w] for w in words]
    if not v:
        raise ValueError("no number words before a scale word")
    if len(v) == 4:
        return v[0] * v[1] + v[2] + v[3]
    if len(v) == 3:
        return v[0] * v[1] + v[2]
    if len(v) == 2:
        return v[0] * v[1] if 100 in v else v[0] + v[1]
    return v[0]


def _words_to_number(text: str) -> int | float:
    """``word2number.w2n.word_to_num`` (1.1), with its quirks: a digit string is read with ``int``; otherwise every
    word that is not a number word is ignored ("1 million" -> 1000000); ValueError where it raises."""
    t = text.replace("-", " ").lower()
    if t.isdigit():
        return int(t)
    words = [w for w in t.split() if w in _WORD_VALUES or w == "point"]
    if not words:
        raise ValueError("no number words")
    if any(words.count(w) > 1 for w in ("thousand", "million", "billion", "point")):
        raise ValueError("a scale word twice")
    decimals: list[str] = []
    if "point" in words:
        k = words.index("point")
        words, decimals = words[:k], words[k + 1:]
    b, m, th = (words.index(w) if w in words else -1 for w in ("billion", "million", "thousand"))
    if (th > -1 and (th < m or th < b)) or -1 < m < b:
        raise ValueError("scale words out of order")
    total: int | float = 0
    if len(words) == 1:
        total = _WORD_VALUES[words[0]]
    elif words:
        if b > -1:
            total += _group(words[:b]) * 10 ** 9
        if m > -1:
            total += _group(words[b + 1:m] if b > -1 else words[:m]) * 10 ** 6
        if th > -1:
            total += _group(words[(m if m > -1 else b) + 1:th]) * 1000
        last = len(words) - 1
        if -1 < th != last:
            total += _group(words[th + 1:])
        elif -1 < m != last:
            total += _group(words[m + 1:])
        elif -1 < b != last:
            total += _group(words[b + 1:])
        elif th == m == b == -1:
            total += _group(words)
    if decimals:
        total += float("0." + "".join(str(_WORD_VALUES[w]) for w in decimals)) \
            if all(w in _DIGIT_WORDS for w in decimals) else 0
    return total


def word_number(s: str) -> str:
    """``convert_word_number``: ``str(word_to_num(s))``, or ``s`` unchanged where that fails."""
    try:
        return str(_words_to_number(s))
    except ValueError:
        return s


# --------------------------------------------------------------------------- the rollout's box test

def has_closed_box(text: str) -> bool:
    """The official rollout's "has a boxed answer" (``vllm_rollout_tree.extract_last_boxed(text) is not None``,
    policy ``boxed_and_eos_first``): some ``\\boxed{`` whose group closes with braces nested at most two levels
    inside it (its regex allows no deeper)."""
    start = text.find("\\boxed{")
    while start >= 0:
        depth = 1
        for ch in text[start + 7:]:
            if ch == "{":
                depth += 1
                if depth > 3:
                    break
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return True
        start = text.find("\\boxed{", start + 1)
    return False


# --------------------------------------------------------------------------- 3. Math-Verify

def require_math_verify() -> Any:
    """The Math-Verify module, or a one-line error naming the install (checked before any full-scale work)."""
    try:
        import math_verify
        from math_verify.grader import sympy_expr_eq
    except ImportError:
        raise SuiteError(f"treepo's full-scale reward (the official TreePO scorer) needs Math-Verify; {INSTALL}") \
            from None
    if "allow_set_relation_comp" not in inspect.signature(sympy_expr_eq).parameters:
        raise SuiteError(f"treepo's full-scale reward needs math-verify >= 0.8 (this one's sympy_expr_eq predates "
                         f"allow_set_relation_comp); {INSTALL}")
    return math_verify


@lru_cache(maxsize=1)
def _pair_check() -> Callable[[Any, Any], bool]:
    """``verify_without_timeout``'s per-pair comparison under Math-Verify's signal timeout."""
    require_math_verify()
    from sympy import Basic, MatrixBase
    from math_verify.grader import sympy_expr_eq
    from math_verify.utils import timeout

    @timeout(TIMEOUT_S)
    def same(gold: Any, pred: Any) -> bool:
        if isinstance(gold, (Basic, MatrixBase)) and isinstance(pred, (Basic, MatrixBase)):
            return sympy_expr_eq(gold, pred, FLOAT_ROUNDING, NUMERIC_PRECISION,
                                 allow_set_relation_comp=ALLOW_SET_RELATION, strict=True)
        if isinstance(gold, str) and isinstance(pred, str):  # both left unparsed: non-empty and equal
            return bool(gold.strip()) and gold.strip() == pred.strip()
        return False

    return same


def math_verify_equal(gold: str, pred: str) -> bool:
    """``hf_verify_with_try``: ``parse`` both (the prediction first), then any (gold, pred) pair of their
    extractions equal; an error in a pair makes that pair unequal, a timeout makes the whole verdict unequal."""
    if threading.current_thread() is not threading.main_thread():
        raise SuiteError("treepo's full-scale reward times Math-Verify out with signal.alarm, which works only in the "
                         "main thread; compute the reward there")
    mv = require_math_verify()
    from math_verify.errors import TimeoutException

    same = _pair_check()
    try:
        preds = mv.parse(pred, parsing_timeout=TIMEOUT_S)
        golds = mv.parse(gold, parsing_timeout=TIMEOUT_S)
        for g, p in product(golds, preds):
            try:
                if same(g, p):
                    return True
            except Exception:
                continue
        return False
    except Exception:
        return False
    except TimeoutException:
        return False


# --------------------------------------------------------------------------- the reward

def final_answer(text: str) -> str:
    """The answer the official scorer reads in a decoded leaf: Qwen-Math's extraction of :func:`solution_text`."""
    return qwen_extract_answer(solution_text(text))


def boxed_form(s: str) -> str:
    """``compute_score``'s wrapping: ``\\boxed{s}`` unless ``s`` already holds ``\\boxed``."""
    return s if "\\boxed" in s else "\\boxed{" + s + "}"


def answer_correct(text: str, truth: str) -> bool:
    """Spec §3 outcome (r_i = 1 when correct): the official scorer's verdict on a decoded leaf and its ground truth
    (a string; a list-valued ground truth is read as its last entry by ``full.read_parquet``)."""
    return math_verify_equal(boxed_form(str(truth)), boxed_form(final_answer(text)))
