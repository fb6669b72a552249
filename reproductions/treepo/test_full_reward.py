"""The full path's outcome reward (spec §3 r_i, README "Full-scale reward") against the official TreePO scorer
(``verl/utils/reward_score/math_verify_timeout.py``: stop-word cut, Qwen-Math ``extract_answer`` + ``strip_string``,
Math-Verify). Every expected value below was derived by hand from reading the official code and Qwen2.5-Math's
``evaluation/parser.py``; none is computed by the code under test."""
from __future__ import annotations

import sys
import threading

import pytest

from suite.errors import SuiteError
from suite.metrics.answers import last_boxed, math_equiv

from . import reward
from .full import read_parquet
from .reward import (answer_correct, final_answer, has_closed_box, qwen_extract_answer, qwen_strip_string,
                     require_math_verify, solution_text, word_number)

# ---------------------------------------------------------------- Qwen-Math extract_answer(·, "math") + strip_string
EXTRACT = [
    ("So we get 12 apples and 3,000 pears", "3000"),                  # no box, no "answer is": the last number, commas out
    ("We have 5 - 7 = -2", "-2"),                                     # a signed last number
    ("nothing numeric here", ""),
    ("\\boxed{12", "12"),                                             # an unclosed box: what follows it
    ("so \\boxed{\\frac{1}{2}} and more text", "\\frac{1}{2}"),
    ("first \\boxed{3}, then \\boxed{4}", "4"),                       # the last "boxed"
    ("\\boxed 7$ is it", "7"),                                        # "\boxed x": up to the next $
    ("The answer is 12.", "12"),                                      # "he answer is", one final period dropped
    ("The answer is: 5", "5"),                                        # a leading ":" dropped
    ("The final answer is $\\dfrac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),  # Minerva's sentence
    ("答案是 6\n\n其余", "6"),
    ("\\boxed{x = 5}", "5"),                                          # a <= 2-character left side of "=" dropped
    ("\\boxed{y=2x+3}", "2x+3"),                                      # "y=" deleted
    ("\\boxed{12 \\text{cm}}", "12"),                                 # a trailing \text{...} removed
    ("\\boxed{5 cm}", "5"),                                           # a unit word
    ("\\boxed{a+b}", "+b"),                                           # "a" is a unit word too: deleted
    ("\\boxed{10\\%}", "10"),
    ("\\boxed{90^\\circ}", "90"),
    ("\\boxed{0.50}", "0.50"),                                        # trailing zeros kept after a non-zero digit
    ("\\boxed{2.000}", "2"),                                          # ... and dropped after the point
    ("\\boxed{\\left( 1, 2 \\right)}", "(1,2)"),
    ("\\boxed{\\{1, 2\\}}", "{1,2}"),
    ("\\boxed{\\sqrt2}", "\\sqrt{2}"),
    ("\\boxed{\\frac12}", "\\frac{1}{2}"),
    ("\\boxed{3/4}", "\\frac{3}{4}"),
    ("\\boxed{five}", "5"),                                           # number words -> digits
    ("\\boxed{j}", "i"),                                              # j -> i when there is no i
    ("\\boxed{inf}", "\\infty"),
    ("\\boxed{\\emptyset}", "{}"),
    ("text ending in boxed", ""),                                     # nothing after the last "boxed"
]


@pytest.mark.parametrize("text,want", EXTRACT)
def test_qwen_extraction_and_strip(text: str, want: str) -> None:
    assert qwen_extract_answer(text) == want


def test_strip_string_and_word_numbers_by_hand() -> None:
    assert qwen_strip_string("\\dfrac{1}{2}.") == "\\frac{1}{2}"
    assert qwen_strip_string("\\text{(A)}") == "(A)"                 # the \text{...}$ cut would leave nothing: kept
    assert qwen_strip_string("\\$1,000") == "1,000"
    assert qwen_strip_string("x \\in [1, 2]") == "x\\in[1,2]"           # "x\in" is looked for before the spaces go: kept
    assert word_number("one hundred and five") == "105"
    assert word_number("1 million") == "1000000"                        # digits ignored, "million" alone = 10^6
    assert word_number("three point one four") == "3.14"
    assert word_number("thousand five") == "thousand five"              # nothing before "thousand": unchanged
    assert word_number("0012") == "12" and word_number("-5") == "-5"


def test_word_numbers_match_word2number() -> None:
    w2n = pytest.importorskip("word2number.w2n")
    for s in ["one", "twenty one", "two hundred", "five thousand three hundred two", "one million two thousand",
              "nine billion", "point five", "three point two zero", "four point twenty", "seven thousand thousand",
              "a million and one", "thousand million", "x", "12", "hundred one two three four five"]:
        try:
            ref = str(w2n.word_to_num(s))
        except Exception:
            ref = s
        assert word_number(s) == ref, s


def test_stop_words_and_assistant_marker() -> None:
    assert solution_text("\\boxed{4}</answer> more text \\boxed{5}") == "\\boxed{4}"
    assert solution_text("  x [END] y </s>") == "x"                    # cut at the first stop word, stripped
    assert solution_text("  no stop  ") == "  no stop  "                # not stripped without one
    assert solution_text("user\\boxed{1}<|im_start|>assistant \\boxed{2}") == "<|im_start|>assistant \\boxed{2}"
    assert final_answer("12 is close<|im_end|>but 13") == "12"


def test_rollout_box_test_is_the_official_regex() -> None:
    assert has_closed_box("so \\boxed{\\frac{1}{\\sqrt{2}}} done")     # braces two levels deep inside the box
    assert not has_closed_box("\\boxed{\\frac{1}{\\sqrt{\\frac{1}{2}}}}")  # three levels: the regex does not match
    assert has_closed_box("\\boxed{\\frac{1}{\\sqrt{\\frac{1}{2}}}} and \\boxed{3}")  # ... but a later box does
    assert not has_closed_box("\\boxed{12") and not has_closed_box("\\boxed 7$")


# ---------------------------------------------------------------- the official verdicts (Math-Verify)
# (decoded leaf text, ground truth, official verdict)
CASES = [
    ("So we get 12 apples", "12", True),                              # missing box: last-number fallback
    ("The answer is 12.", "12", True),                                # missing box: "the answer is"
    ("\\boxed{12", "12", True),                                       # unclosed box: its content
    ("\\boxed{0.50}", "\\frac{1}{2}", True),                          # symbolic equality, not strings
    ("\\boxed{12 \\text{cm}}", "12", True),                           # unit removed
    ("\\boxed{x+1}", "1+x", True),                                    # symbolic equality
    ("so the answer is \\boxed{\\frac{1}{2}}", "\\frac12", True),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", True),
    ("Thus \\boxed{ 12 }.", "12", True),
    ("\\boxed{90^\\circ}", "90", True),
    ("\\boxed{10\\%}", "10", True),
    ("\\boxed{x = 5}", "5", True),
    ("\\boxed{\\left( 1, 2 \\right)}", "(1,2)", True),
    ("\\boxed{\\sqrt2}", "\\sqrt{2}", True),
    ("\\boxed{3/4}", "\\frac{3}{4}", True),
    ("first \\boxed{3}, then \\boxed{4}", "4", True),
    ("first \\boxed{3}, then \\boxed{4}", "3", False),
    ("\\boxed 7$ is it", "7", True),
    ("\\boxed{5}", "6", False),
    ("\\boxed{4}</answer> more text \\boxed{5}", "4", True),         # a stop word: later text unread
    ("\\boxed{4}[END]\\boxed{5}", "5", False),
    ("\\boxed{five}", "5", True),                                     # number word
    ("\\boxed{2.000}", "2", True),
    ("\\boxed{a+b}", "a+b", False),                                   # official quirk: unit word "a" deleted
    ("\\boxed{1<x<2}", "(1,2)", True),                                # relation vs interval (math-verify 0.9.0)
    ("\\boxed{}", "5", False),                                        # empty box
    ("no idea", "5", False),                                          # nothing to read
    ("The final answer is $\\frac{2}{3}$. I hope it is correct.", "\\frac{2}{3}", True),
    ("we get \\boxed{\\pi}", "\\pi", True),
]


@pytest.mark.parametrize("text,truth,want", CASES)
def test_reward_is_the_official_verdict(text: str, truth: str, want: bool) -> None:
    pytest.importorskip("math_verify")
    assert answer_correct(text, truth) is want


def test_the_math_rule_used_before_differs_where_the_official_one_says() -> None:
    """The five documented differences: the MATH evaluator's last-box rule (the previous reward) scores them wrong."""
    pytest.importorskip("math_verify")
    five = [("So we get 12 apples", "12"), ("\\boxed{12", "12"), ("\\boxed{0.50}", "\\frac{1}{2}"),
            ("\\boxed{12 \\text{cm}}", "12"), ("\\boxed{x+1}", "1+x")]
    for text, truth in five:
        assert answer_correct(text, truth) and not math_equiv(last_boxed(text), truth), text


def test_a_timeout_makes_the_verdict_wrong(monkeypatch) -> None:
    """As in the official verify_without_timeout: a comparison that times out ends the verdict (False), even where a
    later (string, string) pair would match."""
    mv = pytest.importorskip("math_verify")
    import time

    import math_verify.grader as grader

    assert answer_correct("\\boxed{5}", "5")
    monkeypatch.setattr(reward, "TIMEOUT_S", 1)
    def slow(gold, pred, float_rounding, numeric_precision, allow_set_relation_comp=False, strict=True):
        time.sleep(3)

    monkeypatch.setattr(grader, "sympy_expr_eq", slow)
    reward._pair_check.cache_clear()
    try:
        assert len(mv.parse("\\boxed{5}")) == 2  # a sympy and a string extraction: two pairs to compare
        t0 = time.perf_counter()
        assert not answer_correct("\\boxed{5}", "5")
        assert time.perf_counter() - t0 < 2.5
    finally:
        reward._pair_check.cache_clear()


def test_missing_math_verify_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)
    monkeypatch.setitem(sys.modules, "math_verify.grader", None)
    with pytest.raises(SuiteError, match="pip install math-verify"):
        require_math_verify()


def test_off_the_main_thread_is_a_clear_error() -> None:
    pytest.importorskip("math_verify")
    got: list[BaseException] = []

    def run() -> None:
        try:
            answer_correct("\\boxed{5}", "5")
        except BaseException as e:  # noqa: BLE001
            got.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert len(got) == 1 and isinstance(got[0], SuiteError) and "main thread" in str(got[0])


def test_a_list_ground_truth_is_read_as_its_last_entry(tmp_path) -> None:
    import pandas as pd

    pytest.importorskip("math_verify")
    recs = [{"prompt": [{"role": "user", "content": "q"}], "data_source": "x",
             "reward_model": {"ground_truth": ["1", "\\frac{1}{2}"], "style": "rule"}, "extra_info": {"index": 0}}]
    pd.DataFrame(recs).to_parquet(tmp_path / "t.parquet")
    (rec,) = read_parquet(tmp_path / "t.parquet")
    assert rec["answer"] == "\\frac{1}{2}" and answer_correct("\\boxed{0.5}", rec["answer"])
    assert not answer_correct("\\boxed{1}", rec["answer"])
