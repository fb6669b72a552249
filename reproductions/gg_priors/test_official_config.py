"""gg_priors's full preset is pinned to its README table "Full scale: the authors' GPT-2 recipe" (issue 17;
suite/official.py; official code phuang1024/DBS @ eaaa60f, gpt2/ and gg_prior/): a preset changed without
the README, or the README without the preset, fails here."""
from suite.official import pinned_table_tests

test_full_preset_is_the_readme_table, test_a_drifted_readme_value_fails = pinned_table_tests(
    "gg_priors", pinned=30, compared=14)
