"""Provenance is set by the loader that read the data, never typed by a reproduction: outside
suite/data, a literal DatasetRef may only say "stand-in" (generated or bundled data)."""
import re

from suite.environment import REPO_ROOT

CALL = re.compile(r"DatasetRef\(")


def _calls(text: str):
    """The argument text of every ``DatasetRef(...)`` call (balanced parentheses)."""
    for m in CALL.finditer(text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield text[m.end():i - 1]


def test_no_reproduction_types_a_provenance():
    offenders = []
    for path in sorted((REPO_ROOT / "reproductions").rglob("*.py")) + sorted((REPO_ROOT / "suite").rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[:2] == ("suite", "data") or rel.name in ("spec.py",):
            continue
        for args in _calls(path.read_text()):
            if not re.search(r"""["']stand-in["']\s*$""", args.strip()):
                offenders.append(f"{rel}: DatasetRef({args})")
    assert not offenders, "provenance typed outside suite/data (use the loader's ref):\n" + "\n".join(offenders)
