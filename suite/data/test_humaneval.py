import gzip

import pytest

from suite.data import humaneval
from suite.errors import CorruptDataError, DataNotFoundError


def test_fixture_round_trip_and_errors(tmp_path):
    path = humaneval.write_fixture(tmp_path / humaneval.FILE)
    probs = humaneval.read(path)
    assert [p["entry_point"] for p in probs] == ["add", "neg"]
    ns: dict = {}
    exec(probs[0]["prompt"] + probs[0]["canonical_solution"] + probs[0]["test"], ns)
    ns["check"](ns["add"])  # the canonical solution passes its own test
    with pytest.raises(DataNotFoundError, match="openai/human-eval"):
        humaneval.read(tmp_path / "missing.jsonl.gz")
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"task_id": "x"}\n'))
    with pytest.raises(CorruptDataError, match="line 1 lacks"):
        humaneval.read(bad)
    trunc = tmp_path / "trunc.jsonl.gz"
    trunc.write_bytes(path.read_bytes()[:30])
    with pytest.raises(CorruptDataError):
        humaneval.read(trunc)
