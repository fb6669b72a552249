"""When Layers Play the Lottery, all Tickets Win at Initialization (Jordao et al., ICCV-W 2023).

One run: mechanics checks (block removal exactness, GraSP Hessian-gradient product, GraSP sign),
the dense ResNet, block tickets at initialisation (SNIP / GraSP / random, Algorithm 2), block
tickets chosen after training and rewound to theta_0 (Algorithm 1), filter-matched tickets (C3),
FLOPs / parameters / measured latency (C4) and robustness (C5: CIFAR-10-C and CIFAR-10.2 read from
disk at full scale, procedural noise/blur at smoke/small). README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

import torch

from suite.config import Range
from suite.context import RunContext
from suite.data import cifar10c
from suite.errors import ConfigError
from suite.registry import reproduction
from suite.spec import Claim, DatasetRef, Outcome, Paper, Plot, Resources

from . import blocks as B
from . import criteria as C
from . import efficiency as E
from .data import cifar_normalize, load, load_shifted
from .experiment import build_dense, measure, score_batches

# TEST-ONLY broken variants (teeth): "wrong-copy" (kept blocks' states copied one position off),
# "grasp-sign-flipped" (GraSP scores negated), "mask-not-remove" (removed blocks zero-masked, not
# removed: same function, full cost), "untrained-ticket" (Algorithm 2's tickets are not trained)
Variant = Literal["paper", "wrong-copy", "grasp-sign-flipped", "mask-not-remove", "untrained-ticket"]


@dataclass
class Config:
    dataset: str = "digits"                 # "digits" (spec §6) | "cifar-10" (spec §5)
    depth: Annotated[int, Range(8)] = 26  # 6n+2: 26 = 4 blocks/stage (§6); 32 / 56 at full
    width: Annotated[int, Range(1)] = 8  # channels of stage 1 (8/16/32 at §6; 16/32/64 at full)
    shortcut: str = "A"                     # CIFAR option A (parameter-free) shortcuts
    epochs: Annotated[int, Range(1)] = 25
    batch_size: Annotated[int, Range(1)] = 64
    lr: Annotated[float, Range(0, open_lo=True)] = 0.1
    weight_decay: Annotated[float, Range(0)] = 5e-4
    augment: bool = False                   # flip + crop (CIFAR only)
    ps: tuple[Annotated[int, Range(1)], ...] = (1, 3, 5)  # blocks removed by the init tickets
    init_criteria: tuple[str, ...] = ("grasp", "snip", "random")  # first one gets the cost metrics
    trained_criteria: tuple[str, ...] = ("kl",)                    # Algorithm 1 (rewind to theta_0)
    trained_ps: tuple[Annotated[int, Range(1)], ...] = (3,)
    filter_criteria: tuple[str, ...] = ("grasp",)                  # C3 filter-matched tickets
    filter_ps: tuple[Annotated[int, Range(1)], ...] = (1,)
    aggregation: str = "sum"                # per-block score: "sum" | "mean" (paper leaves it open)
    score_batches: Annotated[int, Range(1)] = 1
    score_batch_size: Annotated[int, Range(1)] = 256
    # logits / T inside GraSP (GraSP's own code uses 200)
    grasp_temperature: Annotated[float, Range(0, open_lo=True)] = 1.0
    gradnorm_frac: Annotated[float, Range(0, 1)] = 0.05  # fraction zeroed by the GraSP sign check
    timing_reps: Annotated[int, Range(1)] = 20
    # C5 (Table 5): "procedural" = Gaussian noise / blur of the test split (spec §6 stand-in, smoke/small);
    # "cifar-10-c" = CIFAR-10-C (c10c_corruptions x c10c_severities) and the CIFAR-10.2 test set from disk (§5)
    robustness: Literal["procedural", "cifar-10-c"] = "procedural"
    c10c_corruptions: tuple[str, ...] = cifar10c.CORRUPTIONS  # the benchmark's 15
    c10c_severities: tuple[Annotated[int, Range(1, 5)], ...] = cifar10c.SEVERITIES
    noise_std: Annotated[float, Range(0)] = 0.3  # C5 stand-in corruptions
    blur_mix: Annotated[float, Range(0, 1)] = 0.7
    checkpoint_every: Annotated[int, Range(0)] = 0
    max_train: Annotated[int, Range(0)] = 0  # train on the first n training images (0 = all; smoke)
    variant: Variant = "paper"                  # TEST-ONLY broken variants (see Variant)

    def validate(self) -> None:
        """Relations between fields, checked when the config resolves (before any run starts)."""
        if (self.depth - 2) % 6:
            raise ConfigError(f"depth={self.depth} is not 6n+2 (e.g. 14, 20, 26, 32, 56); change depth")
        if self.robustness == "cifar-10-c":
            if self.dataset != "cifar-10":
                raise ConfigError(f"robustness=cifar-10-c tests CIFAR-10 networks, not dataset={self.dataset}; "
                                  f"set dataset=cifar-10 or robustness=procedural")
            cifar10c.check_corruptions(self.c10c_corruptions)
            if not self.c10c_severities:
                raise ConfigError("c10c_severities is empty; give some of 1..5")


SCALES = {
    "smoke": {"depth": 14, "width": 4, "epochs": 1, "max_train": 256, "batch_size": 128, "ps": (1, 3),
              "init_criteria": ("grasp", "snip"), "trained_ps": (1,), "filter_criteria": (),
              "score_batch_size": 64, "timing_reps": 3},
    "small": {"epochs": 25},
    "full": {"dataset": "cifar-10", "depth": 32, "width": 16, "epochs": 200, "batch_size": 128,
             "augment": True, "ps": (1, 2, 3, 4, 5), "trained_criteria": ("kl", "expectabs", "random"),
             "trained_ps": (1, 3, 5), "filter_criteria": ("grasp", "snip"), "filter_ps": (1,),
             "score_batches": 10, "score_batch_size": 100, "timing_reps": 50, "checkpoint_every": 2000,
             "robustness": "cifar-10-c"},
}

_C5_NO_TEETH = ("full scale only (reads CIFAR-10-C / CIFAR-10.2 from disk; teeth run at small, where C5 is a "
                "procedural stand-in without a claim); the trained tickets it compares have teeth at small "
                "(untrained-ticket, C2)")

CLAIMS = [
    # mechanics and invariants (kind="check")
    Claim(id="M-removal-exact", kind="check",
          text="Removing block i builds a network whose eval-mode forward equals the original with f_i "
               "forced to 0 (max |diff| over all removable blocks and a multi-block removal)",
          metric="removal_max_abs_err", op="<=", ref=1e-5),
    Claim(id="M-kept-weights-copied", kind="check",
          text="The pruned network's parameters and BN buffers equal the original's kept blocks, in order",
          metric="kept_weight_mismatch", op="==", ref=0.0),
    Claim(id="M-grasp-hvp", kind="check",
          text="GraSP's Hessian-gradient product matches a central finite difference (float64)",
          metric="grasp_hvp_fd_rel_err", op="<=", ref=1e-3),
    Claim(id="M-grasp-sign", kind="check",
          text="Zeroing the highest-GraSP-score weights keeps a larger gradient norm than zeroing the "
               "lowest (GraSP sign convention, spec §7)",
          metric="grasp_gradnorm_high_over_low", op=">", ref=1.0),
    Claim(id="M-never-downsampling", kind="check",
          text="No criterion ever selects a non-removable (first-of-stage / downsampling) block",
          metric="nonremovable_selected", op="==", ref=0.0),
    Claim(id="C4-flops-analytic", kind="check",
          text="MACs counted on the tickets' forward pass equal the analytic count",
          metric="flops_hook_minus_analytic", op="==", ref=0.0),
    # holds by construction (every removable block of a CIFAR ResNet costs the same MACs): a check
    Claim(id="C4-flops-linear", kind="check",
          text="Ticket FLOPs decrease linearly in the number of removed blocks p",
          metric="flops_linearity_rel_err", op="<=", ref=1e-9),
    Claim(id="C4-flops-p1", kind="check",
          text="FLOPs reduction of the p=1 ticket (counted) equals the analytic reduction",
          metric="flops_reduction_pct@p=1", op="==", ref="flops_reduction_pct_analytic@p=1", tol=1e-9,
          paper=6.82, paper_note="Table 4, ResNet32 p=1 (CIFAR-10)"),
    # the paper's results (kind="paper"), each with the broken variant that must make it fail
    Claim(id="C2-grasp-p1-wins", kind="paper", teeth="untrained-ticket",
          text="The GraSP-at-init ticket with p=1 is within 1 point of the dense network (xi = 1): "
               "ticket minus dense accuracy (pp) >= -1",
          metric="grasp_minus_dense@p=1", op=">=", ref=-1.0, scales=("small", "full"),
          paper=0.40, paper_note="Table 2, ResNet32 GraSP p=1"),
    Claim(id="C2-grasp-p3-wins", kind="paper", teeth="untrained-ticket",
          text="The GraSP-at-init ticket with p=3 is within 1 point of the dense network (xi = 1): "
               "ticket minus dense accuracy (pp) >= -1",
          metric="grasp_minus_dense@p=3", op=">=", ref=-1.0, scales=("small", "full"),
          paper=0.34, paper_note="Table 2, ResNet32 GraSP p=3"),
    Claim(id="C4-latency-decreases", kind="paper", teeth="mask-not-remove",
          text="Measured training-step time decreases with p (dense > p1 > p3 > p5; violations = 0)",
          metric="latency_order_violations", op="==", ref=0.0, scales=("small", "full")),
    # the bound is a noise margin calibrated on seeds 100-102 (README): the masked network, which does the dense
    # work, measured speed-ups within 0.7 % of 1; rule: 1 + max(0.05, 3 x that spread)
    Claim(id="C4-speedup-p3", kind="paper", teeth="mask-not-remove",
          text="Measured training-step speed-up of the p=3 ticket over dense is > 1.05 (timing-noise margin "
               "calibrated on seeds 100-102)",
          metric="step_speedup@p=3", op=">", ref=1.05, scales=("small", "full"),
          paper=1.35, paper_note="Table 4, ResNet32 p=3 training speed-up"),
    # C5 on the real shifted test sets: full scale only (smoke/small report procedural corruptions, no claim)
    Claim(id="C5-c10c-ticket-robust", kind="paper",
          text="On CIFAR-10-C (mean accuracy over 15 corruptions x 5 severities) the best GraSP-at-init ticket "
               "is at least as accurate as the dense network: max over p of ticket minus dense (pp) >= 0",
          metric="grasp_c10c_best_minus_dense", op=">=", ref=0.0, scales=("full",),
          paper=1.61, paper_note="Table 5, ResNet32: tickets up to +1.61 pp on CIFAR-10-C; bound a priori (README)",
          no_teeth=_C5_NO_TEETH),
    Claim(id="C5-c102-ticket-robust", kind="paper",
          text="On the CIFAR-10.2 test set the best GraSP-at-init ticket is at least as accurate as the dense "
               "network: max over p of ticket minus dense (pp) >= 0",
          metric="grasp_c102_best_minus_dense", op=">=", ref=0.0, scales=("full",),
          paper_note="Table 5: up to +1.75 pp on CIFAR-10.2 (ResNet56; the ResNet32 value is not in the spec); "
                     "bound a priori (README)",
          no_teeth=_C5_NO_TEETH),
]

PLOTS = [
    Plot(name="acc_vs_blocks_removed", x="p",
         ys=("acc_grasp", "acc_snip", "acc_random", "acc_lth_kl"),
         title="layer_lottery: test accuracy vs blocks removed (p=0: dense)", ylabel="accuracy (%)"),
    Plot(name="cost_vs_blocks_removed", x="p", ys=("step_time_ms",),
         title="layer_lottery: measured training-step time", ylabel="ms / step"),
]


@reproduction(
    track="compression",
    paper=Paper(title="When Layers Play the Lottery, all Tickets Win at Initialization",
                authors="Artur Jordao, George Correa de Araujo, Helena de Almeida Maia, Helio Pedrini",
                year=2023, venue="ICCV Workshops", url="https://arxiv.org/abs/2301.10835",
                code=""),
    config=Config,
    scales=SCALES,
    claims=CLAIMS,
    plots=PLOTS,
    resources={"smoke": Resources(cpus=1, mem_gb=2, time_min=5),
               "small": Resources(cpus=2, mem_gb=4, time_min=30),
               "full": Resources(cpus=8, gpus=1, mem_gb=32, time_min=2880)},
)
def run(cfg: Config, ctx: RunContext) -> Outcome:
    if cfg.aggregation not in C.AGGREGATIONS:
        raise ConfigError(f"aggregation={cfg.aggregation!r} unknown; use one of {C.AGGREGATIONS}")
    for c in cfg.init_criteria:
        if c not in C.INIT_CRITERIA:
            raise ConfigError(f"init criterion {c!r} unknown; use some of {C.INIT_CRITERIA}")
    for c in cfg.trained_criteria:
        if c not in C.TRAINED_CRITERIA:
            raise ConfigError(f"after-training criterion {c!r} unknown; use some of {C.TRAINED_CRITERIA}")
    for c in cfg.filter_criteria:
        if c not in ("grasp", "snip"):
            raise ConfigError(f"filter criterion {c!r} unknown; use 'grasp' or 'snip'")
    if not cfg.init_criteria:
        raise ConfigError("init_criteria is empty; give at least one of ('grasp', 'snip', 'random')")
    data = load(cfg.dataset, ctx)
    ctx.log("layer_lottery: data %s (%s) train %d, config %s", data.ref.name, data.ref.provenance,
            len(data.y_train), asdict(cfg))
    # C5 at full: CIFAR-10-C and CIFAR-10.2 located and their headers checked before any training
    shifted = load_shifted(ctx, cfg.c10c_corruptions) if cfg.robustness == "cifar-10-c" else None
    if shifted is not None:
        ctx.log("layer_lottery: C5 on %s (%s, %d images per severity) and %s (%s, %d images)",
                shifted.c10c.ref.name, shifted.c10c.ref.provenance, shifted.c10c.n, shifted.c102.ref.name,
                shifted.c102.ref.provenance, len(shifted.c102))
    if ctx.dry_run:  # build every network of the protocol and its cost model, train nothing
        net = build_dense(cfg, data)
        score_batches(cfg, data, ctx)
        rem = B.removable_blocks(net)
        for p in sorted(set(cfg.ps) | set(cfg.trained_ps)):
            t = B.build_without(net, rem[:p])
            E.counted_macs(t, (data.in_channels, data.hw, data.hw))
        if shifted is not None:  # one batch of each shifted set through the (untrained) dense network
            x, _ = next(shifted.c10c.batches(cfg.c10c_corruptions[0], cfg.c10c_severities[0], 2))
            net.eval()(cifar_normalize(torch.cat([x, shifted.c102.x[:2].float() / 255.0])))
        return Outcome(metrics={}, dataset=data.ref)
    metrics = measure(cfg, data, ctx, shifted)
    per: dict[str, DatasetRef] = {}
    if shifted is not None:  # each C5 metric names the shifted set it was measured on
        per = {k: (shifted.c10c.ref if "_c10c" in k else shifted.c102.ref)
               for k in metrics if "_c10c" in k or "_c102" in k}
    return Outcome(metrics=metrics, dataset=data.ref, metric_datasets=per,
                   notes={"removable_blocks": B.removable_blocks(build_dense(cfg, data))})
