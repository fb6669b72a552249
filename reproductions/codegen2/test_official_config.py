"""codegen2's full preset is pinned to its README table "Full preset against the official code" (issue 17;
suite/official.py): a preset changed without the README, or the README without the preset, fails here.

The official code (salesforce/CodeGen2, salesforce/CodeGen codegen2/) releases checkpoints and a sampling
snippet only, so no `same` row has both a field of ours and an official literal: `compared` is 0 today."""
import pytest

from suite import config, official, registry

SLUG = "codegen2"


def _cfg():
    return config.resolve(registry.get(SLUG), "full")


def test_full_preset_is_the_readme_table():
    pinned, compared = official.check(_cfg(), official.readme(SLUG))
    assert pinned >= 14 and compared >= 0  # config fields pinned, `same` rows checked against the official value


def test_a_drifted_readme_value_fails():
    text = official.readme(SLUG)
    drifted = text.replace("`full_t_low = 0.2`", "`full_t_low = 0.8`", 1)
    assert drifted != text
    with pytest.raises(AssertionError, match="full_t_low"):
        official.check(_cfg(), drifted)
