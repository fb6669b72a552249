"""GSM8K jsonl loader and the GSM-style generator: answers recomputed from the question text."""
import json
import re

import pytest

from suite.data import gsm8k
from suite.errors import CorruptDataError, DataNotFoundError

_NUM = re.compile(r"\d+")


def _recompute(q: str) -> int:
    """Solve each template from the numbers in its question (independent of the generator)."""
    n = [int(v) for v in _NUM.findall(q)]
    if "sold" in q:
        k = {"half": 2, "a third": 3, "a quarter": 4}[re.search(r"sold (half|a third|a quarter) as many", q).group(1)]
        return n[0] + n[0] // k
    if "babysat" in q:
        rate, hours, tip = n
        return rate * hours + tip
    if "shares the rest" in q:
        boxes, per, keep, friends = n
        return (boxes * per - keep) // friends
    if "bike" in q:
        price, have, weekly = n
        return (price - have) // weekly
    if "discount" in q:
        packs, price, pct = n
        return packs * price * (100 - pct) // 100
    raise AssertionError(q)


def test_generated_answers_are_correct():
    recs = gsm8k.generate(gsm8k.GSMConfig(n=300, seed=1))
    assert recs == gsm8k.generate(gsm8k.GSMConfig(n=300, seed=1))
    for r in recs:
        assert set(r) == {"question", "answer"}
        final = gsm8k.final_answer(r["answer"])
        assert final == _recompute(r["question"])
        for expr, val in re.findall(r"<<([^=]+)=([^>]+)>>", r["answer"]):  # every calculator step
            assert eval(expr, {"__builtins__": {}}) == float(val)
        assert float(re.findall(r"<<[^=]+=([^>]+)>>", r["answer"])[-1]) == final


def test_jsonl_loader(tmp_path):
    recs = [{"question": "Q?", "answer": "2 * 3 = <<2*3=6>>6\n#### 1,006"}]
    gsm8k.write_jsonl(tmp_path / "train.jsonl", recs)
    gsm8k.write_fixture(tmp_path / "x")
    (tmp_path / "test.jsonl").write_text((tmp_path / "x" / "test.jsonl").read_text())
    s = gsm8k.load(tmp_path)
    assert s["train"].x == ["Q?"] and s["train"].y.tolist() == [1006.0] and len(s["test"]) == 5


def test_truncated_and_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="train.jsonl.*grade-school-math"):
        gsm8k.load(tmp_path)
    gsm8k.write_fixture(tmp_path)
    line = json.dumps({"question": "Q", "answer": "a\n#### 3"})
    (tmp_path / "test.jsonl").write_text(line + "\n" + line[:20] + "\n")
    with pytest.raises(CorruptDataError, match="test.jsonl: line 2"):
        gsm8k.load(tmp_path)
