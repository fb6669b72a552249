"""The shared selection protocol: every selector on one pool, within budget, and the hash of its
records follows the selectors' own code."""
import pytest
import torch

from suite import config, environment, registry
from suite.context import RunContext
from suite.errors import ConfigError
from suite.data.instructions import JUNK

from reproductions.selection_bench.protocol import SELECTORS, Selections, build_pool


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    cfg = config.resolve(registry.get("selection_bench"), "smoke")
    ctx = RunContext(scale="smoke", seed=0, run_dir=tmp_path_factory.mktemp("bench"))
    pool = build_pool(cfg, 0)
    return cfg, pool, Selections(cfg, pool, ctx)


def test_every_selector_picks_from_the_one_pool_within_budget(smoke):
    cfg, pool, sel = smoke
    picks = {}
    for name in SELECTORS:
        idx, secs, embedded = sel.run(name)
        assert 0 < idx.numel() <= cfg.k and secs >= 0 and embedded >= 0, name
        assert int(idx.min()) >= 0 and int(idx.max()) < len(pool), name
        picks[name] = set(idx.tolist())
    assert len({frozenset(p) for p in picks.values()}) == len(SELECTORS), "two selectors chose the same subset"


def test_selectors_do_what_their_papers_say(smoke):
    cfg, pool, sel = smoke
    q, _, _ = sel.run("quality")
    assert set(q.tolist()) == set(torch.topk(pool.quality, cfg.k).indices.tolist())
    t, _, _ = sel.run("treesynth")  # rebalanced toward uniform family counts (spec §3)
    counts = torch.bincount(pool.family[t], minlength=cfg.n_families)
    assert int(counts.max() - counts.min()) <= 1
    m, _, _ = sel.run("mig")
    r, _, _ = sel.run("random")
    # MIG's gain weighs quality: fewer junk-family items than a random draw of the same size
    assert float((pool.kind[m] == JUNK).float().mean()) < float((pool.kind[r] == JUNK).float().mean())


def test_a_change_to_a_selector_stales_the_bench():
    files = {f.relative_to(environment.REPO_ROOT).as_posix()
             for f in environment.code_files("reproductions.selection_bench")}
    for pkg in ("mig", "diverse_selection", "rds_plus", "treesynth"):
        assert f"reproductions/{pkg}/method.py" in files, pkg
    assert not any("/test_" in f for f in files)


def test_bad_selector_names_fail_before_work():
    with pytest.raises(ConfigError, match="selectors="):
        config.resolve(registry.get("selection_bench"), "smoke", {"selectors": ("mig", "magic")})
    with pytest.raises(ConfigError, match="k="):
        config.resolve(registry.get("selection_bench"), "smoke", {"k": 300})
