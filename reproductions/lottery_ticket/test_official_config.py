"""lottery_ticket's full preset is pinned to its README table "Full preset against the official code" (issue 17;
suite/official.py): a preset changed without the README, or the README without the preset, fails here."""
from suite.official import pinned_table_tests

test_full_preset_is_the_readme_table, test_a_drifted_readme_value_fails = pinned_table_tests(
    "lottery_ticket", pinned=23, compared=3)


def test_none_fields_resolve_as_the_readme_says():
    """Most LeNet rows pin `field = None`, which takes the architecture's paper default (ARCH_DEFAULTS); their
    notes say what None resolves to, and this pins that value too (a changed ARCH_DEFAULTS fails here)."""
    import ast
    import re

    from suite import config, official, registry

    from . import _pick

    cfg = config.resolve(registry.get("lottery_ticket"), "full")
    checked = []
    for row in official.table(official.readme("lottery_ticket")):
        field = re.fullmatch(r"`(\w+) = None`", row["ours (config field = value)"])
        said = re.search(r"None resolves to (\([^)]*\)|'[^']*'|[\w.\-]+)", row["note"])
        if not (field and said):
            continue
        try:
            want = ast.literal_eval(said.group(1))
        except (ValueError, SyntaxError):
            continue  # prose, e.g. "fc_rate / 2 = 0.1"
        got = _pick(cfg, field.group(1))
        assert got == want, f"README: {field.group(1)} = None resolves to {want!r}; ARCH_DEFAULTS gives {got!r}"
        checked.append(field.group(1))
    assert len(checked) >= 12, checked
