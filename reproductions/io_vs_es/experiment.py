"""The CPU protocol (spec §6 small): every arm on every simulated task, same tasks and seed; plus the
machinery checks. All numbers are ON THE SIMULATED LLM (simllm.py)."""
from __future__ import annotations

import time

import torch

from . import method as M
from .simllm import N_HINT, SimLLM

ARMS = ("seed", "io", "es_random", "es_nearest", "es_diversity", "es_rs", "es_rs_notrace", "io_reuse", "io_es")
COLS = ("acc", "queries", "seconds")


def build_llm(cfg, ctx) -> SimLLM:
    return SimLLM(cfg.vocab, cfg.length, cfg.n_filler, cfg.beta_instr, cfg.beta_trace, cfg.eps_exemplar,
                  cfg.noise, cfg.prior_std, cfg.model_seed, ctx.device, cfg.temperature)


def cpu_protocol(cfg, ctx, variant: str) -> dict[str, float]:
    llm = build_llm(cfg, ctx)
    g = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    tasks = M.make_tasks(llm, cfg.n_tasks, cfg.n_val, cfg.n_test, g)
    seed_instr = torch.full((cfg.instr_len,), N_HINT, device=ctx.device)   # "Let's think step by step": fillers
    acc = {a: [] for a in ARMS}
    q = {a: 0 for a in ARMS}
    sec = {a: 0.0 for a in ARMS}
    checks = {"budget_overrun": 0.0, "budget_underuse": 0.0, "pool_incorrect": 0.0, "test_val_overlap": 0.0,
              "rs1_random_diff": 0.0, "diversity_not_distinct": 0.0, "nearest_err": 0.0, "nearest_static": 1.0}
    m, k = cfg.budget, cfg.k

    def test(arm, p, t0, q0):
        sec[arm] += time.perf_counter() - t0
        q[arm] += llm.queries + llm.opt_queries - q0
        a, _, _ = M.evaluate(llm, p, task, g, None, "test")
        acc[arm].append(a)

    for task in tasks:
        checks["test_val_overlap"] += float(torch.isin(task.test_x, task.val_x).sum())
        # seed instruction, no exemplars (0 optimisation queries)
        t0, q0 = time.perf_counter(), llm.queries + llm.opt_queries
        test("seed", M.Prompt(seed_instr), t0, q0)
        # ---- IO alone (m evaluations)
        t0, q0 = time.perf_counter(), llm.queries + llm.opt_queries
        I, _, (pred, trace), b = M.io_optimise(llm, task, m, cfg.instr_len, cfg.n_filler, cfg.n_demo, g, g, variant)
        checks["budget_overrun"] = max(checks["budget_overrun"], b.used - m)
        checks["budget_underuse"] = max(checks["budget_underuse"], m - b.used)
        q_io, s_io = q["io"], sec["io"]
        test("io", M.Prompt(I), t0, q0)
        q["io_reuse"] += q["io"] - q_io                           # reuse = IO's cost + nothing extra
        sec["io_reuse"] += sec["io"] - s_io
        # ---- C2: IO + its own validation outputs as exemplars (Random from IO's pool; no extra evaluation)
        t0, q0 = time.perf_counter(), llm.queries + llm.opt_queries
        pool_io = M.build_pool(task, pred, trace, variant)
        test("io_reuse", M.es_random(pool_io, k, I, g), t0, q0)
        # ---- ES with the seed instruction: the pool costs 1 evaluation
        t0, q0 = time.perf_counter(), llm.queries + llm.opt_queries
        b = M.Budget(m)
        _, pred, trace = M.evaluate(llm, M.Prompt(seed_instr), task, g, b)
        pool = M.build_pool(task, pred, trace, variant)
        t_pool, q_pool = time.perf_counter() - t0, llm.queries + llm.opt_queries - q0
        if variant == "correct":
            checks["pool_incorrect"] = max(checks["pool_incorrect"], float((~pool.correct).sum()))
        if len(pool.x) == 0:    # nothing to show: ES falls back to the seed prompt
            pool = M.Pool(task.val_x[:0], pred[:0], trace[:0], pool.correct)
        for arm, make in (("es_random", lambda: M.es_random(pool, k, seed_instr, g)),
                          ("es_nearest", lambda: M.es_nearest(pool, k, seed_instr)),
                          ("es_diversity", lambda: M.es_diversity(llm, pool, k, seed_instr, g)
                           if len(pool.x) else M.Prompt(seed_instr))):
            t1, q1 = time.perf_counter(), llm.queries + llm.opt_queries
            p = make()
            sec[arm] += t_pool
            q[arm] += q_pool
            test(arm, p, t1, q1)
            if arm == "es_diversity" and p.ex_x is not None:
                checks["diversity_not_distinct"] += float(min(k, len(pool.x)) - p.ex_x.unique().numel())
            if arm == "es_nearest" and len(pool.x) >= k:
                ex_x, _, _ = M.nearest_sets(llm, pool, task.test_x[:20], k)
                d = torch.cdist(M.embed(llm, task.test_x[:20]), M.embed(llm, pool.x))    # brute force
                eq = M.embed(llm, task.test_x[:20])
                dk = (eq[:, None] - M.embed(llm, ex_x.flatten()).view(*ex_x.shape, -1)).norm(dim=-1)
                checks["nearest_err"] = max(checks["nearest_err"],
                                            float((dk.max(1).values - d.sort(1).values[:, k - 1]).abs().max()))
                checks["nearest_static"] = min(checks["nearest_static"],
                                               float(len({tuple(r.tolist()) for r in ex_x}) <= 1))
        for arm, tr in (("es_rs", True), ("es_rs_notrace", False)):
            t1, q1 = time.perf_counter(), llm.queries + llm.opt_queries
            bb = M.Budget(m, used=1)                                 # the pool evaluation is part of m
            p = M.es_rs(llm, task, pool, k, seed_instr, m - 1, g, g, bb, variant, tr and variant != "no-trace") if len(pool.x) \
                else M.Prompt(seed_instr)
            sec[arm] += t_pool
            q[arm] += q_pool
            test(arm, p, t1, q1)
            checks["budget_overrun"] = max(checks["budget_overrun"], bb.used - m)
        # RS with one candidate == Random (same generator state)
        if len(pool.x):
            s = g.get_state()
            p1 = M.es_random(pool, k, seed_instr, g)
            g.set_state(s)
            p2 = M.es_rs(llm, task, pool, k, seed_instr, 1, g, g, M.Budget(1), variant)
            checks["rs1_random_diff"] = max(checks["rs1_random_diff"], float((p1.ex_x != p2.ex_x).sum()))
        # ---- IO + ES, budget split m1 / m2 (spec §3 two-stage)
        t0, q0 = time.perf_counter(), llm.queries + llm.opt_queries
        m1 = cfg.budget_io_share
        I2, _, (pred, trace), b1 = M.io_optimise(llm, task, m1, cfg.instr_len, cfg.n_filler, cfg.n_demo, g, g,
                                                 variant)
        pool2 = M.build_pool(task, pred, trace, variant)          # I*'s val outputs: no extra evaluation
        b2 = M.Budget(m - m1)
        p = M.es_rs(llm, task, pool2, k, I2, m - m1, g, g, b2, variant) if len(pool2.x) else M.Prompt(I2)
        checks["budget_overrun"] = max(checks["budget_overrun"], b1.used + b2.used - m)
        test("io_es", p, t0, q0)

    out = summarise(ARMS, acc, q, sec, len(tasks))
    out.update(checks)
    return out


def summarise(arms, acc: dict[str, list[float]], queries: dict[str, float], seconds: dict[str, float],
              n_tasks: int) -> dict[str, float]:
    """Per arm: mean test accuracy over tasks, queries per task, seconds; and the claims' differences
    (shared by the simulated CPU protocol and the BBH full scale)."""
    out: dict[str, float] = {}
    for a in arms:
        out[f"acc/{a}"] = sum(acc[a]) / len(acc[a])
        out[f"queries/{a}"] = queries[a] / n_tasks
        out[f"seconds/{a}"] = seconds[a]
    out["io_es_minus_best_single"] = out["acc/io_es"] - max(out["acc/io"], out["acc/es_rs"])
    out["io_gain_over_seed"] = out["acc/io"] - out["acc/seed"]
    out["rs_gain_over_random"] = out["acc/es_rs"] - out["acc/es_random"]
    out["trace_gain"] = out["acc/es_rs"] - out["acc/es_rs_notrace"]
    return out
