"""self_pretraining's full preset is pinned to its README table "Full preset against the official code" (issue 17;
suite/official.py): a preset changed without the README, or the README without the preset, fails here. The
per-(architecture, task) values of ``experiment.LRA_HP`` are not config fields; the README's per-task table pins
them (``test_self_pretraining.py::test_lra_hyperparameters_pinned_to_the_readme_table``)."""
from suite.official import pinned_table_tests

test_full_preset_is_the_readme_table, test_a_drifted_readme_value_fails = pinned_table_tests(
    "self_pretraining", pinned=9, compared=3)
