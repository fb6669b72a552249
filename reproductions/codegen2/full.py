"""Full scale (spec §5): a released CodeGen2 checkpoint (HF folder) on HumanEval
(``HumanEval.jsonl.gz``: task_id, prompt, canonical_solution, test, entry_point), n samples per
problem, truncation before ``\\n\\n^#``, ``^'''`` and ``\\n\\n\\n`` (§3), each program executed in a
separate Python process with a timeout (``check(entry_point)``), unbiased pass@k.

The execution runs model-written code: run full scale only inside a container or VM. ``--dry-run``
uses a tiny random CodeGen model (the same architecture family) and a 2-problem fixture.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from suite import sandbox
from suite.context import RunContext
from suite.data import humaneval
from suite.data.external import locate
from suite.errors import DataNotFoundError
from suite.metrics import mean_pass_at_k
from suite.models.hf import load_causal_lm, save_tiny_random_lm
from suite.spec import Outcome

STOP = re.compile(r"\n\n^#|^'''|\n\n\n", re.MULTILINE)
def truncate(text: str) -> str:
    m = STOP.search(text)
    return text[:m.start()] if m else text


def executes(program: str, timeout: float = 5.0) -> bool:
    """True when ``program`` exits 0 within ``timeout`` in the shared subprocess sandbox."""
    return sandbox.passes(program, timeout)


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    tmp = None
    if ctx.dry_run:
        tmp = tempfile.TemporaryDirectory(prefix="cg2-dry-")
        root = Path(tmp.name)
        save_tiny_random_lm(root / "model", "codegen", max_len=512, pad="<|endoftext|>")
        lm = load_causal_lm(root / "model", ctx.device, trust_remote_code=cfg.trust_remote_code)  # the same call
        n, max_new = 2, 16
    else:
        if ctx.data_root is None:
            raise DataNotFoundError(f"full scale needs --data-root (or SUITE_DATA) holding {cfg.model_dir}/ and "
                                    f"{cfg.humaneval}")
        # CodeGen2 checkpoints ship their modelling code (config field trust_remote_code, default True)
        lm = load_causal_lm(Path(ctx.data_root) / cfg.model_dir, ctx.device, trust_remote_code=cfg.trust_remote_code)
        n, max_new = cfg.full_samples, 384
    # HumanEval (§5): the ref (paper, or a stand-in fixture in a dry run without it) comes from the loader
    he = Path(cfg.humaneval)

    def fixture(folder: Path) -> None:
        humaneval.write_fixture(folder / he.name)

    folder, ref = locate(ctx, "humaneval", str(he.parent), [he.name], humaneval.HOW, fixture=fixture)
    probs = humaneval.read(folder / he.name)
    # §4: n samples per problem at each of two temperatures, nucleus top-p; pass@1 from the low
    # temperature, pass@100 from the high one, pass@10 reported at both (and the better of the two,
    # the Codex convention of the best temperature per k).
    temps = {"low": cfg.full_t_low, "high": cfg.full_t_high}
    correct = {t: np.zeros(len(probs), dtype=np.int64) for t in temps}
    for i, p in enumerate(ctx.progress(probs, desc="humaneval")):
        for t, temp in temps.items():
            for lo in range(0, n, cfg.full_batch):
                k = min(cfg.full_batch, n - lo)
                outs = lm.generate([p["prompt"]] * k, max_new_tokens=max_new, temperature=temp, top_p=cfg.full_top_p)
                progs = [p["prompt"] + truncate(o) + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n" for o in outs]
                correct[t][i] += sum(executes(s) for s in progs)
    ns = np.full(len(probs), n)
    m = {f"humaneval_pass{k}_{t}T": mean_pass_at_k(ns, correct[t], k) for t in temps for k in (1, 10, 100) if k <= n}
    m["humaneval_pass1"] = m["humaneval_pass1_lowT"]
    if n >= 10:
        m["humaneval_pass10"] = max(m["humaneval_pass10_lowT"], m["humaneval_pass10_highT"])
    if n >= 100:
        m["humaneval_pass100"] = m["humaneval_pass100_highT"]
    m["humaneval_canonical_ok"] = float(np.mean([executes(p["prompt"] + p["canonical_solution"] + "\n" + p["test"]
                                                          + f"\ncheck({p['entry_point']})\n") for p in probs]))
    if tmp is not None:
        tmp.cleanup()
    return Outcome(metrics=m, dataset=ref, notes={"model_dir": cfg.model_dir, "samples": n,
                                                  "temperatures": temps, "top_p": cfg.full_top_p})
