"""Full scale (spec §5), stages 3–5 at LLM size: a Hugging Face code model (Qwen2.5-Coder-7B) samples N
candidates per HumanEval problem (``HumanEval.jsonl.gz``: task_id, prompt, canonical_solution, test,
entry_point); every candidate runs in a subprocess sandbox (timeout, isolated interpreter) on the
problem's inputs; consensus clustering selects one candidate; the selection's precision is compared
with random-executable and min-NLL selection and with greedy pass@1, all judged by the benchmark tests.

Deviations (README): the execution inputs are the argument tuples of the benchmark's own ``candidate(...)``
calls (inputs only, no expected outputs), not model-written tests; stages 1, 2 and 6 (problem
generation, test writing, self-training of a 7B model) are not run here. ``--dry-run`` uses a tiny
random Qwen2 model and a 2-problem fixture. Execution runs model-written code: use a container/VM.
"""
from __future__ import annotations

import ast
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.context import RunContext
from suite.data import humaneval
from suite.data.external import locate
from suite.errors import DataNotFoundError
from suite.models.hf import load_causal_lm, save_tiny_random_lm
from suite.spec import Outcome

from .dsl import ERR
from .method import TIMEOUT, consensus, sandbox_run, select_min_nll, select_random

STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")


def call_inputs(test: str) -> list[str]:
    """Source of the argument tuples of every ``candidate(...)`` call in a HumanEval test."""
    out = []
    for node in ast.walk(ast.parse(test)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "candidate":
            out.append("(" + "".join(ast.unparse(a) + ", " for a in node.args) + ")")
    return list(dict.fromkeys(out))


def truncate(text: str) -> str:
    cut = min([text.find(s) for s in STOPS if s in text] or [len(text)])
    return text[:cut]


def signature_program(prompt: str, body: str, entry: str, inputs: list[str]) -> str:
    """Prints one canonical line per input (``repr`` of the output, or ERR on an exception)."""
    calls = "".join(f"    try:\n        print(repr({entry}(*{a})))\n    except Exception:\n        print('ERR')\n"
                    for a in inputs)
    calls = calls or "    pass\n"
    return f"{prompt}{body}\n\ndef __sig():\n{calls}\n__sig()\n"


def completion_logprobs(lm: Any, prompt: str, bodies: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log p(token | prefix) over each completion's tokens, and how many tokens that is
    (the min-NLL baseline and the consensus tie-break, spec §4). Padding is on the right, passed per
    call: the shared tokenizer may default to left padding (generation), which would shift the
    completion and score prompt tokens. Both tensors on the CPU."""
    tok = lm.tokenizer
    enc = tok([prompt + b for b in bodies], return_tensors="pt", padding=True, padding_side="right")
    plen = len(tok(prompt)["input_ids"])
    ids, mask = enc["input_ids"].to(lm.device), enc["attention_mask"].to(lm.device)
    with torch.no_grad():
        lg = lm.logits(ids, mask).float().log_softmax(-1)
    lp = torch.gather(lg[:, :-1], 2, ids[:, 1:, None]).squeeze(2) * mask[:, 1:]
    return lp[:, plen - 1:].sum(1).cpu(), mask[:, plen:].sum(1).cpu()


def load_lm(folder: Path, device: Any) -> Any:
    """The HF model, sampling with its key-value cache (issue 17 item 3): ``CausalLM.generate`` calls HF
    ``generate``, which runs only the new token per step when ``generation_config.use_cache`` is on; it is
    switched on here because a checkpoint's ``generation_config.json`` may switch it off (then every step
    re-runs the prompt and all tokens so far: the same tokens, O(T²) work)."""
    lm = load_causal_lm(folder, device)
    lm.model.generation_config.use_cache = True
    return lm


def run_full(cfg: Any, ctx: RunContext) -> Outcome:
    tmp = None
    he = Path(cfg.humaneval)
    # provenance from the locator: "paper" only when HumanEval.jsonl.gz is under the data root
    folder, ref = locate(ctx, "humaneval", str(he.parent), [he.name], humaneval.HOW,
                         fixture=lambda d: humaneval.write_fixture(d / he.name))
    probs = humaneval.read(folder / he.name)
    if ctx.dry_run:
        tmp = tempfile.TemporaryDirectory(prefix="ucoder-dry-")
        root = Path(tmp.name)
        save_tiny_random_lm(root / "model", "qwen2", max_len=1024)
        lm = load_lm(root / "model", ctx.device)
        n, max_new, timeout = 2, 8, 5.0
    else:
        if ctx.data_root is None:
            raise DataNotFoundError(f"full scale needs --data-root (or SUITE_DATA) holding {cfg.model_dir}/ and "
                                    f"{cfg.humaneval}")
        lm = load_lm(Path(ctx.data_root) / cfg.model_dir, ctx.device)
        n, max_new, timeout = cfg.full_samples, cfg.full_max_new, 5.0
    rng = np.random.default_rng(ctx.seed)
    prec = {"consensus": [], "random": [], "min_nll": [], "greedy": []}
    kept = 0
    for p in ctx.progress(probs, desc="humaneval"):
        torch.manual_seed(int(rng.integers(1 << 31)))
        bodies = [truncate(o) for o in lm.generate([p["prompt"]] * n, max_new_tokens=max_new,
                                                   temperature=cfg.temperature)]
        greedy = truncate(lm.generate([p["prompt"]], max_new_tokens=max_new, temperature=0.0)[0])
        inputs = call_inputs(p["test"])
        sigs = [tuple(sandbox_run(signature_program(p["prompt"], b, p["entry_point"], inputs), timeout).splitlines())
                for b in bodies]
        total_lp, cnt = completion_logprobs(lm, p["prompt"], bodies)
        nll, mlp = (-total_lp).numpy(), (total_lp / cnt.clamp_min(1)).numpy()
        pseudo_inputs = [[i] for i in range(len(inputs))]  # distinct inputs, for the degeneracy filter
        pick = "smallest" if cfg.variant == "anti-consensus" else "largest"  # TEST-ONLY variant honoured
        chosen = {"consensus": consensus(list(sigs), pseudo_inputs, mlp, cfg.gamma, pick=pick).chosen,
                  "random": select_random(list(sigs), pseudo_inputs, rng),
                  "min_nll": select_min_nll(list(sigs), pseudo_inputs, nll)}
        check = lambda b: sandbox_run(p["prompt"] + b + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n",  # noqa
                                      timeout) not in (ERR, TIMEOUT)
        for k, c in chosen.items():
            if c >= 0:
                prec[k].append(check(bodies[c]))
        kept += chosen["consensus"] >= 0
        prec["greedy"].append(check(greedy))
    m = {f"precision_{k}": float(np.mean(v)) if v else float("nan") for k, v in prec.items() if k != "greedy"}
    m["pass1_greedy"] = float(np.mean(prec["greedy"]))
    m["kept_frac_consensus"] = kept / len(probs)
    if tmp is not None:
        tmp.cleanup()
    return Outcome(metrics=m, dataset=ref, notes={"model_dir": cfg.model_dir, "samples": n})
