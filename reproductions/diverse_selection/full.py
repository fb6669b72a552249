"""Full scale (spec §5): a processed open-instruct pool (jsonl with ``messages``, ``id``, ``dataset``),
embeddings of each example's first user turn computed offline with the paper's encoder and saved to disk,
and DEITA quality scores. The selection runs here with the official settings (k-means niter 300,
nredo 5; kMQ K = 1024 at 5 %; the iterative variant's round 0 = kM-Random with B/R at its own K); the
selected subsets are written as jsonl, the input of the paper's Llama fine-tuning, which runs outside
this suite (as do the later refinement rounds: generation with the fine-tuned model and the reward model).

Layout under the data root::

    diverse_selection/<pool_name>/data.jsonl        one example per line: messages [{role, content}], id, dataset
    diverse_selection/<pool_name>/embeddings.pt     (N, D) float tensor, row i = line i, first user turn only
    diverse_selection/<pool_name>/quality.pt        (N,) float tensor of DEITA quality scores
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from suite.context import RunContext
from suite.data.external import locate
from suite.errors import DataNotFoundError
from suite.spec import DatasetRef

from . import method as M
from .experiment import checks

HOW = ("process the pool with open-instruct prepare_train_data.sh into data.jsonl, embed each example's first "
       "user turn with e5-large-v2 into embeddings.pt (N, D) and save DEITA quality scores as quality.pt (N,) "
       "(README 'Full scale')")


def _write_fixture(folder: Path) -> None:
    """A few rows in the published format (dry runs only)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"x{i}", "dataset": "fixture", "messages": [{"role": "user", "content": f"question {i}"},
                                                                {"role": "assistant", "content": f"answer {i}"}]}
            for i in range(40)]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.save(M.hash_embeddings([r["messages"][0]["content"] for r in rows]), folder / "embeddings.pt")
    torch.save(torch.linspace(1, 5, 40), folder / "quality.pt")


def load_pool(cfg: Any, ctx: RunContext) -> tuple[dict[str, Any], DatasetRef]:
    folder, ref = locate(ctx, f"diverse-selection-{cfg.pool_name}", f"diverse_selection/{cfg.pool_name}",
                         ["data.jsonl", "embeddings.pt", "quality.pt"], HOW, fixture=_write_fixture)
    with open(folder / "data.jsonl") as fh:
        n = sum(1 for _ in fh)
    emb = torch.load(folder / "embeddings.pt", weights_only=True).float()
    qual = torch.load(folder / "quality.pt", weights_only=True).float()
    if emb.shape[0] != n or qual.shape[0] != n:
        raise DataNotFoundError(f"{folder}: data.jsonl has {n} lines but embeddings {tuple(emb.shape)} and "
                                f"quality {tuple(qual.shape)}; recompute them row for row")
    return {"folder": folder, "n": n, "emb": torch.nn.functional.normalize(emb, dim=-1), "quality": qual}, ref


def full_protocol(cfg: Any, ctx: RunContext, variant: str) -> tuple[dict[str, float], DatasetRef]:
    data, ref = load_pool(cfg, ctx)
    if ctx.dry_run:
        return {}, ref
    n = data["n"]
    x = data["emb"].to(ctx.device)
    q = data["quality"].to(ctx.device)
    budget = int(n * cfg.fraction)
    iter_budget = int(n * cfg.iter_fraction)
    out: dict[str, float] = {"n_pool": float(n)}
    sel: dict[str, torch.Tensor] = {}
    t0 = time.perf_counter()
    cl, _, inertia = M.kmeans(x, cfg.k, niter=cfg.niter, nredo=cfg.nredo, generator=ctx.generator(3))
    out["kmq_select_s"] = time.perf_counter() - t0
    sel["kmq"] = M.kmq_select(cl, cfg.k, budget, q, ctx.generator(21), variant=variant)
    out["kmq_select_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cli = cl if cfg.iter_k == cfg.k else M.kmeans(x, cfg.iter_k, niter=cfg.niter, nredo=cfg.nredo,
                                                  generator=ctx.generator(4))[0]
    sel["iterative_round0"] = M.kmrandom_select(cli, cfg.iter_k, iter_budget // cfg.rounds, ctx.generator(11))
    out["iterative_round0_select_s"] = time.perf_counter() - t0
    sel["random"] = M.random_select(n, budget, ctx.generator(31))
    out_dir = ctx.run_dir / "selected"
    out_dir.mkdir(parents=True, exist_ok=True)
    for arm, idx in sel.items():
        out[f"{arm}_size"] = float(idx.numel())
        out[f"{arm}_mean_quality"] = float(data["quality"][idx].mean())
        wanted = set(idx.tolist())
        with open(data["folder"] / "data.jsonl") as fh, open(out_dir / f"{arm}.jsonl", "w") as dst:
            for ln, line in enumerate(fh):
                if ln in wanted:
                    dst.write(line)
    torch.save({"clusters": cli.cpu(), "selected": sel["iterative_round0"], "K": cfg.iter_k,
                "rounds": cfg.rounds, "fraction": cfg.iter_fraction}, out_dir / "iterative_state.pt")
    out["kmeans_inertia"] = inertia
    out.update(checks(cfg, ctx, variant))  # spec §6's mechanism checks, on the same selector functions
    return out, ref
