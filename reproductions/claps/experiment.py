"""CPU protocol (spec §6): exact checks on the analytic stub (A) and the arm comparison on the tiny frozen
transformer classifier (B): ClaPS vs full-vocabulary greedy, random pruning to the same size, random search
at ClaPS's query budget, all in one run on the same black box, data and train batch."""
from __future__ import annotations

import math
import time

import torch

from .method import (BlackBox, EMPTY, accuracy, claps, empty_prompts, greedy_search, influence,
                     prune_top_percentile, random_prune, random_search, reward, top_share)
from .toy import NEG, POS, build_tiny, make_stub

ARMS = ("claps", "full_greedy", "random_prune", "random_search", "empty")
COLS = ("acc", "val_acc", "queries", "space", "seconds")


# ------------------------------------------------------------------------------------------- (A) checks
def stub_checks(cfg) -> dict[str, float]:  # noqa: ANN001
    m: dict[str, float] = {}
    # percentile pruning keeps ceil(10%) of distinct values (n = 200, 1867 (Flan-T5-base reps), 2000)
    err = 0.0
    for n in (200, 1867, 2000):
        v = torch.arange(n)
        x = torch.randn(n, generator=torch.Generator().manual_seed(n))
        err += abs(prune_top_percentile(v, x, 90.0).numel() - math.ceil(0.1 * n))
    m["check_prune_kept_err"] = err
    # strict '>': ties at the cutoff are dropped
    tied = torch.cat([torch.zeros(95), torch.ones(5)])
    flat = torch.ones(100)
    m["check_prune_tie_err"] = float(abs(prune_top_percentile(torch.arange(100), tied, 90.0).numel() - 5)
                                     + prune_top_percentile(torch.arange(100), flat, 90.0).numel())
    # double-softmax cross-entropy reward on hand tensors: logits (1, 2, 2), labels (0, 1)
    lg = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    lab = torch.tensor([0, 1])
    p1 = [math.exp(2) / (math.exp(2) + 1), math.exp(1) / (1 + math.exp(1))]       # softmax of the true class
    # second softmax over (p_true, 1 - p_true): log(e^p / (e^p + e^(1-p)))
    want = sum(p - math.log(math.exp(p) + math.exp(1 - p)) for p in p1) / 2
    want_single = (math.log(p1[0]) + math.log(p1[1])) / 2
    m["check_ce_double_softmax_err"] = abs(float(reward(lg, lab, "cross_entropy")) - want) \
        + abs(float(reward(lg, lab, "ce_correct")) - want_single)
    # the analytic stub: a query counter, exact greedy cost, influence ordering = a ordering
    stub = make_stub(cfg.stub_vocab, cfg.stub_families, pareto_alpha=cfg.stub_alpha, n=2 * cfg.shots)
    bb = BlackBox(stub.logits, chunk=cfg.chunk)
    bb.logits(empty_prompts(7, cfg.prompt_len), "train")
    m["check_query_counter_err"] = float(abs(bb.queries - 7) + abs(bb.examples - 7 * 2 * cfg.shots))
    vocab = torch.arange(cfg.stub_vocab)
    res = claps(bb, stub.emb, vocab, stub.y["train"], n_clusters=cfg.stub_clusters, percentile=cfg.percentile,
                length=cfg.prompt_len, kind=cfg.reward_type, kmeans_seed=cfg.kmeans_seed)
    q_before = bb.queries
    prompt, _ = greedy_search(bb, res.pruned, stub.y["train"], cfg.prompt_len, cfg.reward_type)
    m["check_greedy_calls_err"] = float(abs(bb.queries - q_before - cfg.prompt_len * res.pruned.numel())
                                        + (prompt == EMPTY).sum() + abs(prompt.shape[1] - cfg.prompt_len))
    k = res.pruned.numel()
    top_by_a = res.reps[stub.a[res.reps].argsort(descending=True)[:k]]
    m["check_stub_prune_recall"] = float(torch.isin(res.pruned, top_by_a).float().mean())
    m["stub_top10_share"] = top_share(stub.a[res.reps])
    m["stub_reps"] = float(res.reps.numel())
    m["stub_pruned"] = float(k)
    # greedy on the stub appends the single most influential pruned token each round (it may repeat)
    best = res.pruned[stub.a[res.pruned].argmax()]
    m["check_stub_greedy_best"] = float((prompt == best).all())
    return m


# ------------------------------------------------------------------------------------------ (B) the arms
def tiny_arms(cfg, ctx) -> dict[str, float]:  # noqa: ANN001
    task = build_tiny(cfg, ctx, ctx.seed, cfg.n_test)
    if ctx.dry_run:
        return {}
    bb = BlackBox(task.logits, chunk=cfg.chunk)
    (_, ytr), (_, yval), (_, yte) = task.data["train"], task.data["val"], task.data["test"]
    cand = task.candidates()
    L, kind = cfg.prompt_len, cfg.reward_type
    m: dict[str, float] = {"verbalizers_in_vocab": float(torch.isin(torch.tensor([NEG, POS], device=cand.device),
                                                                     cand).all())}

    def finish(arm: str, prompt: torch.Tensor, q0: int, t0: float, space: int) -> None:
        m[f"val_acc/{arm}"] = float(accuracy(bb.logits(prompt, "val"), yval)[0])     # §3.5: one val query
        m[f"seconds/{arm}"] = time.perf_counter() - t0
        m[f"queries/{arm}"] = float(bb.queries - q0)
        m[f"space/{arm}"] = float(space)
        m[f"acc/{arm}"] = float(accuracy(task.logits(prompt, "test"), yte)[0])      # test: not a search query
        m[f"has_key/{arm}"] = float(torch.isin(prompt, task.key_ids).any())

    # ClaPS: cluster -> influence on the train batch -> prune -> greedy (variant breaks one step)
    q0, t0 = bb.queries, time.perf_counter()
    res = claps(bb, task.embeddings(cand), cand, ytr, n_clusters=cfg.n_clusters, percentile=cfg.percentile,
                length=L, kind=kind, kmeans_seed=cfg.kmeans_seed, variant=cfg.variant)
    claps_train_queries = bb.queries - q0
    finish("claps", res.prompt, q0, t0, res.pruned.numel())
    m["n_candidates"] = float(cand.numel())
    m["n_reps"] = float(res.reps.numel())
    m["n_pruned"] = float(res.pruned.numel())
    m["keys_in_reps"] = float(torch.isin(res.reps, task.key_ids).sum())
    m["keys_in_pruned"] = float(torch.isin(res.pruned, task.key_ids).sum())
    m["top10_share"] = top_share(res.influence)
    # influence of every candidate (not a search cost; the sensitivity picture of C1, spec §5 figure)
    probe = BlackBox(task.logits, chunk=cfg.chunk)
    m["top10_share_all"] = top_share(influence(probe, cand, ytr, L, kind))

    # full-vocabulary greedy (§4): the same greedy over every candidate token
    q0, t0 = bb.queries, time.perf_counter()
    prompt, _ = greedy_search(bb, cand, ytr, L, kind)
    finish("full_greedy", prompt, q0, t0, cand.numel())

    # random pruning of the cluster representatives to the same kept fraction (§4), averaged over draws
    gen = torch.Generator().manual_seed(ctx.seed * 101 + 7)
    draws: dict[str, list[float]] = {}
    for _ in range(cfg.random_prune_draws):
        q0, t0 = bb.queries, time.perf_counter()
        pruned = random_prune(res.reps, cfg.percentile, gen)
        prompt, _ = greedy_search(bb, pruned, ytr, L, kind)
        finish("random_prune", prompt, q0, t0, pruned.numel())
        for c in COLS + ("has_key",):
            draws.setdefault(c, []).append(m[f"{c}/random_prune"])
    for c, v in draws.items():
        m[f"{c}/random_prune"] = sum(v) / len(v)

    # random search with ClaPS's train-batch query budget over the full vocabulary
    q0, t0 = bb.queries, time.perf_counter()
    prompt = random_search(bb, cand, ytr, L, kind, claps_train_queries, gen)
    finish("random_search", prompt, q0, t0, cand.numel())

    # the empty prompt (reference: what the frozen model does without a prompt)
    q0, t0 = bb.queries, time.perf_counter()
    finish("empty", empty_prompts(1, L, cand.device), q0, t0, 0)

    m["gap_vs_random_prune"] = m["acc/claps"] - m["acc/random_prune"]
    m["gap_vs_full_greedy"] = m["acc/claps"] - m["acc/full_greedy"]
    m["query_ratio_vs_full_greedy"] = m["queries/claps"] / m["queries/full_greedy"]
    m["seconds_ratio_vs_full_greedy"] = m["seconds/claps"] / max(m["seconds/full_greedy"], 1e-9)
    m["total_queries"] = float(bb.queries)
    return m
