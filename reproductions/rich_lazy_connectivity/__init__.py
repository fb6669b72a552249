"""rich_lazy_connectivity: Liu, Baratin, Cornford, Mihalas, Shea-Brown, Lajoie, *How connectivity structure
shapes rich and lazy learning in neural circuits* (ICLR 2024, arXiv 2310.08513).

ReLU RNNs whose initial recurrent weights are norm-matched rank-r truncations of a Gaussian W0 are trained on a
perceptual decision task; weight change, representation alignment and tangent-kernel alignment between start
and end of training are measured per rank. Baseline: the standard full-rank random init (rank = N) at equal
budget. See README.md.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Annotated

import torch

from suite.config import Range
from suite.context import RunContext
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources, Table, curve_metrics
from suite.train import TrainConfig, fit

from . import method as M
from .method import NtkSteps, Variant

TASK_REF = DatasetRef("procedural-2AF", "stand-in")


@dataclass
class Config:
    n_hidden: Annotated[int, Range(2)] = 300
    ranks: tuple[Annotated[int, Range(1)], ...] = (1, 10, 30, 300)       # last = N: the full-rank baseline
    gain: Annotated[float, Range(0, open_lo=True)] = 1.25
    alpha: Annotated[float, Range(0, 1, open_lo=True)] = 1.0   # dt / tau (= 1 for neurogym, dt = tau = 100 ms)
    seq_len: Annotated[int, Range(2)] = 8
    noise: Annotated[float, Range(0)] = 0.31622776601683794   # 0.1 * sqrt(10)
    steps: Annotated[int, Range(1)] = 2000
    batch_size: Annotated[int, Range(1)] = 32
    lr: Annotated[float, Range(0, open_lo=True)] = 0.003
    momentum: Annotated[float, Range(0, 1)] = 0.9
    n_probe: Annotated[int, Range(2)] = 320           # 10 x 32 probe trials, drawn before training
    n_kernel: Annotated[int, Range(1)] = 32           # trials for the tangent kernel (first of the probe)
    ntk_steps: NtkSteps = "all"                       # kernel rows: every time step (main.py) or the decision step
    n_eval: Annotated[int, Range(1)] = 1024           # fresh trials for final loss / accuracy
    variant: Variant = "correct"                      # TEETH ONLY

    def validate(self) -> None:
        if not self.ranks or any(r < 1 or r > self.n_hidden for r in self.ranks):
            raise ConfigError(f"ranks={self.ranks} must lie in [1, n_hidden={self.n_hidden}]")
        if list(self.ranks) != sorted(set(self.ranks)) or self.ranks[-1] != self.n_hidden:
            raise ConfigError(f"ranks={self.ranks} must be strictly increasing and end at n_hidden (the baseline)")


SCALES = {
    "smoke": {"n_hidden": 64, "ranks": (1, 64), "steps": 300, "n_probe": 128, "n_kernel": 16, "n_eval": 256},
    "small": {},
    # paper §3: N = 300, ranks {1, 30, 100, 300}, SGD momentum 0.9, lr 0.003, 10k iterations, batch 32
    "full": {"ranks": (1, 30, 100, 300), "steps": 10000},
}

CLAIMS = [
    Claim(id="C1-lowrank-richer", kind="paper", teeth="rank-ignored", metric="dw_ratio_rank1_vs_full", op=">=",
          ref=1.2, scales=("small", "full"),
          text="spec §6: weight change ||W_hh(T)-W_hh(0)||_F at rank 1 is >= 1.2x that of the full-rank baseline"),
    Claim(id="C1-dw-decreasing", kind="paper", teeth="rank-ignored", metric="dw_min_decrease", op=">", ref=0.0,
          scales=("small", "full"),
          text="weight change strictly decreases with initial rank (smallest step down along the rank sweep > 0)"),
    Claim(id="C1-rep-align-gain", kind="paper", teeth="rank-ignored", metric="rep_align_gain", op=">", ref=0.0,
          scales=("small", "full"),
          text="representation alignment (start vs end) of the full-rank baseline exceeds that of rank 1"),
    Claim(id="C1-kernel-align-gain", kind="paper", teeth="rank-ignored", metric="kernel_align_gain", op=">",
          ref=0.0, scales=("small", "full"),
          text="tangent-kernel alignment (start vs end) is higher for the full-rank baseline than for rank 1"),
    Claim(id="C1-trained", kind="paper", teeth="untrained", metric="loss_drop_min", op=">=", ref=0.5,
          scales=("smoke", "small", "full"),
          text="every rank is trained: final loss <= half of the initial loss (laziness compared on trained nets)"),
    Claim(id="equal-performance", kind="check", metric="loss_spread", op="<=", ref=0.02, scales=("small", "full"),
          text="spec §6: final losses of all ranks within 0.02 of each other (laziness compared at matched loss)"),
    Claim(id="truncation-rank", kind="check", metric="rank_error", op="==", ref=0.0,
          text="the truncated-SVD init has numerical rank r"),
    Claim(id="norm-matched", kind="check", metric="norm_rel_error", op="<=", ref=1e-6,
          text="the rank-r init has the Frobenius norm of W0"),
    Claim(id="self-alignment", kind="check", metric="self_align_error", op="<=", ref=1e-6,
          text="alignment of a Gram matrix with itself = 1"),
]


def _init_w(cfg: Config, w0: torch.Tensor, r: int) -> torch.Tensor:
    if cfg.variant == "rank-ignored":  # TEETH: rank control ignored, every 'rank' gets the full-rank W0
        return w0.clone()
    return M.low_rank_init(w0, r)


STREAM_OFFSET = 100   # ctx.generator offset of the one trial stream (probe + every rank's training)
READOUT_OFFSET = 200  # ctx.generator offset (+ rank index) of each rank's W_in / W_out draw


class TrialStream:
    """The one procedural-2AF trial stream of a run. Official main.py draws everything from one neurogym
    ``dataset()``: first the 10 probe batches (``inputs0``), then, rank after rank in ``var_list`` order, the
    ``n_iter`` training batches of each rank, the stream continuing across ranks. Callable as fit's data
    (step -> batch) and stateful (fit carries its state in a checkpoint when checkpointing is on)."""

    def __init__(self, cfg: Config, gen: torch.Generator) -> None:
        self.cfg, self.gen = cfg, gen

    def __call__(self, step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return M.make_2af(self.cfg.batch_size, self.gen, self.cfg.seq_len, self.cfg.noise)

    def probe(self, n: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n trials of the stream, drawn as ceil(n / batch_size) batches (main.py: 10 x dataset())."""
        chunks = [self() for _ in range(-(-n // self.cfg.batch_size))]
        return (torch.cat([c[0] for c in chunks], 1)[:, :n].to(device),
                torch.cat([c[1] for c in chunks], 1)[:, :n].to(device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, st: dict[str, torch.Tensor]) -> None:
        self.gen.set_state(st["rng"].cpu())


def make_model(cfg: Config, ctx: RunContext, w: torch.Tensor, i: int) -> M.RateRNN:
    """Rank i's network: W_hh(0) = w; W_in / W_out get a fresh PyTorch default init for each rank (official
    main.py builds a new ``Net`` per rank, unseeded), drawn here from a seed of (run seed, rank index)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.generator(READOUT_OFFSET + i).initial_seed())
        return M.RateRNN(3, cfg.n_hidden, 3, w, cfg.alpha)


@reproduction(
    track="initialization",
    paper=Paper(title="How connectivity structure shapes rich and lazy learning in neural circuits",
                authors="Yuhan Helena Liu, Aristide Baratin, Jonathan Cornford, Stefan Mihalas, Eric Shea-Brown, "
                        "Guillaume Lajoie", year=2024, venue="ICLR", url="https://arxiv.org/abs/2310.08513",
                code="https://github.com/Helena-Yuhan-Liu/BioRNN_RichLazy"),
    config=Config,
    scales=SCALES,
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2),
               "small": Resources(cpus=1, mem_gb=2, time_min=5),
               "full": Resources(cpus=4, gpus=1, mem_gb=16, time_min=120)},
    claims=CLAIMS,
    tables=[Table(name="ranks", metric="{col}@rank={row}", rows=("1", "10", "30", "100", "300"),
                  cols=("dw", "rep_align", "kernel_align", "final_acc", "steps", "seconds"), row_label="init rank",
                  title="Per initial connectivity rank (rank N = the standard full-rank random init): weight change, "
                        "alignments, accuracy and training cost at equal budget")],
    plots=[Plot(name="rank_sweep", x="rank", ys=("dw", "rep_align", "kernel_align", "final_loss"),
                logx=True, title="Laziness vs initial recurrent rank (norm-matched), procedural 2AF")],
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    ctx.log("rich_lazy_connectivity: config %s", asdict(cfg))
    dev = ctx.device
    gen = ctx.generator(1)
    w0 = M.gaussian_w0(cfg.n_hidden, cfg.gain, gen)
    stream = TrialStream(cfg, ctx.generator(STREAM_OFFSET))
    probe = stream.probe(cfg.n_probe, dev)  # main.py: inputs0 = the stream's first batches, before training
    stream_start = stream.state_dict()
    evalb = M.make_2af(cfg.n_eval, gen, cfg.seq_len, cfg.noise, dev)
    xk = probe[0][:, :cfg.n_kernel]
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, optimizer="sgd",
                       momentum=cfg.momentum, log_every=max(cfg.steps // 5, 1))
    if ctx.dry_run:
        make_model(cfg, ctx, _init_w(cfg, w0, cfg.ranks[0]), 0).to(dev)
        return Outcome(metrics={}, dataset=TASK_REF)
    res: dict[str, list[float]] = {k: [] for k in ("dw", "rep_align", "kernel_align", "sign_sim", "final_loss",
                                                   "init_loss", "final_acc", "eff_rank", "steps", "seconds")}
    rank_err, norm_err = 0.0, 0.0
    for i, r in enumerate(cfg.ranks):
        w = _init_w(cfg, w0, r)
        rank_err = max(rank_err, abs(M.numerical_rank(w) - r))
        norm_err = max(norm_err, float((w.norm() - w0.norm()).abs() / w0.norm()))
        if cfg.variant == "rank-ignored":  # TEETH: the sweep is a no-op, every 'rank' repeats the first one's run
            stream.load_state_dict(stream_start)  # (same W_in / W_out and trials too, so no noise can fake a trend)
        model = make_model(cfg, ctx, w, 0 if cfg.variant == "rank-ignored" else i).to(dev)  # main.py: new Net per rank
        a0 = M.decision_activity(model, probe[0])
        k0 = M.tangent_kernel(model, xk, cfg.ntk_steps)
        w_start = model.w_hh.detach().clone()
        with torch.no_grad():
            init_loss = float(M.seq_loss(model, evalb))
        t0 = time.perf_counter()
        steps = 0
        if cfg.variant != "untrained":  # TEETH: untrained network, weight change 0
            # the trial stream continues from the previous rank's last batch (main.py: one dataset() stream)
            fit(model, M.seq_loss, stream, tcfg, ctx=ctx, device=dev, name=f"rank{r}",
                stateful={"trial_stream": stream})
            steps = cfg.steps
        secs = time.perf_counter() - t0
        model.eval()
        a1 = M.decision_activity(model, probe[0])
        k1 = M.tangent_kernel(model, xk, cfg.ntk_steps)
        with torch.no_grad():
            logits, _ = model(evalb[0])
            final_loss = float(M.seq_loss(model, evalb))
            acc = float((logits[-1].argmax(-1) == evalb[1][-1]).float().mean())
        res["dw"].append(float((model.w_hh.detach() - w_start).norm()))
        res["rep_align"].append(float(M.alignment(a0 @ a0.T, a1 @ a1.T)))
        res["kernel_align"].append(float(M.alignment(k0, k1)))
        res["sign_sim"].append(float(((a0 > 0) == (a1 > 0)).float().mean()))
        res["final_loss"].append(final_loss)
        res["init_loss"].append(init_loss)
        res["final_acc"].append(acc)
        res["eff_rank"].append(M.effective_rank(w))
        res["steps"].append(float(steps))
        res["seconds"].append(secs)
        ctx.log("rank %d: dW %.3f rep %.3f ker %.3f loss %.4f acc %.3f (%.1fs)", r, res["dw"][-1],
                res["rep_align"][-1], res["kernel_align"][-1], final_loss, acc, secs)
    metrics: dict[str, float] = {}
    for k, v in res.items():
        metrics.update(curve_metrics(k, "rank", cfg.ranks, v))
    dw = res["dw"]
    metrics["dw_ratio_rank1_vs_full"] = dw[0] / max(dw[-1], 1e-12)
    metrics["dw_min_decrease"] = min(dw[i] - dw[i + 1] for i in range(len(dw) - 1)) if len(dw) > 1 else 0.0
    metrics["rep_align_gain"] = res["rep_align"][-1] - res["rep_align"][0]
    metrics["kernel_align_gain"] = res["kernel_align"][-1] - res["kernel_align"][0]
    metrics["loss_spread"] = max(res["final_loss"]) - min(res["final_loss"])
    metrics["loss_drop_min"] = min(1 - f / i for f, i in zip(res["final_loss"], res["init_loss"]))
    # baseline (full-rank random init) training cost, the track's columns
    metrics["baseline_steps"] = res["steps"][-1]
    metrics["baseline_seconds"] = res["seconds"][-1]
    metrics["method_steps"] = res["steps"][0]
    metrics["method_seconds"] = res["seconds"][0]
    metrics["rank_error"] = float(rank_err)
    metrics["norm_rel_error"] = norm_err
    k = M.tangent_kernel(model, xk, cfg.ntk_steps)
    metrics["self_align_error"] = abs(1 - float(M.alignment(k, k)))
    return Outcome(metrics=metrics, dataset=TASK_REF)
