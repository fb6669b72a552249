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


# ---- full scale over text (full.py), with a scripted LM in place of transformers
class _ScriptedLM:
    """Answers "(A)" to questions whose number is even, "(B)" otherwise; proposes a fixed instruction."""

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, max_new_tokens=8, temperature=0.0, **kw):
        self.prompts += prompts
        out = []
        for p in prompts:
            if p.rstrip().endswith("A:"):
                n = int(p.rstrip()[:-2].split("question ")[-1].split(" ")[0])
                out.append(f"Reasoning about {n}. So the answer is {'(A)' if n % 2 == 0 else '(B)'}.")
            else:
                out.append("Pick the letter.\nignored second line")
        return out


def _items(n):
    return [{"input": f"question {i} of t", "target": "(A)" if i % 3 else "(B)"} for i in range(n)]


def test_full_answer_extraction():
    from .full import extract_answer, is_correct
    assert extract_answer("Step 1... So the answer is (C).", "(A)") == "(C)"
    assert is_correct("Thus (A) is wrong; the answer is (B)", "(B)")
    assert is_correct("So the answer is True.", "True")
    assert is_correct("the answer is: 24.", "24") and not is_correct("the answer is 240", "24")
    assert not is_correct("no letter here", "(A)")


def test_full_task_budgets_pool_and_cache():
    from .full import TextLLM, build_pool, run_task
    cfg = _cfg("small", budget=6, budget_io_share=2, k=2, max_new=8, instr_max_new=8, opt_temperature=1.0)
    val, test = _items(12), _items(12)[::-1]
    lm = _ScriptedLM()
    llm = TextLLM(lm, batch=5, max_new=8)
    acc, calls, sec, chk = run_task(llm, llm, val, test, cfg, torch.Generator().manual_seed(0), "correct")
    assert chk == {"budget_overrun": 0.0, "budget_underuse": 0.0, "pool_incorrect": 0.0}
    assert set(acc) == {"seed", "io", "io_reuse", "es_random", "es_rs", "es_rs_notrace", "io_es"}
    # the seed prompt's accuracy is the share of items where the scripted answer matches the target
    right = sum(("(A)" if i % 2 == 0 else "(B)") == it["target"] for i, it in enumerate(val)) / 12
    assert acc["seed"] == pytest.approx(right)
    # repeated prompts are served from the cache: generations run < prompts rendered
    assert llm.calls == len(llm.cache) + sum(1 for p in lm.prompts if not p.rstrip().endswith("A:"))
    pool = build_pool(val, ["So the answer is (A)."] * 12, "correct")
    assert all(it["target"] == "(A)" for it in val if it["input"] in {e.x for e in pool})
    wrong = build_pool(val, ["So the answer is (A)."] * 12, "wrong-outputs")
    assert {e.x for e in wrong} == {it["input"] for it in val if it["target"] == "(B)"}
