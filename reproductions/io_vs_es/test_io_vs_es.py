"""io_vs_es tests: machinery on the simulated LLM at smoke size, one teeth variant, config errors, full dry run."""
from __future__ import annotations

import pytest
import torch

from suite.context import for_tests
from suite.errors import ConfigError, DataNotFoundError

from . import Config, SCALES
from . import method as M
from .experiment import build_llm, cpu_protocol
from .simllm import N_HINT


def _cfg(scale="smoke", **kw):
    return Config(**{**SCALES[scale], **kw})


def test_smoke_checks_hold(tmp_path):
    m = cpu_protocol(_cfg(), for_tests(tmp=tmp_path, seed=100), "correct")
    for k in ("budget_overrun", "budget_underuse", "pool_incorrect", "test_val_overlap", "rs1_random_diff",
              "diversity_not_distinct", "nearest_static"):
        assert m[k] == 0.0, k
    assert m["nearest_err"] <= 1e-6


def test_budget_refuses_extra_evaluation():
    b = M.Budget(2)
    b.spend(); b.spend()
    with pytest.raises(M.BudgetExceeded):
        b.spend()


def test_wrong_outputs_teeth_breaks_es(tmp_path):
    cfg = _cfg(n_tasks=6, budget=8, budget_io_share=4)
    ok = cpu_protocol(cfg, for_tests(tmp=tmp_path, seed=100), "correct")
    bad = cpu_protocol(cfg, for_tests(tmp=tmp_path, seed=100), "wrong-outputs")
    assert bad["acc/es_rs"] < ok["acc/es_rs"] - 0.2
    assert bad["acc/es_rs"] < bad["acc/io"]       # C1 fails under the broken pool


def test_exemplar_evidence_moves_posterior(tmp_path):
    ctx = for_tests(tmp=tmp_path)
    llm = build_llm(_cfg(), ctx)
    g = torch.Generator().manual_seed(0)
    t = M.make_tasks(llm, 1, 20, 20, g)[0]
    seed = torch.full((4,), N_HINT)
    lp0 = llm.posterior(seed, None, None, None)[0]
    lp = llm.posterior(seed, t.val_x[:3][None], t.val_y[:3][None], None)[0]
    assert lp.argmax() == t.h or lp[t.h] - lp0[t.h] > lp.max() - lp0.max() - 1e-6


def test_bad_config_one_line():
    with pytest.raises(ConfigError):
        Config(budget=8, budget_io_share=8).validate()


def test_full_dry_run_without_data(tmp_path):
    from .full import full_protocol
    ctx = for_tests(scale="full", tmp=tmp_path, dry_run=False, data_root=tmp_path / "nodata")
    with pytest.raises(DataNotFoundError) as e:
        full_protocol(Config(**SCALES["full"]), ctx)
    assert "bbh" in str(e.value) and "\n" not in str(e.value)
