"""Spec §6 smoke assertions for TreePO: tree rollout mechanics, token accounting, the tree advantage,
the PPO loss, and the teeth (broken variants make declared claims fail)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from suite.context import for_tests

from . import CLAIMS, SCALES, Config, run, tree_config
from . import task as T
from .experiment import RLSetup, StubSampler, batch_logprobs, encode_prompts, mechanics, minibatch_loss
from .method import (EARLY_STOP, FINISHED, LMSampler, Path, TreeConfig, _split, group_baseline, node_token_sum,
                     ppo_loss, tree_advantage, tree_is_valid, tree_rollout, whiten)

TOK = T.tokenizer()
TREE = TreeConfig()
CLAIM = {c.id: c for c in CLAIMS}


def _boxed(ids: list[int]) -> bool:
    return T.has_box(TOK.decode(ids))


def _stub_rollout(seed: int, **kw: object) -> tuple:
    prompts = encode_prompts(TOK, T.generate(12, seed))
    cfg = replace(TREE, **kw)
    ro = tree_rollout(prompts, StubSampler(TOK, np.random.default_rng(seed)), cfg, TOK.eos_id, _boxed,
                      np.random.default_rng(seed + 1))
    return ro, prompts


@pytest.mark.parametrize("seed", range(4))
def test_W_leaves_valid_tree_and_exact_token_count(seed: int) -> None:
    ro, prompts = _stub_rollout(seed)
    assert np.all(np.bincount([p.prompt for p in ro.leaves], minlength=len(prompts)) == TREE.width)
    assert tree_is_valid(ro, TREE.width)
    assert ro.tokens_decoded == node_token_sum(ro)
    assert ro.fallbacks > 0  # the odd-first-digit prompts die fast: the fallback path is exercised
    assert all(p.status != 0 for p in ro.leaves)


def test_tree_decodes_fewer_tokens_than_independent() -> None:
    m = mechanics(TOK, TREE, 16, 0)
    assert m["stub_tree_tokens"] < m["stub_indep_tokens"]
    assert m["stub_leaves_exact_W"] == 1.0 and m["stub_tree_valid"] == 1.0 and m["stub_tokens_match_nodes"] == 1.0


def test_status_needs_box_and_eos() -> None:
    ro, _ = _stub_rollout(0)
    for p in ro.leaves:
        if p.status == FINISHED:
            assert p.response[-1] == TOK.eos_id and _boxed(p.response[:-1])
        if p.status == EARLY_STOP:
            assert p.response[-1] == TOK.eos_id and not _boxed(p.response[:-1])


def test_advantage_hand_example_and_flat_tree() -> None:
    a = tree_advantage([(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)], np.array([1.0, 0, 0, 0]))
    np.testing.assert_allclose(a, [0.625, -0.375, -0.125, -0.125])
    # zero-std subgroup 0#1 dropped when asked: leaves 2, 3 keep only the root term
    b = tree_advantage([(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)], np.array([1.0, 0, 0, 0]), drop_zero_std=True)
    np.testing.assert_allclose(b, [0.625, -0.375, -0.25, -0.25])
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(5), 8)
    r = rng.random(g.size)
    np.testing.assert_allclose(tree_advantage([(int(x), i) for i, x in enumerate(g)], r),
                               group_baseline(g, r, std_norm=False), atol=1e-12)
    # root-only ablation == REINFORCE++ baseline on any tree
    ro, _ = _stub_rollout(2)
    rr = rng.random(len(ro.leaves))
    np.testing.assert_allclose(tree_advantage([p.index for p in ro.leaves], rr, root_only=True),
                               group_baseline(np.array([p.prompt for p in ro.leaves]), rr, False), atol=1e-12)


def test_whitening_is_batch_wide_and_masked() -> None:
    adv = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    w = whiten(adv, mask)
    assert w[0, 2] == 0 and abs(float(w[mask].mean())) < 1e-6 and abs(float(w[mask].std(unbiased=False)) - 1) < 1e-3


def test_ppo_loss_clip_and_dual_clip() -> None:
    m = torch.ones(1, 1, dtype=torch.bool)
    z = torch.zeros(1, 1)
    assert float(ppo_loss(z, z, torch.full((1, 1), 2.0), m)) == pytest.approx(-2.0)  # ratio 1: −A
    big = torch.full((1, 1), 1.0)  # ratio e: clipped at 1.28 for A > 0
    assert float(ppo_loss(big, z, torch.ones(1, 1), m)) == pytest.approx(-1.28)
    huge = torch.full((1, 1), 5.0)  # ratio e^5 with A < 0: dual clip caps the loss at c·|A| = 10
    assert float(ppo_loss(huge, z, -torch.ones(1, 1), m)) == pytest.approx(10.0)


def test_split_budgets() -> None:
    paths = [Path(0, (0, i), entropy=e) for i, e in enumerate([0.1, 2.0, 0.5])]
    assert _split(8, paths, "fixed_avg") == [2, 2, 4]
    k = _split(8, paths, "entropy")
    assert sum(k) == 8 and min(k) >= 1 and k[1] == max(k)


def test_lm_sampler_cuts_after_eos_and_decodes_each_prefix_as_alone() -> None:
    """Greedy segments of a random tiny LM: every left-padded row equals that prefix decoded alone (uncached
    ``TransformerLM.generate``), cut after its first eos; the entropy is the mean over the kept tokens."""
    from suite.models.transformer import TransformerLM

    torch.manual_seed(0)
    m = TransformerLM(12, max_len=16, dim=16, depth=1, heads=2)
    prefixes = [[1, 6, 7], [1, 8], [2, 3, 4, 5]]
    alone = [m.generate(torch.tensor([p]), 6, temperature=0.0)[0, len(p):].tolist() for p in prefixes]
    eos = alone[0][2]  # the token row 0 emits third: row 0 must stop there
    new, ent = LMSampler(m, eos, 0, 0.0)(prefixes, 6)
    for got, want in zip(new, alone):
        cut = want.index(eos) + 1 if eos in want else len(want)
        assert got == want[:cut]
    assert len(new[0]) <= 3 and new[0][-1] == eos
    with torch.no_grad():  # row 1's mean entropy by hand, from the uncached model
        seq, h = torch.tensor([prefixes[1] + new[1]]), []
        for j in range(len(new[1])):
            lp = m(seq[:, :len(prefixes[1]) + j])[0, -1].float().log_softmax(-1)
            h.append(float(-(lp.exp() * lp).sum()))
    assert abs(ent[1] - sum(h) / len(h)) < 1e-5


def test_teeth_no_fallback_and_recount_fail_claims() -> None:
    cfg = Config(**{**SCALES["smoke"], "variant": "no-fallback"})
    out = run(cfg, for_tests("smoke", 0))
    assert CLAIM["M-leaves-W"].check(out.metrics, "smoke")["verdict"] == "fails"
    m = mechanics(TOK, tree_config(Config()), 16, 0, variant="recount")
    assert CLAIM["M-tokens-nodes"].check(m, "smoke")["verdict"] == "fails"


def test_recount_variant_counts_shared_prefixes_once_per_leaf() -> None:
    from .experiment import counted_tokens

    ro = _stub_rollout(0)[0]
    assert counted_tokens(ro) == ro.tokens_decoded == node_token_sum(ro)
    assert counted_tokens(ro, "recount") == sum(len(p.response) for p in ro.leaves) > ro.tokens_decoded


def test_full_dry_run_provenance_is_the_fixture(tmp_path) -> None:
    from suite.data.external import locate

    from .full import HOW, read_parquet, write_fixture

    names = Config().train_files + Config().test_files
    folder, ref = locate(for_tests("full", dry_run=True, data_root=tmp_path), "TreePO_data", Config().data_dir,
                         names, HOW, fixture=lambda f: write_fixture(f, names))
    assert ref.provenance == "stand-in" and "fixture" in ref.name
    assert all(read_parquet(folder / n) for n in names)


def _ragged_minibatch(seed: int) -> tuple[torch.Tensor, ...]:
    """A right-padded mini-batch of 6 rows of 5..16 tokens, response masks after a 3-token prompt."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([16, 5, 11, 9, 16, 7])
    toks = torch.randint(3, T.tokenizer().vocab_size, (6, 16), generator=g)
    km = torch.arange(16)[None] < lens[:, None]
    toks = toks.masked_fill(~km, 0)
    c = torch.arange(15)[None]
    rm = (c >= 2) & (c < lens[:, None] - 1)
    return toks, km, rm, torch.randn(6, 15, generator=g) * 0.3, torch.randn(6, 15, generator=g)


@pytest.mark.parametrize("budget", [1, 20, 40])
def test_micro_batched_update_is_the_one_pass_gradient(budget: int) -> None:
    """verl's dynamic micro-batching (full scale): the rows cut into micro-batches of <= budget padded tokens and
    accumulated in one fit step give the one-pass token-mean loss and gradient; the old log-probs taken in
    micro-batches equal the one-pass ones on every response token."""
    from suite.models.transformer import TransformerLM

    torch.manual_seed(0)
    model = TransformerLM(T.tokenizer().vocab_size, 16, 16, 2, 2, causal=True)
    toks, km, rm, noise, adv = _ragged_minibatch(budget)
    setup = RLSetup(0, TreeConfig(), 1, 1, 1, 1e-3, 0.0, 1.0, 0.2, 0.28, 10.0, 4, True, 1, 1)
    old = batch_logprobs(model, toks, km, 0)
    chunked = batch_logprobs(model, toks, km, budget)
    assert torch.allclose(chunked[rm], old[rm], atol=1e-6)
    b = (toks, km, rm, old + noise, adv)

    def grads(micro: int) -> tuple[float, list[torch.Tensor]]:
        model(toks, km).sum().backward()  # the previous fit step's gradient, still on the parameters
        loss = minibatch_loss(model, b, replace(setup, micro_tokens=micro))
        model.zero_grad(set_to_none=True)  # as fit: after the loss, before its backward
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in model.parameters()]

    v0, g0 = grads(0)
    v1, g1 = grads(budget)
    assert v1 == pytest.approx(v0, rel=1e-5)
    assert max(float((a - c).abs().max()) for a, c in zip(g0, g1)) < 1e-6
    assert max(float(a.abs().max()) for a in g0) > 1e-3  # a gradient worth comparing
