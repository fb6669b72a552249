"""suite/official.py: the README table that pins a full preset to the official code."""
from dataclasses import dataclass

import pytest

from suite import official


@dataclass
class Cfg:
    lr: float = 0.001
    opt: str = "sgd"
    grid: tuple = (1, 10, 100)
    width: int = 64


ROWS = """| lr | 1e-3 (`--lr`) | train.sh | `lr = 0.001` | same |
| optimiser | SGD | train.py | `opt = 'sgd'` | same |
| grid | {100, 1, 10} | sweep.sh | `grid = (1, 10, 100)` | same |
| width | 128 | model.py | `width = 64` | deviation: a CPU-sized net \\| on purpose |
| warmup | 500 steps | train.py | — | no field: no warmup |"""


def _readme(rows: str = ROWS) -> str:
    head = "| setting | official value | official file | ours (config field = value) | note |\n|---|---|---|---|---|\n"
    return f"intro\n{official.START}\n{head}{rows}\n{official.END}\nmore"


def test_a_table_that_is_the_code_passes_and_counts():
    assert official.check(Cfg(), _readme()) == (4, 3)
    assert official.table(_readme())[3]["note"] == "deviation: a CPU-sized net | on purpose"  # escaped pipe
    assert official.check(Cfg(), _readme(), every_field=True) == (4, 3)


@pytest.mark.parametrize("old, new, msg", [
    ("`lr = 0.001`", "`lr = 0.002`", "the full preset has 0.001"),      # ours drifted from the code
    ("1e-3 (`--lr`)", "1e-2 (`--lr`)", "says same"),                    # official differs but says same
    ("| deviation: a CPU", "| fine: a CPU", "the note starts with"),      # a note of no known kind
    ("| — | no field", "| `width = 64` | no field", "says no field"),    # a field that says it has none
    ("`opt = 'sgd'`", "`optim = 'sgd'`", "no field 'optim'"),
])
def test_each_kind_of_drift_fails(old, new, msg):
    bad = _readme().replace(old, new, 1)
    assert bad != _readme()
    with pytest.raises(AssertionError, match=msg):
        official.check(Cfg(), bad)


def test_a_field_without_a_row_fails_only_when_every_field_is_asked():
    rows = "\n".join(ln for ln in ROWS.splitlines() if not ln.startswith("| width"))
    assert official.check(Cfg(), _readme(rows), min_rows=4) == (3, 3)
    with pytest.raises(AssertionError, match="without a row"):
        official.check(Cfg(), _readme(rows), min_rows=4, every_field=True)
    with pytest.raises(AssertionError, match="at least 5"):
        official.check(Cfg(), _readme(rows))
