"""Prompt optimisation machinery (spec §3): instruction optimisation (IO: APE-like proposals + greedy token
mutation), exemplar selection (ES: Random, Nearest, Diversity, Random search), the two-stage IO+ES with a
split budget, and reuse of IO's validation outputs as exemplars (C2). Written against a responder with the
SimLLM interface; each full validation-set evaluation is counted against the budget m.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from .simllm import N_HINT, hint_tokens

# TEETH ONLY: wrong-outputs = the exemplar pool keeps the WRONG validation answers (gold filter inverted);
# ignores-score = IO and RS keep a random candidate instead of the best on validation.
# no-trace = the ES-RS arm's exemplars lose their reasoning trace (so it equals the no-trace arm).
Variant = Literal["correct", "wrong-outputs", "ignores-score", "no-trace"]


class BudgetExceeded(RuntimeError):
    pass


@dataclass
class Budget:
    """Counts full validation-set evaluations; refuses the (m+1)-th (spec §3: budget m)."""
    m: int
    used: int = 0

    def spend(self) -> None:
        if self.used >= self.m:
            raise BudgetExceeded(f"budget of {self.m} validation evaluations spent")
        self.used += 1


@dataclass
class Task:
    h: int
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass
class Prompt:
    instr: torch.Tensor                          # [T] token ids
    ex_x: torch.Tensor | None = None             # [1, k] shared exemplars, or [Nq, k] per query (dynamic)
    ex_y: torch.Tensor | None = None
    ex_trace: torch.Tensor | None = None         # [., k, 3] or None (exemplars without reasoning)
    nearest: "Pool | None" = None                # dynamic: k nearest pool items per query
    k: int = 0


@dataclass
class Pool:
    x: torch.Tensor
    y: torch.Tensor
    trace: torch.Tensor
    correct: torch.Tensor = field(default=None)  # bool per item (gold used only for this filter)


def make_tasks(llm, n_tasks: int, n_val: int, n_test: int, g: torch.Generator) -> list[Task]:
    """Simulated tasks: a random hidden h each; val and test drawn WITHOUT replacement (disjoint, spec §7)."""
    n_in = llm.out.shape[1]
    tasks = []
    for _ in range(n_tasks):
        # tasks the model has some sense of: h* ~ softmax(prior), so the seed prompt is right sometimes
        h = int(torch.multinomial(torch.softmax(llm.prior, 0), 1, generator=g))
        perm = torch.randperm(n_in, generator=g).to(llm.device)
        vx, tx = perm[:n_val], perm[n_val:n_val + n_test]
        tasks.append(Task(h, vx, llm.out[h, vx], tx, llm.out[h, tx]))
    return tasks


def embed(llm, x: torch.Tensor) -> torch.Tensor:
    """Input embedding for Nearest/Diversity: one-hot symbols of the input string, [N, L*V]."""
    V, L = llm.V, llm.L
    sym = torch.stack([(x // V ** (L - 1 - i)) % V for i in range(L)], 1)
    return torch.nn.functional.one_hot(sym, V).flatten(1).float()


def run_prompt(llm, p: Prompt, xs: torch.Tensor, g: torch.Generator):
    if p.nearest is not None:
        ex_x, ex_y, ex_tr = nearest_sets(llm, p.nearest, xs, p.k)
        return llm.respond(p.instr, ex_x, ex_y, ex_tr, xs, g)
    return llm.respond(p.instr, p.ex_x, p.ex_y, p.ex_trace, xs, g)


def evaluate(llm, p: Prompt, task: Task, g: torch.Generator, budget: Budget | None, split: str = "val"):
    """One full evaluation on D_val (counted) or D_test (not part of the optimisation budget)."""
    if split == "val":
        if budget is not None:
            budget.spend()
        xs, ys = task.val_x, task.val_y
    else:
        xs, ys = task.test_x, task.test_y
    pred, trace = run_prompt(llm, p, xs, g)
    return (pred == ys).float().mean().item(), pred, trace


def build_pool(task: Task, pred: torch.Tensor, trace: torch.Tensor, variant: str) -> Pool:
    """Spec §3: keep (x, model response incl. trace) where the extracted answer equals the label."""
    ok = pred == task.val_y
    keep = ~ok if variant == "wrong-outputs" else ok
    return Pool(task.val_x[keep], pred[keep], trace[keep], ok[keep])


def _pick(pool: Pool, idx: torch.Tensor, with_trace: bool, instr: torch.Tensor) -> Prompt:
    return Prompt(instr, pool.x[idx][None], pool.y[idx][None], pool.trace[idx][None] if with_trace else None,
                  k=int(idx.numel()))


def es_random(pool: Pool, k: int, instr, g: torch.Generator, with_trace: bool = True) -> Prompt:
    """ES Random: k exemplars drawn uniformly from the pool, no search."""
    k = min(k, len(pool.x))
    idx = torch.randperm(len(pool.x), generator=g, device=pool.x.device)[:k]
    return _pick(pool, idx, with_trace, instr)


def nearest_sets(llm, pool: Pool, xs: torch.Tensor, k: int):
    """ES Nearest (dynamic): per query, its k nearest pool items in embedding space (cosine)."""
    k = min(k, len(pool.x))
    e_q, e_p = embed(llm, xs), embed(llm, pool.x)
    sim = e_q @ e_p.T                                   # one-hot rows have equal norms: cosine ∝ dot
    idx = sim.topk(k, dim=1).indices                    # [Nq, k]
    return pool.x[idx], pool.y[idx], pool.trace[idx]


def es_nearest(pool: Pool, k: int, instr) -> Prompt:
    return Prompt(instr, nearest=pool, k=k)


def kmeans(x: torch.Tensor, k: int, g: torch.Generator, iters: int = 20) -> torch.Tensor:
    """Lloyd's k-means, centroids initialised at k random points; returns centroids [k, d]."""
    c = x[torch.randperm(len(x), generator=g, device=x.device)[:k]].clone()
    for _ in range(iters):
        a = torch.cdist(x, c).argmin(1)
        cnt = torch.zeros(k, device=x.device).index_add_(0, a, torch.ones(len(x), device=x.device))
        s = torch.zeros_like(c).index_add_(0, a, x)
        c = torch.where(cnt[:, None] > 0, s / cnt.clamp(min=1)[:, None], c)
    return c


def es_diversity(llm, pool: Pool, k: int, instr, g: torch.Generator) -> Prompt:
    """ES Diversity: k-means with k clusters over pool embeddings; the (distinct) member nearest each centroid."""
    k = min(k, len(pool.x))
    e = embed(llm, pool.x)
    c = kmeans(e, k, g)
    d = torch.cdist(c, e)                               # [k, n]
    chosen = []
    for j in range(k):                                  # k <= 8: greedy, distinct members
        dj = d[j].clone()
        if chosen:
            dj[torch.tensor(chosen, device=dj.device)] = float("inf")
        chosen.append(int(dj.argmin()))
    return _pick(pool, torch.tensor(chosen, device=pool.x.device), True, instr)


def es_rs(llm, task: Task, pool: Pool, k: int, instr, n_cand: int, g: torch.Generator, g_eval: torch.Generator,
          budget: Budget, variant: str, with_trace: bool = True) -> Prompt:
    """ES Random search: draw n_cand exemplar sets (same draws as es_random), evaluate each on D_val, keep the
    best. n_cand = 1 is Random."""
    best, best_acc, cands = None, -1.0, []
    for i in range(n_cand):
        p = es_random(pool, k, instr, g, with_trace)
        if n_cand == 1:
            return p
        acc, _, _ = evaluate(llm, p, task, g_eval, budget)
        cands.append(p)
        if acc > best_acc:
            best, best_acc = p, acc
    if variant == "ignores-score":
        return cands[int(torch.randint(0, len(cands), (1,), generator=g))]
    return best


def ape_propose(llm, task: Task, n_demo: int, T: int, n_filler: int, g: torch.Generator) -> torch.Tensor:
    """APE-like proposal (one optimizer-LLM call): from n_demo gold (x, y) validation demos the optimizer infers
    a posterior over h, samples one h and writes T tokens, each a hint for a random parameter of that h or
    (with prob. 1/4) a filler."""
    llm.opt_queries += 1
    d = torch.randperm(len(task.val_x), generator=g, device=task.val_x.device)[:n_demo]
    seed_instr = torch.full((T,), N_HINT, device=task.val_x.device)
    lp = llm.posterior(seed_instr, task.val_x[d][None], task.val_y[d][None], None)[0]
    h = torch.multinomial(torch.softmax(lp, 0), 1, generator=g)
    hints = hint_tokens(llm.params[h])[0]                                  # [3]
    which = torch.randint(0, 3, (T,), generator=g, device=hints.device)
    toks = hints[which]
    filler = torch.rand(T, generator=g, device=hints.device) < 0.25
    fill = N_HINT + torch.randint(0, n_filler, (T,), generator=g, device=hints.device)
    return torch.where(filler, fill, toks)


def io_optimise(llm, task: Task, m: int, T: int, n_filler: int, n_demo: int, g: torch.Generator,
                g_eval: torch.Generator, variant: str):
    """IO (spec §6): m/2 APE proposals evaluated on D_val, then greedy single-token mutation of the incumbent
    for the remaining evaluations (accept if strictly better). Returns I*, its val accuracy, and its val
    responses (for C2 reuse), and the budget."""
    budget = Budget(m)
    n_ape = max(1, m // 2)
    best, best_acc, best_out, hist = None, -1.0, None, []
    for i in range(m):
        if i < n_ape:
            cand = ape_propose(llm, task, n_demo, T, n_filler, g)
        else:
            cand = best.clone()
            pos = int(torch.randint(0, T, (1,), generator=g))
            cand[pos] = int(torch.randint(0, N_HINT + n_filler, (1,), generator=g))
        acc, pred, trace = evaluate(llm, Prompt(cand), task, g_eval, budget)
        hist.append((cand, acc, pred, trace))
        if acc > best_acc:
            best, best_acc, best_out = cand, acc, (pred, trace)
    if variant == "ignores-score":                     # TEETH: keep a random candidate, score unused
        cand, best_acc, pred, trace = hist[int(torch.randint(0, len(hist), (1,), generator=g))]
        best, best_out = cand, (pred, trace)
    return best, best_acc, best_out, budget
