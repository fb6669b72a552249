"""The evaluation protocol (spec §4-§5, official main.py/data.py/evaluate.py): per split seed the test
set is cut 10 % (D_ho: fits every calibrator) / 90 % (D_eval: every metric), the partitions are
learned anew on D_val from that split's own random initialisations (official main.py: set_seed(seed)
then calibrate, which runs train_partitions every seed), and uncalibrated, TS, ETS, GC+TS and GC+ETS
are measured on the same D_eval.
Metrics are means over splits. Also measured on D_eval: the semantic PCE (top-label PCE averaged
over fresh partitions learned on D_val with other random initialisations, never used to calibrate),
class-wise ECE, and the exactness checks of the mechanism."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from suite.metrics.calibration import brier, ece, nll, partitioned_calibration_error

from . import method as M
from .data import Predictions

METHODS = ("uncal", "ts", "ets", "gcts", "gcets", "gcts_rand")
PARTITION_STREAM, EVAL_PARTITION_STREAM, SPLIT_STREAM, SHUFFLE_STREAM = 11, 12, 13, 14


def _gen(seed: int, stream: int, i: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stream * 10_007 + i)


def partition_seed(seed: int, split: int, i: int) -> int:
    """Seed of the random initialisation of partition ``i`` of split ``split`` (run seed ``seed``): a
    deterministic hash of the three, so every split gets its own 20 draws (official: set_seed(split
    seed) before calibrate) and no two (split, partition) pairs share a stream."""
    return int(np.random.SeedSequence([seed, PARTITION_STREAM, split, i]).generate_state(1, np.uint64)[0] >> 1)


def learn_partitions(p: Predictions, cfg: Any, seed: int, n: int, stream: int, train: bool,
                     progress: Any = iter, split: int | None = None) -> torch.Tensor:
    """§3 steps 1-2: ``n`` partitions, each one L-BFGS problem from its own random W -> W (n, G, D).
    ``split`` given: the partitions of that split (initialisations seeded by ``partition_seed``);
    otherwise the run-level partitions of ``stream`` (the semantic-PCE measurement partitions)."""
    h = M.group_input(p.h_val, p.z_val, cfg.group_input)

    def gen(i: int) -> torch.Generator:
        return _gen(seed, stream, i) if split is None else torch.Generator().manual_seed(partition_seed(seed, split, i))

    Ws = [M.learn_partition(h, p.z_val, p.y_val, cfg.n_groups, gen(i), weight_decay=cfg.weight_decay,
                            max_iter=cfg.lbfgs_iter, tau_init=cfg.tau_init, train=train)[0]
          for i in progress(range(n))]
    return torch.stack(Ws)


def _chunks(n_part: int, n: int, k: int, budget: int) -> list[slice]:
    step = max(1, budget // max(1, n * k * 3))
    return [slice(i, min(i + step, n_part)) for i in range(0, n_part, step)]


def group_calibrate_chunked(z_ho: torch.Tensor, y_ho: torch.Tensor, g_ho: torch.Tensor, z_ev: torch.Tensor,
                            g_ev: torch.Tensor, n_groups: int, base: str, ets_loss: str,
                            budget: int = 1 << 26) -> torch.Tensor:
    """M.group_calibrate over chunks of partitions (bounded memory for K = 1000); same result."""
    n_part = g_ho.shape[0]
    total = None
    for sl in _chunks(n_part, max(len(y_ho), z_ev.shape[0]), z_ev.shape[1], budget):
        part = M.group_calibrate(z_ho, y_ho, g_ho[sl], z_ev, g_ev[sl], n_groups, base, ets_loss) * (sl.stop - sl.start)
        total = part if total is None else total + part
    return total / n_part


def mechanics(cfg: Any, probs: dict[str, torch.Tensor], z_ho: torch.Tensor, y_ho: torch.Tensor,
              z_ev: torch.Tensor, y_ev: torch.Tensor, g_ev: torch.Tensor, put: Any) -> None:
    """Exact checks on one split (C1, §6 smoke): the PCE family against the shared metric
    implementations (suite.metrics.calibration), and one group = global TS."""
    dev, y_np = z_ev.device, y_ev.cpu().numpy()
    pg = probs["gcts"]
    pn = pg.cpu().numpy()
    correct, conf = M.top_label_stats(pg, y_ev)
    # ECE is the PCE of the confidence-bin partition (appendix Example 1, Eq. 6)
    put("pce_bins_minus_ece_abs", abs(float(M.ece_as_pce(pg, y_ev, cfg.n_bins)) - ece(pn, y_np, cfg.n_bins)))
    # constant grouping: |mean confidence - accuracy| (appendix Example 5)
    put("pce_const_minus_marginal_abs", abs(float(M.constant_pce(pg, y_ev)) - abs(float(conf.mean() - correct.mean()))))
    # learned semantic partitions: our PCE against the shared one
    put("pce_learned_minus_shared_abs",
        abs(float(M.pce(correct, conf, g_ev)) - partitioned_calibration_error(pn, y_np, g_ev.cpu().numpy())))
    # one group (constant grouping function) reduces GC+TS to global TS
    one = M.group_calibrate(z_ho, y_ho, torch.zeros(3, len(y_ho), dtype=torch.long, device=dev), z_ev,
                            torch.zeros(3, len(y_ev), dtype=torch.long, device=dev), 1, "ts")
    put("one_group_minus_ts_abs", float((one - probs["ts"]).abs().max()))


def split_indices(n: int, ho_frac: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Official RandomSplitter: a seeded permutation, the first int(0.1 N) are D_ho, the rest D_eval."""
    perm = torch.randperm(n, generator=gen)
    n_ho = int(ho_frac * n)
    return perm[:n_ho], perm[n_ho:]


def evaluate(p: Predictions, cfg: Any, seed: int, *, n_partitions: int, n_splits: int, variant: str,
             log: Any = None, progress: Any = iter) -> dict[str, float]:
    """All methods on one prediction set; returns metrics (means over ``n_splits`` splits)."""
    dev = p.z_test.device
    G = cfg.n_groups
    W_eval = learn_partitions(p, cfg, seed, cfg.eval_partitions, EVAL_PARTITION_STREAM,
                              train=True) if cfg.eval_partitions else None
    h_test = M.group_input(p.h_test, p.z_test, cfg.group_input)
    g_sem = M.hard_groups(W_eval, h_test) if W_eval is not None else None
    shuffle_gen = _gen(seed, SHUFFLE_STREAM)
    acc: dict[str, list[float]] = {}

    def put(k: str, v: float) -> None:
        acc.setdefault(k, []).append(float(v))

    for s in progress(range(n_splits)):
        # §3 steps 1-2 for this split: its own partitions learned on D_val (official main.py loop)
        W = learn_partitions(p, cfg, seed, n_partitions, PARTITION_STREAM, train=variant != "random-groups", split=s)
        # ablation in the same run: GC+TS on the same random initialisations, untrained (no step 1)
        W_rand = learn_partitions(p, cfg, seed, n_partitions, PARTITION_STREAM, train=False, split=s)
        g_test = M.hard_groups(W, h_test)                                # (P, N_test)
        g_rand = M.hard_groups(W_rand, h_test)
        # group sizes of the calibration partitions on the test split (a degenerate partition has one group)
        put("min_group_frac", float(torch.nn.functional.one_hot(g_test, G).double().mean(1).min(1).values.mean()))
        ho, ev = split_indices(len(p.y_test), cfg.ho_frac, _gen(seed, SPLIT_STREAM, s))
        ho, ev = ho.to(dev), ev.to(dev)
        z_ho, y_ho, z_ev, y_ev = p.z_test[ho], p.y_test[ho], p.z_test[ev], p.y_test[ev]
        one_ho = torch.zeros(1, len(ho), dtype=torch.long, device=dev)
        one_ev = torch.zeros(1, len(ev), dtype=torch.long, device=dev)
        gh, ge = M.calibration_groups(g_test[:, ho], g_test[:, ev], G, variant, shuffle_gen)
        probs = {
            "uncal": torch.softmax(z_ev, 1),
            "ts": M.group_calibrate(z_ho, y_ho, one_ho, z_ev, one_ev, 1, "ts"),
            "ets": M.group_calibrate(z_ho, y_ho, one_ho, z_ev, one_ev, 1, "ets", cfg.ets_loss),
            "gcts": group_calibrate_chunked(z_ho, y_ho, gh, z_ev, ge, G, "ts", cfg.ets_loss),
            "gcets": group_calibrate_chunked(z_ho, y_ho, gh, z_ev, ge, G, "ets", cfg.ets_loss),
            "gcts_rand": group_calibrate_chunked(z_ho, y_ho, g_rand[:, ho], z_ev, g_rand[:, ev], G, "ts", cfg.ets_loss),
        }
        pred0 = z_ev.argmax(1)
        y_np = y_ev.cpu().numpy()
        sem = g_sem[:, ev].cpu().numpy() if g_sem is not None else None
        for name, pr in probs.items():
            pn = pr.cpu().numpy()
            put(f"ece_{name}", ece(pn, y_np, cfg.n_bins))
            put(f"nll_{name}", nll(pn, y_np))
            put(f"brier_{name}", brier(pn, y_np))
            put(f"acc_{name}", float((pr.argmax(1) == y_ev).double().mean()))
            put(f"cwece_{name}", float(M.classwise_ece_as_pce(pr, y_ev, cfg.n_bins)))
            # a semantic partition that nothing learned: the predicted class (top-label PCE per class)
            put(f"clspce_{name}", partitioned_calibration_error(pn, y_np, pred0.cpu().numpy()))
            if sem is not None:
                put(f"sempce_{name}", partitioned_calibration_error(pn, y_np, sem))
            if name != "uncal":
                put(f"argmax_changed_{name}", float((pr.argmax(1) != pred0).sum()))
                put(f"sum_to_one_err_{name}", float((pr.sum(1) - 1).abs().max()))
        if s == 0:
            mechanics(cfg, probs, z_ho, y_ho, z_ev, y_ev, g_test[:, ev], put)
        if log is not None and s == 0:
            log("%s split 0: " + " ".join(f"{m}={acc[f'ece_{m}'][-1]:.4f}" for m in METHODS), p.name)

    out = {k: float(np.mean(v)) for k, v in acc.items()}
    for k in [k for k in out if k.startswith("argmax_changed_")]:
        out[k] = float(np.sum(acc[k]))  # a count over all splits
    for k in ("pce_bins_minus_ece_abs", "pce_const_minus_marginal_abs", "pce_learned_minus_shared_abs",
              "one_group_minus_ts_abs") + tuple(k for k in out if k.startswith("sum_to_one_err_")):
        out[k] = float(np.max(acc[k]))
    out["argmax_changed"] = sum(out[f"argmax_changed_{m}"] for m in METHODS if m != "uncal")
    out["sum_to_one_err"] = max(out[f"sum_to_one_err_{m}"] for m in METHODS if m != "uncal")
    out["val_acc"] = float((p.z_val.argmax(1) == p.y_val).double().mean())
    out["n_test"], out["n_val"] = float(len(p.y_test)), float(len(p.y_val))
    return out
