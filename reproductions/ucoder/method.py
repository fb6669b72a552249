"""IPC (UCoder, Wu et al. 2025, arXiv 2512.17385), stages 4–5 (spec §3): execution signatures,
consensus clustering with the confidence and degeneracy filters, the baselines' selection rules
(random executable candidate, minimum NLL), the representation probe (C4) and a subprocess sandbox
for Python candidates (full scale)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from suite import sandbox

from .dsl import ERR

TIMEOUT = "TIMEOUT"


def canonical(out: object) -> str:
    """Canonical repr before hashing (spec §7): sets sorted, floats rounded."""
    if isinstance(out, float):
        return repr(round(out, 6))
    if isinstance(out, (set, frozenset)):
        return "{" + ",".join(sorted(canonical(o) for o in out)) + "}"
    if isinstance(out, (list, tuple)):
        return "[" + ",".join(canonical(o) for o in out) + "]"
    return repr(out)


def signature(run: Callable[[list[int]], object], inputs: Sequence[list[int]]) -> tuple[str, ...]:
    """σ(c) = (out(c, t_1), …, out(c, t_m)); exceptions are the symbolic output ERR (§3 stage 4)."""
    return tuple(canonical(run(x)) for x in inputs)


def degenerate(sig: tuple[str, ...], inputs: Sequence[list[int]]) -> bool:
    """§3/§7: all outputs are errors, or one output for every distinct input (a constant function)."""
    if all(s in (repr(ERR), repr(TIMEOUT)) for s in sig):
        return True
    distinct_inputs = len({tuple(x) for x in inputs}) > 1
    return distinct_inputs and len(set(sig)) == 1


@dataclass
class Selection:
    chosen: int            # candidate index (−1: problem dropped)
    confidence: float      # |K*| / N
    cluster: np.ndarray    # member indices of K*


def consensus(sigs: list[tuple[str, ...]], inputs: Sequence[list[int]], mean_logp: np.ndarray,
              gamma: float, score: np.ndarray | None = None, pick: str = "largest") -> Selection:
    """§3 stage 5: group by identical signature, K* = largest non-degenerate group (ties: higher mean
    token log-prob); keep when |K*|/N ≥ γ; pick the top-1 of K* by ``score`` (the representation
    probe) or by mean log-prob. ``pick="smallest"`` is a TEST-ONLY broken variant (anti-consensus)."""
    n = len(sigs)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(sigs):
        groups.setdefault(s, []).append(i)
    valid = [(len(g), float(mean_logp[g].mean()), k) for k, g in groups.items() if not degenerate(k, inputs)]
    if not valid:
        return Selection(-1, 0.0, np.array([], dtype=int))
    key = (lambda t: (t[0], t[1])) if pick == "largest" else (lambda t: (-t[0], t[1]))
    _, _, best = max(valid, key=key)
    members = np.array(groups[best])
    conf = len(members) / n
    if conf < gamma and pick == "largest":
        return Selection(-1, conf, members)
    s = score[members] if score is not None else mean_logp[members]
    return Selection(int(members[int(np.argmax(s))]), conf, members)


def select_random(sigs: list[tuple[str, ...]], inputs: Sequence[list[int]], rng: np.random.Generator) -> int:
    """Baseline: a random candidate among those that run on every input without error (and are not
    degenerate); −1 if there is none."""
    ok = [i for i, s in enumerate(sigs) if repr(ERR) not in s and not degenerate(s, inputs)]
    return int(rng.choice(ok)) if ok else -1


def select_min_nll(sigs: list[tuple[str, ...]], inputs: Sequence[list[int]], nll: np.ndarray) -> int:
    """Baseline: the executable, non-degenerate candidate with the lowest NLL; −1 if none."""
    ok = [i for i, s in enumerate(sigs) if repr(ERR) not in s and not degenerate(s, inputs)]
    return int(min(ok, key=lambda i: nll[i])) if ok else -1


def fit_probe(feats: np.ndarray, labels: np.ndarray, steps: int = 300, lr: float = 0.5,
              l2: float = 1e-3) -> Callable[[np.ndarray], np.ndarray]:
    """Representation-based quality estimate (§3 stage 5, C4): L2-regularised logistic-regression probe on
    standardised mean-pooled final hidden states, trained on pseudo-labels (member of K* or not) by
    full-batch gradient descent. Returns the scoring function (logits)."""
    y = labels.astype(np.float64)
    if y.min() == y.max():
        return lambda f: np.zeros(len(f))
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    x = (feats - mu) / sd
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):  # convex problem, vectorised over samples
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        g = p - y
        w -= lr * (x.T @ g / len(y) + l2 * w)
        b -= lr * float(g.mean())
    return lambda f: ((f - mu) / sd) @ w + b


def sandbox_run(code: str, timeout: float = 2.0) -> str:
    """Run Python ``code`` in the shared subprocess sandbox (``suite.sandbox``); stdout, ERR or TIMEOUT.
    Full scale executes model-written code: run it only inside a container/VM."""
    r = sandbox.run(code, timeout)
    return TIMEOUT if r.status == "timeout" else (r.stdout.strip() if r.status == "ok" else ERR)
