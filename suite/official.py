"""The README table that pins a reproduction's full preset to the paper's official code (issue 17 item 1).

A reproduction's README holds, between the lines ``<!-- full-preset-table -->`` and
``<!-- /full-preset-table -->``, the table::

    | setting | official value | official file | ours (config field = value) | note |

one row per hyper-parameter of the official experiment. "ours" reads ``field = <repr of the resolved full
preset's value>`` (``—`` where we have no field); "note" is ``same``, ``deviation: <why>``, ``not in the
official code``, ``UNVERIFIED: <why>`` or, on a row without a field of ours, ``no field: <what we do>``
(a ``|`` inside a cell is written ``\\|``). :func:`check` asserts that the table and the code agree, so a preset
changed without its README (or the README without the code) fails its reproduction's
``test_official_config.py``. Only tests import this module.
"""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any, Callable

START, END = "<!-- full-preset-table -->", "<!-- /full-preset-table -->"
HEADER = ["setting", "official value", "official file", "ours (config field = value)", "note"]
NONE = "—"
NOTE = re.compile(r"^(same\b|deviation\b|not in the official code\b|UNVERIFIED\b|no field\b)")


def _cells(line: str) -> list[str]:
    line = line.strip()
    assert line.startswith("|") and line.endswith("|"), f"not a table row: {line!r}"
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line[1:-1])]


def table(text: str) -> list[dict[str, str]]:
    """The rows of the pinned table in a README's ``text``."""
    assert text.count(START) == 1 and text.count(END) == 1, f"the README needs one {START} ... {END} table"
    lines = [ln for ln in text.split(START, 1)[1].split(END, 1)[0].splitlines() if ln.strip()]
    assert _cells(lines[0]) == HEADER, f"the table's header is {_cells(lines[0])}, not {HEADER}"
    assert set("".join(_cells(lines[1]))) <= set("-:"), "the table's second line must be the separator"
    rows = []
    for ln in lines[2:]:
        cells = _cells(ln)
        assert len(cells) == len(HEADER), f"a row with {len(cells)} cells: {ln!r}"
        rows.append(dict(zip(HEADER, cells)))
    return rows


def _unquote(cell: str) -> str:
    cell = cell.strip()
    return cell[1:-1].strip() if len(cell) >= 2 and cell[0] == cell[-1] == "`" else cell


def ours(row: dict[str, str]) -> tuple[str, str] | None:
    """``(field, value as written)`` of a row, None where we have no field."""
    cell = _unquote(row["ours (config field = value)"])
    if cell == NONE:
        return None
    field, sep, value = cell.partition(" = ")
    assert sep and field.isidentifier(), f"an 'ours' cell reads `field = value`, got {cell!r}"
    return field, value


def _literal(cell: str) -> Any:
    """A cell's value as a Python literal: the whole cell, or the cell without a trailing parenthesis that
    cites where it comes from (``50 (`--num_old_classes`)``); a single bare word is a string. None for prose."""
    cell = _unquote(cell)
    for cand in dict.fromkeys((cell, _unquote(re.sub(r"\s*\([^()]*\)\s*$", "", cell)))):
        try:
            return ast.literal_eval(cand)
        except (ValueError, SyntaxError):
            if re.fullmatch(r"[A-Za-z_][\w.\-]*", cand):
                return cand
    return None


def _equal(a: Any, b: Any) -> bool:
    """Equal up to formatting: 1e-3 == 0.001, 100 == 100.0, tuples element by element."""
    if isinstance(a, (set, frozenset)) or isinstance(b, (set, frozenset)):  # a grid listed as a set
        return isinstance(a, (set, frozenset, tuple, list)) and isinstance(b, (set, frozenset, tuple, list)) \
            and len(set(a)) == len(set(b)) and all(any(_equal(x, y) for y in b) for x in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()  # 'SGD' in a script, 'sgd' in our config
    return type(a) is type(b) and a == b


def check(cfg: Any, text: str, *, min_rows: int = 5, every_field: bool = False) -> tuple[int, int]:
    """Assert that the pinned table in ``text`` is the resolved full preset ``cfg``: every "ours" cell is
    ``repr`` of that field, every note is one of the kinds above, every ``same`` row whose official value is a
    plain literal equals ours, and (``every_field``) every config field has a row. Returns ``(fields pinned,
    same rows compared with the official value)``."""
    rows = table(text)
    assert len(rows) >= min_rows, f"the table has {len(rows)} rows; pin at least {min_rows} settings"
    pinned, compared = set(), 0
    for r in rows:
        assert NOTE.match(r["note"]), (f"row {r['setting']!r}: the note starts with same / deviation / not in "
                                       f"the official code / UNVERIFIED / no field, got {r['note']!r}")
        mine = ours(r)
        if mine is None:
            continue
        field, value = mine
        assert not r["note"].startswith("no field"), f"row {r['setting']!r} has a field ({field}) but says no field"
        assert hasattr(cfg, field), f"row {r['setting']!r}: the config has no field {field!r}"
        assert repr(getattr(cfg, field)) == value, \
            f"row {r['setting']!r}: the README says {field} = {value}, the full preset has {getattr(cfg, field)!r}"
        pinned.add(field)
        official = _literal(r["official value"])
        if r["note"].startswith("same") and official is not None:  # a prose official value stays documentation
            assert _equal(official, _literal(value)), \
                f"row {r['setting']!r} says same: official {official!r}, ours {value}"
            compared += 1
    if every_field:
        missing = sorted({f.name for f in dataclasses.fields(cfg)} - pinned)
        assert not missing, f"config fields without a row in the table: {missing}"
    return len(pinned), compared


def readme(slug: str) -> str:
    from suite.environment import REPO_ROOT

    return (Path(REPO_ROOT) / "reproductions" / slug / "README.md").read_text(encoding="utf-8")


def pinned_table_tests(slug: str, *, pinned: int, compared: int, every_field: bool = False) -> tuple[Callable, Callable]:
    """The two tests of a reproduction's ``test_official_config.py``: the table is the resolved full preset
    (with at least ``pinned`` fields pinned and ``compared`` ``same`` rows checked against the official value,
    today's counts), and a drifted "ours" cell fails the check (so the parser cannot be matching nothing)."""
    def full():
        from suite import config, registry

        return config.resolve(registry.get(slug), "full")

    def test_full_preset_is_the_readme_table() -> None:
        got = check(full(), readme(slug), every_field=every_field)
        assert got[0] >= pinned and got[1] >= compared, f"(pinned, compared) = {got}, was ({pinned}, {compared})"

    def test_a_drifted_readme_value_fails() -> None:
        text = readme(slug)
        field, value = next(o for o in map(ours, table(text)) if o is not None)
        drifted = text.replace(f"`{field} = {value}`", f"`{field} = {value}0`", 1)
        drifted = drifted if drifted != text else text.replace(f"| {field} = {value} |", f"| {field} = {value}0 |", 1)
        assert drifted != text, f"could not find the cell of {field} to drift"
        try:
            check(full(), drifted, every_field=every_field)
        except AssertionError as exc:
            assert field in str(exc), exc
        else:
            raise AssertionError(f"a drifted `{field}` cell passed the check")

    return test_full_preset_is_the_readme_table, test_a_drifted_readme_value_fails
