"""treepo's full preset is pinned to its README table "Full preset against the official code" (issue 17;
suite/official.py): a preset changed without the README, or the README without the preset, fails here."""
from suite.official import pinned_table_tests

test_full_preset_is_the_readme_table, test_a_drifted_readme_value_fails = pinned_table_tests(
    "treepo", pinned=26, compared=21)
