"""§4 of the paper (C5): VGG-19 and Resnet-18 on CIFAR-10 under three lr regimes. The networks against
the Fig. 2 table, global pruning against the paper's P_m values, the lr schedules with and without
warmup, a tiny end-to-end IMP run on the CIFAR-10 fixture, the C5 metrics, and the README's §4 jobs table (the
LeNet full-preset table against the official code is pinned by test_official_config.py)."""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from reproductions import lottery_ticket as LT
from reproductions.lottery_ticket import pruning as P
from reproductions.lottery_ticket.method import IMPResult, Trial, initialise, iterative_magnitude_pruning, prune_step
from reproductions.lottery_ticket.models import resnet18_paper, unpruned, vgg19
from suite import config, registry
from suite.context import for_tests
from suite.errors import ConfigError
from suite.train import TrainConfig, scheduler

REPRO = registry.get("lottery_ticket")


def resolve(arch: str, *more: str) -> LT.LotteryConfig:
    return config.resolve(REPRO, "full", (f"arch={arch}", "dataset=cifar10", *more))


def test_networks_match_the_paper_table():
    """Fig. 2: VGG-19 20.0M weights (avg-pool, 10); Resnet-18 = 16, 3x[16,16], 3x[32,32], 3x[64,64] (271K, §4)."""
    v = P.prunable_params(vgg19())
    assert sum(p.numel() for k, p in v.items() if k != "fc.weight") == 20_018_880
    assert v["fc.weight"].shape == (10, 512) and len(v) == 17  # 16 convs + fc
    r = resnet18_paper()
    rp = P.prunable_params(r)
    keep = unpruned("resnet18")
    assert keep == ("fc.weight", "blocks.3.proj.0.weight", "blocks.6.proj.0.weight")
    assert sum(p.numel() for k, p in rp.items() if k not in keep) == 267_696  # 19 3x3 convs
    assert sum(rp[k].numel() for k in keep) == 640 + 512 + 2048
    assert len(rp) == 19 + 2 + 1
    assert sum(p.numel() for p in r.parameters()) == 272_474  # §4: "271,000 parameters"
    assert unpruned("lenet300") == ()


def test_global_pruning_reaches_the_papers_densities():
    """§4 / Figs. 7-8: 20% of the remaining conv weights per round, globally, output layer (and ResNet
    shortcuts) dense, gives the P_m the paper plots: Resnet-18 64.4, 41.7, 27.1, 21.9, 11.8%."""
    cfg = resolve("resnet18")
    s = LT.settings(cfg)
    model = initialise(resnet18_paper(), torch.Generator().manual_seed(0), s.init)
    masks = P.ones_masks(P.prunable_params(model))
    dens = {}
    for rnd in range(1, 11):
        with torch.no_grad():  # fresh random magnitudes each round, as after training
            for p in P.prunable_params(model).values():
                p.normal_()
        masks = prune_step(model, model, masks, s)
        dens[rnd] = round(100 * P.density(masks), 1)
        for k in s.keep_dense:
            assert bool(masks[k].all()), k
    assert [dens[r] for r in (2, 4, 6, 7, 10)] == [64.4, 41.7, 27.1, 21.9, 11.8]
    # VGG-19 by count (pruning 20M weights 19 times is slow): 3.5% at round 15, 1.5% at round 19 (§4)
    sizes = {k: p.numel() for k, p in P.prunable_params(vgg19()).items()}
    left, fc = sum(sizes.values()) - sizes["fc.weight"], sizes["fc.weight"]
    total = left + fc
    at = {}
    for rnd in range(1, 20):
        left -= P.n_to_prune(left, 0.2)
        at[rnd] = round(100 * (left + fc) / total, 1)
    assert (at[15], at[19]) == (3.5, 1.5)


def _lrs(tc: TrainConfig, steps: list[int]) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=tc.lr)
    sched = scheduler(opt, tc, tc.steps)
    fn = sched.lr_lambdas[0] if sched is not None else (lambda s: 1.0)
    return [tc.lr * fn(s) for s in steps]


def test_lr_regimes_follow_section_4():
    """VGG-19: lr 0.1 (or 0.01) dropped 10x at epochs 80 and 120 of 160 (iterations 56,240 / 84,360 of
    112,480); warmup: linear from 0 to 0.1 over 10k iterations. Resnet-18: drops at 20k and 25k of 30k;
    warmup to 0.03 over 20k iterations. SGD momentum 0.9, weight decay 1e-4, batch 64 / 128."""
    v = LT.regime_settings(resolve("vgg19"))
    assert list(v) == ["warmup", "no_warmup", "low_lr"]
    steps = [0, 4_999, 9_999, 10_000, 56_239, 56_240, 84_359, 84_360, 112_479]
    assert _lrs(v["warmup"].train, steps) == pytest.approx(
        [0.1 / 10_000, 0.05, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert _lrs(v["no_warmup"].train, steps) == pytest.approx([0.1] * 5 + [0.01] * 2 + [0.001] * 2)
    assert _lrs(v["low_lr"].train, steps) == pytest.approx([0.01] * 5 + [0.001] * 2 + [0.0001] * 2)
    for s in v.values():
        t = s.train
        assert (t.steps, t.batch_size, t.optimizer, t.momentum, t.weight_decay) == (112_480, 64, "sgd", 0.9, 1e-4)
        assert (s.global_rate, s.keep_dense, s.augment, s.rounds) == (0.2, ("fc.weight",), True, 19)
    r = LT.regime_settings(resolve("resnet18"))
    steps = [0, 9_999, 19_999, 20_000, 24_999, 25_000, 29_999]
    assert _lrs(r["warmup"].train, steps) == pytest.approx([0.03 / 20_000, 0.015, 0.03, 0.003, 0.003, 0.0003, 0.0003])
    assert _lrs(r["no_warmup"].train, steps) == pytest.approx([0.1] * 3 + [0.01] * 2 + [0.001] * 2)
    assert {(s.train.steps, s.train.batch_size) for s in r.values()} == {(30_000, 128)}
    # the fits of one run have distinct names per regime; a one-regime run keeps the old names
    assert [s.tag for s in r.values()] == ["warmup-", "no_warmup-", "low_lr-"]
    assert LT.settings(config.resolve(REPRO, "full", ())).tag == ""


def test_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="warmup"):
        config.resolve(REPRO, "full", ("regimes=no_warmup,warmup",))  # LeNet has no warmup default
    with pytest.raises(ConfigError, match="c5_round"):
        resolve("resnet18", "rounds=5")
    with pytest.raises(ConfigError, match="control_rounds"):
        resolve("vgg19", "c5_round=17")
    with pytest.raises(ConfigError, match="low_lr"):
        config.resolve(REPRO, "full", ("regimes=low_lr",))
    with pytest.raises(ConfigError, match="dataset=cifar10"):
        config.resolve(REPRO, "full", ("arch=vgg19",))  # before any data is read
    ctx = for_tests("smoke", 0)
    with pytest.raises(ConfigError, match="cifar10"):
        LT.build_fn(LT.LotteryConfig(arch="vgg19", dataset="cifar10"), LT.load("digits", ctx, 287))


def test_batchnorm_starts_as_identity():
    m = initialise(resnet18_paper(), torch.Generator().manual_seed(0))
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert bns and all(bool((b.weight == 1).all() and (b.bias == 0).all()) for b in bns)
    w = m.blocks[8].conv2.weight  # Gaussian Glorot: std sqrt(2 / (fan_in + fan_out))
    assert float(w.detach().std()) == pytest.approx(math.sqrt(2 / (64 * 9 * 2)), rel=0.05)


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("vgg19", marks=pytest.mark.slow)])  # VGG: ~10-20 s
def test_full_dry_run_of_the_deep_path(arch):
    out = LT.run(resolve(arch), for_tests("full", 0, dry_run=True))
    assert out.dataset.provenance == "stand-in" and out.dataset.name.endswith("-fixture")
    assert out.metrics["dry_run_density"] == pytest.approx(
        {"resnet18": (0.8 * 267_696 + 3_200) / 270_896, "vgg19": (0.8 * 20_018_880 + 5_120) / 20_024_000}[arch], abs=1e-5)


def test_tiny_deep_imp_run_on_the_fixture():
    """The §4 loop end to end (Resnet-18, CIFAR-10 fixture): SGD + warmup + step schedule + augmentation,
    global pruning leaves fc and shortcuts dense, masks hold, survivors reset to θ0 bitwise."""
    torch.set_num_threads(1)
    cfg = resolve("resnet18", "rounds=2", "iterations=6", "batch_size=8", "eval_every=3", "warmup=3",
                  "c5_round=2", "control_rounds=2", "val_size=10")
    data = LT.load("cifar10", for_tests("full", 0, dry_run=True), 10)
    ctx = for_tests("full", 0)
    s = LT.regime_settings(cfg)["warmup"]
    res = iterative_magnitude_pruning(LT.build_fn(cfg, data), data, s, ctx)
    assert [t.kind for t in res.trials] == ["dense", "ticket", "ticket", "reinit", "oneshot"]
    assert res.checks["prune_count_max_dev"] == 0 and res.checks["masked_weight_max_abs"] == 0
    assert res.checks["reset_max_abs_diff"] == 0 and res.checks["reinit_mask_mismatch"] == 0
    assert res.get("ticket", 2).density == pytest.approx((0.64 * 267_696 + 3_200) / 270_896, abs=1e-5)
    assert all(bool(res.masks[-1][k].all()) for k in s.keep_dense)
    assert res.get("oneshot", 2).density == pytest.approx(res.get("ticket", 2).density)


def test_summarise_regimes_computes_the_c5_quantities():
    def t(kind, rnd, dens, final):
        return Trial(kind, rnd, dens, 100, final - 0.01, 0.5, final, 0.0)

    def res(dense, ticket, reinit):
        return IMPResult([t("dense", 0, 1.0, dense), t("ticket", 1, 0.8, ticket + 0.01), t("ticket", 2, 0.64, ticket),
                          t("reinit", 2, 0.64, reinit)], [])

    m = LT.summarise_regimes({"warmup": res(0.93, 0.935, 0.90), "no_warmup": res(0.92, 0.90, 0.897),
                              "low_lr": res(0.91, 0.92, 0.89)}, 2)
    assert m["c5_warmup_ticket_acc"] == 0.935 and m["c5_dense_best_acc"] == 0.93
    assert m["c5_warmup_ticket_minus_reinit"] == pytest.approx(0.035)
    assert m["c5_no_warmup_ticket_minus_reinit"] == pytest.approx(0.003)
    assert m["c5_warmup_minus_no_warmup_ticket"] == pytest.approx(0.035)
    assert m["c5_low_lr_ticket_minus_reinit"] == pytest.approx(0.03) and m["c5_density"] == 0.64
    assert m["warmup_ticket_final_acc@density_pct=100"] == 0.93 and m["no_warmup_reinit_final_acc@density_pct=64"] == 0.897
    verdicts = {c.id: c.check(m, "full", c.job)["verdict"] for c in LT.C5_CLAIMS}
    assert set(verdicts.values()) == {"holds"} and len(verdicts) == 10, verdicts
    # each network's claims are read from its own job's records only (and never from the LeNet preset's)
    assert {c.check(m, "full", "resnet18")["verdict"] for c in LT._c5_claims("vgg19")} == {"not-expected"}
    assert {c.check(m, "full", None)["verdict"] for c in LT.C5_CLAIMS} == {"not-expected"}
    # a run where warmup does not help: the C5 claims fail
    bad = LT.summarise_regimes({"warmup": res(0.92, 0.89, 0.89), "no_warmup": res(0.92, 0.90, 0.895),
                                "low_lr": res(0.91, 0.88, 0.89)}, 2)
    assert {c.id: c.check(bad, "full", "vgg19")["verdict"] for c in LT._c5_claims("vgg19")} == {
        "c5-vgg19-warmup-ticket-matches-dense": "fails", "c5-vgg19-warmup-ticket-beats-reinit": "fails",
        "c5-vgg19-no-warmup-ticket-no-better-than-reinit": "holds",
        "c5-vgg19-warmup-ticket-beats-no-warmup-ticket": "fails", "c5-vgg19-low-lr-ticket-beats-reinit": "fails"}
    # a one-regime run (LeNet) has no C5 quantities: NaN, the claims read "missing"
    one = LT.summarise_regimes({"no_warmup": res(0.9, 0.9, 0.8)}, None)
    assert math.isnan(one["c5_dense_best_acc"]) and math.isnan(one["c5_warmup_minus_no_warmup_ticket"])


def _readme_rows() -> dict[str, list[str]]:
    text = (Path(__file__).parent / "README.md").read_text()
    block = text.split("<!-- section4-jobs-table -->")[1].split("<!-- /section4-jobs-table -->")[0]
    rows = {}
    for line in block.strip().splitlines():
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def test_readme_section4_jobs_table_is_the_code():
    """The README's §4 jobs table (setting | paper VGG-19 | ours | paper Resnet-18 | ours | where):
    the 'ours' columns are what the resolved jobs train."""
    rows = _readme_rows()
    for arch, col in (("vgg19", 2), ("resnet18", 4)):
        regs = LT.regime_settings(resolve(arch))
        w, n, lo = regs["warmup"], regs["no_warmup"], regs["low_lr"]
        got = {"optimizer": f"{w.train.optimizer}, momentum {w.train.momentum}",
               "weight decay": f"{w.train.weight_decay:g}", "batch size": str(w.train.batch_size),
               "iterations": f"{w.train.steps:,}",
               "lr drops (10x) at iteration": ", ".join(f"{round(m * w.train.steps):,}" for m in w.train.milestones),
               "lr without warmup": f"{n.train.lr:g}", "low lr": f"{lo.train.lr:g}",
               "warmup iterations (k)": f"{w.train.warmup_steps:,}", "lr with warmup": f"{w.train.lr:g}",
               "pruning": f"global {w.global_rate:.0%} of conv per round",
               "unpruned": ", ".join(w.keep_dense), "rounds": str(w.rounds),
               "C5 level (round)": str(LT.ARCH_DEFAULTS[arch]["c5_round"]), "augmentation": "flip + 4 px" if w.augment else "none"}
        for key, want in got.items():
            assert key in rows, f"README table lacks the row {key!r}"
            assert rows[key][col] == want, (arch, key, rows[key][col], want)


def test_reinit_mask_check_ignores_exact_zero_draws(monkeypatch):
    """A Gaussian draw is exactly 0 about once in 3e7 entries (twice in a VGG-19 rehearsal): the
    reinit-same-mask check must not read such a kept weight as a different mask, and must still
    see a really different mask."""
    from reproductions.lottery_ticket import method as M

    torch.set_num_threads(1)
    cfg = LT.LotteryConfig(dataset="digits", rounds=1, iterations=2, eval_every=1, val_size=287, oneshot=False)
    ctx = for_tests("smoke", 0)
    data = LT.load("digits", ctx, 287)
    build, s = LT.build_fn(cfg, data), LT.settings(cfg)
    masks = P.magnitude_prune(P.prunable_params(build()), P.ones_masks(P.prunable_params(build())),
                              P.layer_rates(build(), 0.2))
    real = M.initialise
    k0 = next(iter(masks))
    kept = int(masks[k0].view(-1).nonzero()[0])

    def with_a_zero(model, gen, init="glorot_normal"):
        out = real(model, gen, init)
        with torch.no_grad():
            P.prunable_params(out)[k0].view(-1)[kept] = 0.0  # an exact-zero draw at a kept position
        return out

    monkeypatch.setattr(M, "initialise", with_a_zero)
    theta0 = M.clone_state(real(build(), torch.Generator().manual_seed(0)))
    checks = {"reinit_mask_mismatch": 0.0, "reinit_equal_init_frac": 0.0, "random_mask_count_dev": 0.0}
    M._controls(build, masks, theta0, data, replace_controls(s, ("reinit",)), ctx, 1, checks)
    assert checks["reinit_mask_mismatch"] == 0
    # a really different mask (one kept entry zeroed AFTER masking) is still caught
    bad = {k: m.clone() for k, m in masks.items()}
    bad[k0].view(-1)[kept] = False
    monkeypatch.setattr(M, "initialise", real)
    orig_reset = P.reset_to

    def reset_with_other_mask(model, state, m):
        orig_reset(model, state, bad if m is masks else m)

    monkeypatch.setattr(M.P, "reset_to", reset_with_other_mask)
    checks = {"reinit_mask_mismatch": 0.0, "reinit_equal_init_frac": 0.0, "random_mask_count_dev": 0.0}
    M._controls(build, masks, theta0, data, replace_controls(s, ("reinit",)), ctx, 2, checks)
    assert checks["reinit_mask_mismatch"] == 1


def replace_controls(s, controls):
    from dataclasses import replace
    return replace(s, controls=controls)
