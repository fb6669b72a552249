"""Print one of the README's two commands ("main" or "tests"), exactly as README.md gives them.

CI runs them through this script, and tests/test_readme.py parses them with it, so the README and
CI cannot drift apart. Standard library only: it runs before anything is installed.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def commands(text: str | None = None) -> dict[str, str]:
    """``{"main": ..., "tests": ...}``: the first two bash blocks under "## The two commands"."""
    text = README.read_text() if text is None else text
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
    if len(blocks) < 2:
        raise SystemExit("README.md: '## The two commands' must hold two ```bash blocks (main, tests)")
    return {"main": blocks[0].strip(), "tests": blocks[1].strip()}


if __name__ == "__main__":
    print(commands()[sys.argv[1]])
