"""Our GSM8K and MATH answer scoring against the reference implementations themselves: lm-evaluation-harness's
task files, regex filters and exact-match metric, and the MATH evaluator in its hendrycks_math task. Hand-picked
outputs plus random strings built from the tokens where the rules differ (stops, anchors, commas, braces)."""
import random
import warnings

import pytest

from suite.errors import ConfigError, UnknownNameError
from suite.metrics import answers as A

yaml = pytest.importorskip("yaml")
lm_eval = pytest.importorskip("lm_eval")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import TakeFirstFilter
    from lm_eval.tasks.hendrycks_math import utils as math_ref

TASK_FILES = {"gsm8k": "gsm8k.yaml", "gsm8k_cot": "gsm8k-cot.yaml"}
GOLDS = ["Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "#### 1200", "#### -5", "#### 3.5",
         "so $10 in all.\n#### 10", "#### 0"]
OUTPUTS = ["She sold 72 clips.\n#### 72", "#### 1,200", "#### $1,200.00", "The answer is 1200.", "#### -5\n",
           "The answer is -5.", "I think 3.50 and then #### 3.5", "#### 3.50", "#### 10 Question: what is 11?",
           "Question: #### 10", "no number here", "#### 72\n#### 73", "The answer is 10. Q: next #### 11",
           "#### .5", "$10.", "answer: 0", "#### 0.", "-7 or 72", "####72", "The answer is $10.", ""]


def _task_yaml(name: str) -> dict:
    import importlib.resources as res

    text = (res.files("lm_eval") / "tasks" / "gsm8k" / TASK_FILES[name]).read_text()
    return yaml.safe_load(text)


def _reference(name: str, completions, answers) -> dict:
    cfg = _task_yaml(name)
    until = cfg["generation_kwargs"]["until"]
    cut = []
    for c in completions:  # the harness's generate_until: split at every stop string, keep the head
        for stop in until:
            c = c.split(stop)[0]
        cut.append(c)
    metric = cfg["metric_list"][0]
    out = {}
    for f in cfg["filter_list"]:
        regex = next(s for s in f["filter"] if s["function"] == "regex")
        rf = RegexFilter(regex_pattern=regex["regex_pattern"], group_select=regex.get("group_select", 0))
        preds = list(TakeFirstFilter().apply(rf.apply([[c] for c in cut], None), None))
        got = exact_match_hf_evaluate(predictions=preds, references=list(answers), ignore_case=metric["ignore_case"],
                                      regexes_to_ignore=metric["regexes_to_ignore"],
                                      ignore_punctuation=metric["ignore_punctuation"])
        out[f["name"]] = float(got["exact_match"])
    return out


def test_our_gsm8k_tasks_are_the_installed_task_files():
    for name, task in A.GSM8K_TASKS.items():
        cfg = _task_yaml(name)
        assert task.until == tuple(cfg["generation_kwargs"]["until"])
        pats = {f["name"]: next(s for s in f["filter"] if s["function"] == "regex") for f in cfg["filter_list"]}
        assert pats["strict-match"]["regex_pattern"] == task.strict and pats["strict-match"].get("group_select", 0) == 0
        assert pats["flexible-extract"]["regex_pattern"] == task.flexible
        assert pats["flexible-extract"]["group_select"] == -1
        assert tuple(cfg["metric_list"][0]["regexes_to_ignore"]) == task.ignore


@pytest.mark.parametrize("task", sorted(A.GSM8K_TASKS))
def test_gsm8k_scores_equal_the_harness_on_every_output(task):
    for out in OUTPUTS:
        for gold in GOLDS:  # one pair at a time: a single disagreement fails
            assert A.gsm8k_harness([out], [gold], task) == _reference(task, [out], [gold]), (out, gold)
    rng = random.Random(0)
    toks = ["#### ", "####", " ", "1", "2", "0", ",", ".", "$", "-", "The answer is ", "Question:", "Q:", "\n", "a",
            "</s>", "<|im_end|>"]
    outs = ["".join(rng.choice(toks) for _ in range(rng.randint(0, 12))) for _ in range(1500)]
    golds = [rng.choice(GOLDS) for _ in outs]
    assert A.gsm8k_harness(outs, golds, task) == _reference(task, outs, golds)


def test_gsm8k_scores_can_differ_from_our_number_normalisation():
    """The harness compares strings: '$1,200.00' is not '1200' there (suite.metrics.text would say it is)."""
    got = A.gsm8k_harness(["#### $1,200.00", "#### 1,200"], ["#### 1200", "#### 1200"])
    assert got["strict-match"] == 0.5
    with pytest.raises(ConfigError):
        A.gsm8k_harness(["#### 1"], [])
    with pytest.raises(UnknownNameError):
        A.gsm8k_harness(["#### 1"], ["#### 1"], task="gsm9k")


def _ref_boxed(text):
    try:
        s = math_ref.last_boxed_only_string(text)
        return None if s is None else math_ref.remove_boxed(s)
    except AssertionError:
        return None


BOXED = ["so \\boxed{42}.", "\\boxed{\\frac{1}{2}} then \\boxed{3}", "\\boxed{x^{2}+1}", "\\boxed 5$ done",
         "\\fbox{7}", "no box", "\\boxed{unclosed", "\\boxed\\frac{1}{2}", "$\\boxed{\\dfrac12}$", "\\boxed{}"]
ANSWERS = ["42", "\\frac{1}{2}", "\\frac12", "0.5", "1/2", "\\dfrac{1}{2}", "x = 3", "3", "\\sqrt3", "\\sqrt{3}",
           "10\\%", "10", "5^\\circ", "5", "\\left(1,2\\right)", "(1,2)", "3 \\text{ cm}", ".5", "x/2", "\\frac",
           "\\sqrt", " \\frac", " \\sqrt", "1 \\text{ a} \\text{ b}", "\\$5", " 7 ", "k=\\frac{1}{3}", "\\frac{1}{3}", "2/4", "+3/4"]


def test_boxed_answers_are_read_and_compared_as_the_math_evaluator_does():
    for text in BOXED:
        assert A.last_boxed(text) == _ref_boxed(text), text
    for a in ANSWERS:
        for b in ANSWERS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert A.math_equiv(a, b) == math_ref.is_equiv(a, b), (a, b)
    rng = random.Random(1)
    toks = ["\\boxed{", "\\boxed ", "\\fbox{", "{", "}", "1", "2", "x", "/", "\\frac", "\\sqrt", " ", ".", "=",
            "\\text{ ", "\\%", "$", "\\left(", "\\right)", "^\\circ", "\\dfrac", "-", "\n", "\\!"]
    for _ in range(3000):
        s = "".join(rng.choice(toks) for _ in range(rng.randint(0, 10)))
        t = "".join(rng.choice(toks) for _ in range(rng.randint(0, 6)))
        assert A.last_boxed(s) == _ref_boxed(s), s
        assert A.math_equiv(s, t) == math_ref.is_equiv(s, t), (s, t)
        assert A.math_equiv(s, s)


def test_boxed_none_handling():
    assert A.math_equiv(None, None) and not A.math_equiv(None, "1") and not A.math_equiv("1", None)
    assert A.last_boxed("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}" and A.math_equiv("\\frac12", "0.5")
