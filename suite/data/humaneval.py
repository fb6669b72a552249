"""HumanEval (``HumanEval.jsonl.gz`` of openai/human-eval): one JSON record per problem with
``task_id, prompt, canonical_solution, test, entry_point``. Used by the code-generation papers'
full scale; ``write_fixture`` writes a 2-problem file in the same format for tests and dry runs."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from suite.errors import CorruptDataError, DataNotFoundError
from suite.io import atomic_write_bytes

FILE = "HumanEval.jsonl.gz"
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
HOW = "copy HumanEval.jsonl.gz of openai/human-eval there"


def read(path: Path) -> list[dict]:
    """All problems; a missing file or a record without one of ``FIELDS`` is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"HumanEval not found at {path}; {HOW}")
    out = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise CorruptDataError(f"{path} line {i + 1} is not JSON; re-copy {FILE}") from None
                if any(k not in rec for k in FIELDS):
                    raise CorruptDataError(f"{path} line {i + 1} lacks one of {FIELDS}; re-copy {FILE}")
                out.append(rec)
    except (OSError, EOFError) as exc:
        raise CorruptDataError(f"{path} is not a readable gzip file ({exc}); re-copy {FILE}") from None
    return out


def write_fixture(path: Path) -> Path:
    """Two tiny problems in the exact HumanEval format (tests and ``--dry-run``)."""
    recs = [{"task_id": "Fixture/0", "prompt": "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
             "canonical_solution": "    return a + b\n", "entry_point": "add",
             "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 5) == 5\n"},
            {"task_id": "Fixture/1", "prompt": "def neg(a):\n    \"\"\"Return -a.\"\"\"\n",
             "canonical_solution": "    return -a\n", "entry_point": "neg",
             "test": "def check(candidate):\n    assert candidate(2) == -2\n    assert candidate(-1) == 1\n"}]
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in recs).encode(), mtime=0)
    atomic_write_bytes(path, data)
    return Path(path)
