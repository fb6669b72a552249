"""happy_cgcd's full preset is pinned to its README table "Full preset against the official code" (issue 17;
suite/official.py): a preset changed without the README, or the README without the preset, fails here."""
import pytest

from suite import config, official, registry

SLUG = "happy_cgcd"


def _cfg():
    return config.resolve(registry.get(SLUG), "full")


def test_full_preset_is_the_readme_table():
    pinned, compared = official.check(_cfg(), official.readme(SLUG))
    assert pinned >= 31 and compared >= 29  # config fields pinned, `same` rows checked against the official value


def test_a_drifted_readme_value_fails():
    text = official.readme(SLUG)
    drifted = text.replace("lr = 0.01 |", "lr = 0.02 |", 1).replace("`lr = 0.01`", "`lr = 0.02`", 1)
    assert drifted != text
    with pytest.raises(AssertionError, match="lr"):
        official.check(_cfg(), drifted)
