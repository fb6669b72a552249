"""One run of the CPU protocol (spec §6, an LLM-FREE simulation): direct sampling, TreeSynth, an
Evol-style perturbation of direct and direct rebalanced into TreeSynth's leaves, each N samples;
cell coverage, diversity, generator calls and seconds; a tiny answer predictor (suite MLP trained
with suite.train.fit, same steps for every arm) scored on a cell-uniform test set; plus the smoke
mechanism checks (leaves exclusive + exhaustive, leaf count, 2**k sample sets, validator)."""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from suite.context import RunContext
from suite.models import MLP
from suite.train import TrainConfig, fit

from . import method as M

ARMS = ("treesynth", "direct", "evol", "rebalanced")
COLS = ("coverage", "diversity", "cell_entropy", "acc", "calls", "seconds", "train_steps")


def _llm(cfg: Any, ctx: RunContext, offset: int) -> M.SimLLM:
    # the same mode-collapsed model for every arm: the favourite-value order comes from the seed only
    llm = M.SimLLM(cfg.zipf_s, cfg.follow, ctx.generator(0), torch.device("cpu"), cfg.infinite_draw)
    llm.gen = ctx.generator(offset)
    return llm


def treesynth(cfg: Any, ctx: RunContext, n: int, variant: str, offset: int) -> tuple[M.Dataset, dict[str, Any]]:
    """Build the tree (spec §3) and generate leaf data in rounds until >= n, then keep n uniformly."""
    llm = _llm(cfg, ctx, offset)
    root, leaves, st = M.build_tree(llm, max_depth=cfg.max_depth, pivots_per_node=cfg.samples_per_node,
                                    infinite_threshold=cfg.infinite_threshold, retries=cfg.retries, variant=variant)
    per_round = sum(min(cfg.max_sets, max(1, cfg.infinite_base ** lf.n_infinite())) for lf in leaves) \
        * cfg.samples_per_node
    rounds = max(1, math.ceil(n / per_round))
    data, owner, capped = M.generate_leaves(llm, leaves, samples_per_set=cfg.samples_per_node,
                                            infinite_base=cfg.infinite_base, max_sets=cfg.max_sets,
                                            variant=variant, rounds=rounds)
    keep = torch.randperm(len(data), generator=llm.gen)[:n]
    return data.subset(keep), {"leaves": leaves, "stats": st, "calls": llm.calls, "rounds": rounds,
                               "capped": capped, "owner": owner[keep], "full": data, "full_owner": owner}


def cell_stats(data: M.Dataset) -> dict[str, float]:
    counts = torch.bincount(M.cell_index(data.attrs), minlength=M.N_CELLS)
    return {"coverage": float((counts > 0).sum()), "cell_entropy": M.entropy_bits(counts)}


def diversity(data: M.Dataset, cfg: Any, gen: torch.Generator) -> float:
    """Mean pairwise cosine distance of a sample's embeddings: MiniLM (spec §4/§6, needs the [embed]
    extra) when cfg.minilm, else of the slot-token bag (core install, smoke)."""
    idx = torch.randperm(len(data), generator=gen)[: cfg.div_n]
    sub = data.subset(idx)
    if cfg.minilm:
        from suite.data.embed import embed
        e = F.normalize(embed(M.render(sub.attrs, sub.xa, sub.xb)).float(), dim=-1)
    else:
        e = F.normalize(F.one_hot(M.slot_tokens(sub.attrs, sub.xa, sub.xb), M.VOCAB).sum(1).float(), dim=-1)
    return mean_cosine_distance(e)


def mean_cosine_distance(e: torch.Tensor) -> float:
    """1 - mean off-diagonal cosine similarity of (K, D) embeddings."""
    e = F.normalize(e, dim=-1)
    sim = e @ e.T
    k = e.shape[0]
    return float(1 - (sim.sum() - sim.diagonal().sum()) / (k * (k - 1)))


def test_set(cfg: Any, gen: torch.Generator) -> M.Dataset:
    """Cell-uniform test set: every one of the 2,304 cells test_per_cell times, random operands."""
    cells = M.all_cells().repeat(cfg.test_per_cell, 1)
    n = cells.shape[0]
    return M.Dataset(cells, torch.randint(M.N_OPERANDS, (n,), generator=gen),
                     torch.randint(M.N_OPERANDS, (n,), generator=gen))


def train_eval(data: M.Dataset, test: M.Dataset, cfg: Any, ctx: RunContext, name: str) -> dict[str, float]:
    """Tiny answer predictor: an MLP over the one-hot template-slot tokens predicts the answer's last
    digit (answer mod 10, exact integer answers); accuracy on the cell-uniform test set."""
    def feats(d: M.Dataset) -> torch.Tensor:
        return F.one_hot(M.slot_tokens(d.attrs, d.xa, d.xb), M.VOCAB).flatten(1).float()

    x, y = feats(data), M.answers(data.attrs, data.xa, data.xb).remainder(10)
    torch.manual_seed(ctx.seed)
    model = MLP(x.shape[1], [cfg.hidden, cfg.hidden], 10)
    tc = TrainConfig(steps=cfg.train_steps, batch_size=cfg.batch, lr=cfg.lr, optimizer="adamw",
                     weight_decay=cfg.weight_decay, log_every=0, bf16=False)
    t0 = time.perf_counter()
    res = fit(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), (x, y), tc, ctx=ctx, name=name)
    secs = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        xt = feats(test).to(ctx.device)
        pred = model(xt).argmax(-1).cpu()
    yt = M.answers(test.attrs, test.xa, test.xb).remainder(10)
    return {"acc": float((pred == yt).float().mean() * 100), "train_steps": float(res.step), "train_s": secs}


def make_arms(cfg: Any, ctx: RunContext, n: int, variant: str, offset: int) -> tuple[dict[str, M.Dataset],
                                                                                        dict[str, float], dict]:
    data: dict[str, M.Dataset] = {}
    cost: dict[str, float] = {}
    t0 = time.perf_counter()
    ts, info = treesynth(cfg, ctx, n, variant, offset)
    data["treesynth"], cost["treesynth_calls"], cost["treesynth_seconds"] = ts, info["calls"], time.perf_counter() - t0
    t0 = time.perf_counter()
    llm = _llm(cfg, ctx, offset + 1)
    data["direct"] = llm.generate(n)  # vanilla sampling from the same generator, no constraints
    cost["direct_calls"], cost["direct_seconds"] = llm.calls, time.perf_counter() - t0
    if n == cfg.n_samples:
        t0 = time.perf_counter()
        data["evol"] = M.evolve(llm, data["direct"], ctx.generator(offset + 2))
        cost["evol_calls"], cost["evol_seconds"] = llm.calls, cost["direct_seconds"] + time.perf_counter() - t0
        t0 = time.perf_counter()
        own = M.leaf_of(info["leaves"], data["direct"])
        # a direct sample that matches no leaf path (a dimension value outside the tree) is dropped
        has = own.any(1)
        owner = own.float().argmax(1)
        idx = M.rebalance(owner[has], len(info["leaves"]), n, ctx.generator(offset + 3))
        data["rebalanced"] = data["direct"].subset(has.nonzero()[:, 0][idx])
        # classifying each existing sample into a leaf: one request per 10 samples (spec §3 rebalancing)
        cost["rebalanced_calls"] = cost["direct_calls"] + info["calls"] + math.ceil(n / cfg.samples_per_node)
        cost["rebalanced_seconds"] = cost["direct_seconds"] + cost["treesynth_seconds"] + time.perf_counter() - t0
    return data, cost, info


def checks(cfg: Any, info: dict, ctx: RunContext) -> dict[str, float]:
    """Spec §6 smoke checks on the run's own tree."""
    leaves, st = info["leaves"], info["stats"]
    out: dict[str, float] = {"n_leaves": float(st.leaves), "n_internal": float(st.internal),
                             "n_infinite_nodes": float(st.infinite), "capped_leaves": float(info["capped"]),
                             "pivot_leaves": float(st.pivot_leaves), "leaf_rounds": float(info["rounds"])}
    # leaves mutually exclusive + jointly exhaustive over the catalogue: every cell in exactly one leaf
    own = M.leaf_of(leaves, M.Dataset(M.all_cells(), torch.zeros(M.N_CELLS, dtype=torch.long),
                                      torch.zeros(M.N_CELLS, dtype=torch.long)))
    out["cells_not_in_one_leaf"] = float((own.sum(1) != 1).sum())
    # ... and every generated sample lands in exactly one leaf path
    own_d = M.leaf_of(leaves, info["full"])
    out["samples_not_in_one_leaf"] = float((own_d.sum(1) != 1).sum())
    # leaf count == product of the non-infinite value counts along the tree's dimensions
    # leaf count == product of the non-infinite value counts (per branch: sum over leaves of
    # 1 / prod(non-infinite value counts on the path) == 1; equals n_leaves / prod when branches share dims)
    inv = sum(1.0 / math.prod(M.SIZES[n.dim] for n in lf.path() if n.values is None) for lf in leaves)
    out["leaf_count_err"] = abs(inv - 1.0) if st.pivot_leaves == 0 else float("nan")
    # the regions' cell counts sum to the 2,304 cells (a volume check that holds for any tree shape)
    vol = [math.prod(len(n.values) if n.values is not None else 1 for n in lf.path())
           * math.prod(s for d, s in enumerate(M.SIZES) if d not in {n.dim for n in lf.path()}) for lf in leaves]
    out["leaf_volume_err"] = float(abs(sum(vol) - M.N_CELLS))
    # a leaf with k infinite nodes issues base**k sample sets per round
    per_leaf = torch.bincount(info["full_owner"], minlength=len(leaves)).float()
    want = torch.tensor([min(cfg.max_sets, max(1, cfg.infinite_base ** lf.n_infinite())) for lf in leaves],
                        dtype=torch.float) * cfg.samples_per_node * info["rounds"]
    out["sample_sets_err"] = float((per_leaf - want).abs().max())
    out["max_infinite_on_path"] = float(max(lf.n_infinite() for lf in leaves))
    # the validator rejects a mapping that misses a pivot index, accepts a complete one
    good = {0: list(range(0, cfg.samples_per_node, 2)), 1: list(range(1, cfg.samples_per_node, 2))}
    bad = {0: list(range(0, cfg.samples_per_node - 1))}
    dup = {0: list(range(cfg.samples_per_node)), 1: [0]}
    out["validator_errors"] = float((not M.validate_mapping(good, cfg.samples_per_node))
                                    + M.validate_mapping(bad, cfg.samples_per_node)
                                    + M.validate_mapping(dup, cfg.samples_per_node))
    return out


def cpu_protocol(cfg: Any, ctx: RunContext, variant: str) -> dict[str, float]:
    n = cfg.n_samples
    data, cost, info = make_arms(cfg, ctx, n, variant, offset=10)
    out: dict[str, float] = {**checks(cfg, info, ctx), **cost}
    test = test_set(cfg, ctx.generator(99))
    for arm, d in data.items():
        row = {**cell_stats(d), "diversity": diversity(d, cfg, ctx.generator(7))}
        if cfg.train_steps > 0:
            row.update(train_eval(d, test, cfg, ctx, f"mlp-{arm}"))
        ctx.log("treesynth: arm %s %s", arm, {k: round(v, 4) for k, v in row.items()})
        out.update({f"{arm}_{k}": v for k, v in row.items()})
    out["coverage_ratio_vs_direct"] = out["treesynth_coverage"] / max(out["direct_coverage"], 1.0)
    out["diversity_gain_vs_direct"] = out["treesynth_diversity"] - out["direct_diversity"]
    out["diversity_gain_vs_evol"] = out["treesynth_diversity"] - out["evol_diversity"]
    if cfg.train_steps > 0:
        out["acc_gain_vs_direct"] = out["treesynth_acc"] - out["direct_acc"]
        out["acc_gain_vs_evol"] = out["treesynth_acc"] - out["evol_acc"]
        out["rebalanced_gain_vs_direct"] = out["rebalanced_acc"] - out["direct_acc"]
        if cfg.n_scale_small > 0:  # spec §6 scaling: 1k -> N for TreeSynth vs direct
            small, _, _ = make_arms(cfg, ctx, cfg.n_scale_small, variant, offset=20)
            for arm in ("treesynth", "direct"):
                r = train_eval(small[arm], test, cfg, ctx, f"mlp-{arm}-small")
                out[f"{arm}_acc_at_{cfg.n_scale_small}"] = r["acc"]
                out[f"{arm}_scaling_gain"] = out[f"{arm}_acc"] - r["acc"]
            out["scaling_gain_diff"] = out["treesynth_scaling_gain"] - out["direct_scaling_gain"]
    return out
