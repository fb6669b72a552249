"""treesynth: the simulated data space and generator, the tree (pivots, entropy dimension choice,
validator, infinite nodes, leaves exclusive + exhaustive, base**k sample sets), rebalancing, the smoke
claims, the broken variant, MiniLM diversity behind its flag, the full preset pinned to the official
config and the real-LLM tree driven by a scripted stand-in LLM."""
from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
import torch

from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError, DataNotFoundError

from . import method as M
from .experiment import cpu_protocol, diversity, make_arms
from .full import LLMTree, full_protocol, validate_text_mapping, validator_errors

SLUG = "treesynth"


def _cfg(scale="smoke", over=()):
    return config.resolve(registry.get(SLUG), scale, list(over))


def test_space_has_2304_cells_and_exact_answers():
    cells = M.all_cells()
    assert cells.shape == (2304, 5) and M.cell_index(cells).unique().numel() == 2304
    a = torch.tensor([[0, 0, 0, 0, 0], [2, 1, 3, 1, 3]])  # add once; multiply twice with dozens
    y = M.answers(a, torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert y.tolist() == [2 + 3, 6 * 12 * 5 * 5]
    assert "dozens of" in M.render(a, torch.tensor([0, 1]), torch.tensor([1, 0]))[1]


def test_generator_is_mode_collapsed_and_follows_constraints():
    llm = M.SimLLM(1.5, 0.95, torch.Generator().manual_seed(0), torch.device("cpu"))
    d = llm.generate(4000)
    top = torch.bincount(d.attrs[:, 2], minlength=8).max().item() / 4000
    assert top > 0.4  # Zipf(1.5) over 8 values: favourite ~ 0.48
    c = llm.generate(4000, fixed={2: 5})
    assert 0.93 < (c.attrs[:, 2] == 5).float().mean() < 0.98
    assert llm.calls == 800


def test_validator_and_dimension_choice():
    assert M.validate_mapping({0: [0, 2], 1: [1, 3]}, 4)
    assert not M.validate_mapping({0: [0, 2], 1: [1]}, 4)       # misses index 3
    assert not M.validate_mapping({0: [0, 1, 2, 3], 1: [0]}, 4)  # repeats index 0
    piv = M.Dataset(torch.tensor([[0, 0, i, 0, i % 2] for i in range(8)]), torch.zeros(8, dtype=torch.long),
                    torch.zeros(8, dtype=torch.long))
    d, mp = M.choose_dimension(piv, set(), "correct")
    assert d == 2 and M.validate_mapping(mp, 8)                  # domain: 3 bits, the highest entropy
    assert M.choose_dimension(piv, {2}, "correct")[0] == 4       # ancestors' dimension excluded
    assert M.choose_dimension(piv, set(), "lowest-entropy")[0] == 0


def test_tree_partitions_the_space_and_issues_base_k_sets():
    cfg = _cfg()
    out = cpu_protocol(cfg, for_tests("smoke", seed=3), "correct")
    assert out["cells_not_in_one_leaf"] == 0 and out["samples_not_in_one_leaf"] == 0
    assert out["leaf_volume_err"] == 0 and out["leaf_count_err"] < 1e-9 and out["sample_sets_err"] == 0
    assert out["max_infinite_on_path"] >= 1 and out["validator_errors"] == 0
    assert out["treesynth_diversity"] > out["direct_diversity"]
    assert out["treesynth_coverage"] > out["direct_coverage"]


def test_unconstrained_leaves_breaks_diversity_claim():
    """Teeth at smoke size: leaves that ignore their path constraints generate like direct sampling."""
    cfg = _cfg()
    ok = cpu_protocol(cfg, for_tests("smoke", seed=1), "correct")
    bad = cpu_protocol(cfg, for_tests("smoke", seed=1), "unconstrained-leaves")
    assert ok["treesynth_diversity"] > ok["direct_diversity"]
    assert bad["treesynth_diversity"] < ok["treesynth_diversity"] - 0.02
    assert bad["coverage_ratio_vs_direct"] < 1.15 < ok["coverage_ratio_vs_direct"]


def test_rebalance_uniform_over_leaves():
    owner = torch.tensor([0] * 50 + [1] * 3 + [2] * 7)
    idx = M.rebalance(owner, 4, 60, torch.Generator().manual_seed(0))
    assert len(idx) == 60 and torch.bincount(owner[idx], minlength=4).tolist() == [20, 20, 20, 0]


def test_smoke_claims_hold():
    from . import CLAIMS
    out = cpu_protocol(_cfg(), for_tests("smoke", seed=0), "correct")
    verdicts = {c.id: c.check(out, "smoke")["verdict"] for c in CLAIMS}
    assert all(v in ("holds", "not-expected") for v in verdicts.values()), verdicts


def test_minilm_diversity_flag():
    pytest.importorskip("transformers")
    cfg = _cfg("smoke", ["minilm=true", "div_n=40"])
    data, _, _ = make_arms(cfg, for_tests("smoke"), 200, "correct", offset=10)
    g = torch.Generator().manual_seed(0)
    vals = {a: diversity(d, SimpleNamespace(div_n=40, minilm=True), g) for a, d in data.items()}
    assert all(0 < v < 1 for v in vals.values())


def test_config_errors():
    r = registry.get(SLUG)
    for bad in (["follow=1.5"], ["n_scale_small=5000"], ["variant=bogus"], ["max_depth=0"]):
        with pytest.raises((ConfigError, ValueError)):
            config.resolve(r, "small", bad)


def test_full_without_llm_is_one_line_error(tmp_path):
    ctx = for_tests("full", data_root=tmp_path)
    with pytest.raises(DataNotFoundError) as err:
        full_protocol(_cfg("full"), ctx)
    assert "treesynth/generator" in str(err.value) and "\n" not in str(err.value)
    out = full_protocol(_cfg("full"), for_tests("full", data_root=tmp_path, dry_run=True))  # fixture, no LLM
    assert out.metrics == {} and out.dataset.provenance == "stand-in"


class _Scripted:
    """A stand-in LLM answering the tree's three prompt kinds (tests only)."""

    def generate(self, prompts, max_new_tokens=0, temperature=0.0):
        p = prompts[0]
        if p.startswith("Questions:"):
            n = p.count("\n") - 1
            return [json.dumps({"dimension": f"d{p.count('[')}{len(p) % 7}",
                                "attributes": {"a": list(range(1, n + 1, 2)), "b": list(range(2, n + 1, 2))}})]
        if p.startswith("Dimension"):
            return ["c\ncomplete"]
        return ["\n".join(f"Question {i}: q{i}" for i in range(1, 5))]


def test_llm_tree_with_scripted_llm():
    cfg = _cfg("full", ["max_depth=2", "samples_per_node=4"])
    tree = LLMTree(_Scripted(), cfg, random.Random(0))
    data, info = tree.build()
    assert info["n_leaves"] == 9 and len(data) == 9 * 4  # 3 values (a, b, c) per level, depth 2
    assert validate_text_mapping({"dimension": "x", "attributes": {"a": [1, 2], "b": [3]}}, 3, [])
    assert not validate_text_mapping({"dimension": "x", "attributes": {"a": [1, 2]}}, 3, [])
    assert not validate_text_mapping({"dimension": "x", "attributes": {"a": [1, 2, 3]}}, 3, ["x"])
    # a pivot under two values breaks the partition (values mutually exclusive): rejected
    assert not validate_text_mapping({"dimension": "x", "attributes": {"a": [1, 2], "b": [2, 3]}}, 3, [])
    assert validator_errors(cfg.samples_per_node) == 0.0
