"""s4d's full preset is pinned to its README table "Full preset against the official code" (issue 17;
suite/official.py): a preset changed without the README, or the README without the preset, fails here.
The per-task LRA values (tasks.LRA_TASKS, not config fields) are pinned by the README's per-task table and
test_s4d.py::test_lra_hyperparameters_pinned_to_the_readme_table."""
from suite.official import pinned_table_tests

test_full_preset_is_the_readme_table, test_a_drifted_readme_value_fails = pinned_table_tests(
    "s4d", pinned=10, compared=2)
