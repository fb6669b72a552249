"""A tiny reproduction for the harness tests: a 'method' and a 'baseline' measured in one run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from suite.registry import Reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources, Table, curve_metrics


@dataclass
class ToyConfig:
    n: int = 1000
    noise: float = 0.1
    broken: bool = False
    fail: bool = False
    ks: tuple[int, ...] = (1, 2, 4)
    mode: str = "fast"
    variant: Literal["paper", "negated"] = "paper"  # "negated": the broken method (teeth)


def toy_run(cfg: ToyConfig, ctx) -> Outcome:
    if cfg.fail:
        raise RuntimeError("toy failure requested")
    g = ctx.generator()
    x = torch.randn(cfg.n, generator=g)
    y = 2 * x + cfg.noise * torch.randn(cfg.n, generator=g)
    slope = float((x * y).sum() / (x * x).sum())  # least squares: the "method"
    if cfg.broken or cfg.variant == "negated":
        slope = -slope
    baseline = 0.0  # the zero predictor
    err_method = float(((y - slope * x) ** 2).mean())
    err_baseline = float(((y - baseline * x) ** 2).mean())
    metrics = {"method_mse": err_method, "baseline_mse": err_baseline, "slope": slope}
    metrics.update(curve_metrics("cost", "k", cfg.ks, [k * 1.5 for k in cfg.ks]))
    metrics.update({f"err/{m}/{d}": float(i + j) for i, m in enumerate(("ls", "zero"))
                    for j, d in enumerate(("train", "test"))})
    return Outcome(metrics=metrics, dataset=DatasetRef("toy-gaussian", "stand-in"))


TOY = Reproduction(
    slug="_toy", track="_toytrack",
    paper=Paper(title="A Toy Paper", authors="Nobody", year=2024, venue="Tests"),
    config=ToyConfig,
    scales={"smoke": {"n": 200}, "small": {"n": 2000}, "full": {"n": 100000}},
    claims=(
        Claim(id="beats-baseline", text="least squares beats the zero predictor", metric="method_mse",
              op="<", ref="baseline_mse", kind="paper", teeth="negated"),
        Claim(id="slope", text="recovers the slope", metric="slope", op="==", ref=2.0, tol=0.05,
              scales=("small", "full"), paper=2.0, kind="check"),
    ),
    run=toy_run,
    resources={"smoke": Resources(cpus=1, mem_gb=1, time_min=2)},
    plots=(Plot(name="cost_vs_k", x="k", ys=("cost",)),),
    tables=(Table(name="grid", metric="err/{row}/{col}", rows=("ls", "zero"), cols=("train", "test"),
                  row_label="method"),),
    module="tests.toy",
)
