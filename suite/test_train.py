"""Tests of the shared training loop: learning, schedules, exact resume, interruption, speed."""
from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from suite.context import for_tests
from suite.errors import ConfigError, CorruptDataError, UnknownNameError
from suite.train import (LrFactor, TensorBatches, TrainConfig, decay_groups, fit, load_state, optimizer,
                         save_state, scheduler)


def _data(n: int = 256, d: int = 10, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, k, generator=g)
    return x, (x @ w).argmax(1)


def _mlp(seed: int, dropout: float = 0.1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 3))


def _ce(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    # uses torch (dropout), numpy and python RNGs so that resume must restore all three
    noise = float(np.random.rand()) * 1e-3 + random.random() * 1e-3
    return F.cross_entropy(model(batch[0]), batch[1]) + noise


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


CFG = dict(steps=24, batch_size=32, lr=0.05, optimizer="adamw", weight_decay=0.01, schedule="cosine",
           warmup_steps=3, grad_clip=1.0, log_every=5)


def test_fit_learns_and_logs() -> None:
    x, y = _data()
    model = _mlp(0)
    before = _acc(model.eval(), x, y)
    res = fit(model, _ce, (x, y), TrainConfig(**{**CFG, "steps": 150}), eval_fn=lambda m: {"acc": _acc(m, x, y)})
    assert res.step == 150 and res.total_steps == 150
    assert res.final_eval["acc"] > max(0.85, before + 0.2)
    assert [h["step"] for h in res.history][:3] == [5.0, 10.0, 15.0] and res.history[-1]["step"] == 150
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.resumed_from_step is None


def test_epochs_cover_every_example_once_per_epoch() -> None:
    x = torch.arange(50).float()
    seen: list[torch.Tensor] = []

    def loss(m: nn.Module, b: torch.Tensor) -> torch.Tensor:
        seen.append(b.clone())
        return m(b[:, None]).sum()

    res = fit(nn.Linear(1, 1), loss, x, TrainConfig(epochs=2, batch_size=16, lr=0.0, optimizer="sgd"))
    assert res.step == 8 and res.epoch == 1  # ceil(50/16) = 4 batches per epoch
    ep1, ep2 = torch.cat(seen[:4]), torch.cat(seen[4:])
    assert torch.equal(ep1.sort().values, x) and torch.equal(ep2.sort().values, x)
    assert not torch.equal(ep1, ep2)  # reshuffled


def test_same_seed_same_weights_and_other_seed_differs() -> None:
    x, y = _data()
    cfg = TrainConfig(**CFG)
    runs = []
    for gseed in (0, 0, 1):
        torch.manual_seed(5), np.random.seed(5), random.seed(5)
        m = _mlp(1)
        fit(m, _ce, (x, y), cfg, generator=torch.Generator().manual_seed(gseed))
        runs.append(m.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def _uninterrupted(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, tmp_path, seed: int = 3) -> nn.Module:
    torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)
    m = _mlp(7)
    fit(m, _ce, (x, y), cfg, ctx=for_tests(seed=seed, tmp=tmp_path / "a"))
    return m


@pytest.mark.parametrize("stop_at", [12, 13])  # at a checkpoint step, and between two (saved on exception)
def test_interrupt_and_resume_is_bit_identical(tmp_path, stop_at: int) -> None:
    x, y = _data()
    cfg = TrainConfig(**{**CFG, "checkpoint_every": 4, "eval_every": 6})
    ref = _uninterrupted(x, y, cfg, tmp_path)

    class Preempted(Exception):
        pass

    def bomb(s) -> None:
        if s.step == stop_at:
            raise Preempted

    ctx = for_tests(seed=3, tmp=tmp_path / "b")
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    m1 = _mlp(7)
    with pytest.raises(Preempted):
        fit(m1, _ce, (x, y), cfg, ctx=ctx, on_step=bomb, eval_fn=lambda m: {"acc": _acc(m, x, y)})
    assert ctx.checkpoint_path.exists()
    assert load_state(ctx.checkpoint_path, _mlp(0), restore_rng=False).step == stop_at

    # a fresh process: different global RNG, fresh model and optimiser built from other init
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    m2 = _mlp(123)
    ctx2 = for_tests(seed=3, tmp=tmp_path / "b")
    res = fit(m2, _ce, (x, y), cfg, ctx=ctx2, eval_fn=lambda m: {"acc": _acc(m, x, y)})
    assert res.resumed_from_step == stop_at and res.step == cfg.steps
    assert [e["step"] for e in res.evals] == [6.0, 12.0, 18.0, 24.0]
    ref_sd, got = ref.state_dict(), m2.state_dict()
    assert all(torch.equal(ref_sd[k], got[k]) for k in ref_sd)
    assert "resumed from step" in (tmp_path / "b" / "log.txt").read_text()


class _Buffer:
    """A loss with state of its own (like an SGLD replay buffer): it changes at every step."""

    def __init__(self) -> None:
        self.x = torch.zeros(4)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.x = 0.9 * self.x + batch[0][:4, :4].mean(0).detach()
        return F.cross_entropy(model(batch[0]), batch[1]) + 1e-2 * self.x.sum()

    def state_dict(self) -> dict:
        return {"x": self.x}

    def load_state_dict(self, st: dict) -> None:
        self.x = st["x"].clone()


def test_stateful_objects_travel_in_the_checkpoint(tmp_path) -> None:
    x, y = _data()
    cfg = TrainConfig(**{**CFG, "checkpoint_every": 4})
    whole, bw = _mlp(7), _Buffer()
    fit(whole, bw.loss, (x, y), cfg, ctx=for_tests(seed=3, tmp=tmp_path / "a"), stateful={"buf": bw})

    class Preempted(Exception):
        pass

    def bomb(s) -> None:
        if s.step == 8:
            raise Preempted

    m1, b1 = _mlp(7), _Buffer()
    with pytest.raises(Preempted):
        fit(m1, b1.loss, (x, y), cfg, ctx=for_tests(seed=3, tmp=tmp_path / "b"), on_step=bomb, stateful={"buf": b1})
    m2, b2 = _mlp(7), _Buffer()  # a fresh process: the buffer starts from zeros again
    fit(m2, b2.loss, (x, y), cfg, ctx=for_tests(seed=3, tmp=tmp_path / "b"), stateful={"buf": b2})
    assert torch.equal(b2.x, bw.x)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), m2.state_dict().values()))
    # a checkpoint written without the buffer cannot resume a fit that has one
    fit(_mlp(7), _Buffer().loss, (x, y), cfg, ctx=for_tests(seed=3, tmp=tmp_path / "c"))
    with pytest.raises(ConfigError, match="holds no state for 'buf'"):
        fit(_mlp(7), _Buffer().loss, (x, y), cfg, ctx=for_tests(seed=3, tmp=tmp_path / "c"), stateful={"buf": _Buffer()})


def test_resume_after_completion_does_not_retrain(tmp_path) -> None:
    x, y = _data()
    cfg = TrainConfig(**{**CFG, "checkpoint_every": 10})
    ref = _uninterrupted(x, y, cfg, tmp_path)
    m = _mlp(55)
    res = fit(m, _ce, (x, y), cfg, ctx=for_tests(seed=3, tmp=tmp_path / "a"))
    assert res.resumed_from_step == cfg.steps and res.step == cfg.steps
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), m.state_dict().values()))


def test_manual_save_load_state_resume_bit_identical(tmp_path) -> None:
    """save_state/load_state on a hand-written loop with an SGD step schedule."""
    x, y = _data()
    cfg = TrainConfig(steps=20, lr=0.1, optimizer="sgd", schedule="step", milestones=(0.5,))

    def run(model: nn.Module, steps: range, opt, sched, gen) -> None:
        for _ in steps:
            idx = torch.randint(0, len(x), (16,), generator=gen)
            loss = _ce(model, (x[idx], y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

    def fresh(seed: int):
        m = _mlp(seed)
        o = optimizer(m.parameters(), cfg)
        return m, o, scheduler(o, cfg, 20), torch.Generator().manual_seed(0)

    torch.manual_seed(1)
    m, o, s, g = fresh(0)
    run(m, range(20), o, s, g)
    torch.manual_seed(1)
    m1, o1, s1, g1 = fresh(0)
    run(m1, range(10), o1, s1, g1)
    save_state(tmp_path / "st.pt", m1, o1, s1, 10, {"note": np.float64(1.5)}, {"data": g1})
    torch.manual_seed(42)
    m2, o2, s2, g2 = fresh(9)
    ck = load_state(tmp_path / "st.pt", m2, o2, s2, {"data": g2})
    assert ck.step == 10 and ck.extra["note"] == 1.5 and o2.param_groups[0]["lr"] == pytest.approx(0.01)
    run(m2, range(10), o2, s2, g2)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_corrupt_checkpoint_and_mismatch_raise_clear_errors(tmp_path) -> None:
    x, y = _data()
    cfg = TrainConfig(**{**CFG, "checkpoint_every": 8})
    ctx = for_tests(tmp=tmp_path)
    ctx.checkpoint_path.write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptDataError, match="delete it"):
        fit(_mlp(0), _ce, (x, y), cfg, ctx=ctx)
    ctx.checkpoint_path.unlink()
    fit(_mlp(0), _ce, (x, y), cfg, ctx=ctx)
    with pytest.raises(ConfigError, match="distinct name"):  # second fit in the same run, same file
        fit(_mlp(0), _ce, (x, y), cfg, ctx=ctx)
    other = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ConfigError, match="different fit"):  # new run, checkpoint of another model
        fit(other, _ce, (x, y), cfg, ctx=for_tests(tmp=tmp_path))
    res = fit(other, _ce, (x, y), cfg, ctx=ctx, name="small")  # a named fit gets its own file
    assert res.resumed_from_step is None and (tmp_path / "checkpoint-small.pt").exists()


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        TrainConfig()
    with pytest.raises(UnknownNameError, match="use one of"):
        TrainConfig(steps=1, optimizer="lion")
    with pytest.raises(UnknownNameError, match="use one of"):
        TrainConfig(steps=1, schedule="poly")
    with pytest.raises(ConfigError, match="same first dimension"):
        fit(_mlp(0), _ce, (torch.zeros(4, 10), torch.zeros(5)), TrainConfig(steps=1))
    with pytest.raises(ConfigError, match="set cfg.steps"):
        fit(_mlp(0), _ce, (b for b in []), TrainConfig(epochs=1))


def test_lr_schedules_hand_values() -> None:
    cos = LrFactor("cosine", total=10, warmup=2)
    assert [cos(s) for s in (0, 1)] == [0.5, 1.0]
    assert cos(2) == 1.0 and cos(6) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
    step = LrFactor("step", total=100, milestones=(50, 75), gamma=0.1)
    assert (step(49), step(50), step(75)) == (1.0, pytest.approx(0.1), pytest.approx(0.01))
    lin = LrFactor("linear", total=4, min_ratio=0.2)
    assert lin(2) == pytest.approx(0.6)
    # factory: per-group base lrs are scaled by the same factor, constant lr has no scheduler
    m = _mlp(0)
    groups = [{"params": m[0].parameters(), "lr": 1.0}, {"params": m[3].parameters()}]
    cfg = TrainConfig(steps=10, lr=0.1, optimizer="sgd", schedule="cosine")
    o = optimizer(groups, cfg)
    s = scheduler(o, cfg, 10)
    for _ in range(5):
        o.step()
        s.step()
    assert [g["lr"] for g in o.param_groups] == [pytest.approx(0.5), pytest.approx(0.05)]
    assert scheduler(o, TrainConfig(steps=1), 10) is None


def test_schedule_horizon_can_outlast_the_training_length() -> None:
    """An official cosine over 80,000 steps that the run stops at 50,000 (s4d's LRA files): the lr at the end
    of training is the horizon's, not the floor."""
    x, y = _data()
    lrs: list[float] = []
    cfg = TrainConfig(steps=10, batch_size=32, lr=1.0, optimizer="sgd", schedule="cosine", schedule_steps=40)
    fit(_mlp(0), _ce, (x, y), cfg, on_step=lambda s: lrs.append(s.lr))
    assert lrs[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 10 / 40)))  # the training length alone gives 0.0
    same = TrainConfig(steps=10, batch_size=32, lr=1.0, optimizer="sgd", schedule="step", milestones=(0.5,),
                       schedule_steps=40)  # milestones are fractions of the horizon: step 20, after training
    lrs.clear()
    fit(_mlp(0), _ce, (x, y), same, on_step=lambda s: lrs.append(s.lr))
    assert set(lrs) == {1.0}
    with pytest.raises(ConfigError, match="schedule_steps"):
        TrainConfig(steps=10, schedule_steps=0)


def test_schedule_per_epoch_matches_a_scheduler_stepped_per_epoch() -> None:
    """``schedule_per_epoch``: the lr of every step of epoch e is CosineAnnealingLR(T_max=epochs) after e
    epoch steps (happy_cgcd's official schedule), floor included."""
    x, y = _data(n=96)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.1, optimizer="sgd", schedule="cosine", min_lr_ratio=1e-3,
                      schedule_per_epoch=True)
    lrs: list[float] = []
    fit(_mlp(0), _ce, (x, y), cfg, on_step=lambda s: lrs.append(s.lr))
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.1 * 1e-3)
    want = []
    for _ in range(4):
        want += [opt.param_groups[0]["lr"]] * 3  # three steps per epoch, one lr each
        opt.step()
        ref.step()
    # on_step sees the lr after the step's scheduler update: the lr of the next step
    assert lrs[:-1] == pytest.approx(want[1:])
    with pytest.raises(ConfigError, match="schedule_per_epoch"):
        fit(_mlp(0), _ce, lambda step: (x[:8], y[:8]),
            TrainConfig(steps=4, schedule="cosine", schedule_per_epoch=True))


def test_param_groups_and_decay_groups() -> None:
    x, y = _data()
    m = _mlp(0)
    frozen = m[0].weight.detach().clone()
    groups = [{"params": list(m[3].parameters()), "lr": 0.1}]  # train only the head
    fit(m, _ce, (x, y), TrainConfig(steps=5, optimizer="sgd", lr=1.0), param_groups=groups)
    assert torch.equal(m[0].weight, frozen)
    dg = decay_groups(m, 0.05)
    assert [len(g["params"]) for g in dg] == [2, 2] and dg[1]["weight_decay"] == 0.0


def test_iterable_and_callable_data(tmp_path) -> None:
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(epochs=3, lr=0.01, checkpoint_every=5, log_every=0)
    torch.manual_seed(0)
    ref = _mlp(0)
    fit(ref, _ce, loader, cfg, checkpoint=tmp_path / "ref.pt")

    def bomb(s) -> None:
        if s.step == 11:
            raise KeyboardInterrupt

    loader.generator.manual_seed(0)
    torch.manual_seed(0)
    m = _mlp(0)
    with pytest.raises(KeyboardInterrupt):
        fit(m, _ce, loader, cfg, checkpoint=tmp_path / "c.pt", on_step=bomb)
    m2 = _mlp(4)
    res = fit(m2, _ce, loader, cfg, checkpoint=tmp_path / "c.pt")
    assert res.resumed_from_step == 11 and res.step == 24 and len(res.history) == 1
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), m2.state_dict().values()))

    # procedural data: a callable step -> batch; on_step may stop early
    def draw(step: int):
        g = torch.Generator().manual_seed(step)
        xb = torch.randn(16, 10, generator=g)
        return xb, (xb[:, 0] > 0).long()

    def stop(s) -> None:
        s.stop = s.step >= 7

    res = fit(_mlp(0), _ce, draw, TrainConfig(steps=100), on_step=stop)
    assert res.step == 7


def test_tensor_batches_vectorised_indices() -> None:
    g = torch.Generator().manual_seed(0)
    tb = TensorBatches((torch.arange(10), torch.arange(10) * 2), 4, g, drop_last=True)
    b = [tb.next(i) for i in range(4)]
    assert len(tb) == 2 and all(torch.equal(xb * 2, yb) for xb, yb in b)
    assert tb.epoch == 1


def test_progress_bar_and_ctx_device(tmp_path, capsys) -> None:
    x, y = _data()
    ctx = for_tests(tmp=tmp_path, show_progress=True)
    res = fit(_mlp(0), _ce, (x, y), TrainConfig(steps=10, log_every=5), ctx=ctx)
    assert res.step == 10 and "loss" in (tmp_path / "log.txt").read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_on_cuda() -> None:
    x, y = _data()
    dtypes = []

    def loss(m: nn.Module, b) -> torch.Tensor:
        out = m(b[0])
        dtypes.append(out.dtype)
        return F.cross_entropy(out, b[1])

    m = _mlp(0)
    fit(m, loss, (x, y), TrainConfig(steps=3), device="cuda")
    assert dtypes == [torch.bfloat16] * 3 and next(m.parameters()).dtype == torch.float32


@pytest.mark.bench
def test_fit_overhead_vs_bare_loop() -> None:
    """Steps/s of fit vs a hand-written loop on the same MLP: ratio >= 0.9 (best of interleaved repeats)."""
    torch.manual_seed(0)
    n, steps, bs = 8192, 300, 128
    x, y = torch.randn(n, 784), torch.randint(0, 10, (n,))
    cfg = TrainConfig(steps=steps, batch_size=bs, lr=0.01, optimizer="sgd", log_every=100)

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))

    def ce(m: nn.Module, b) -> torch.Tensor:
        return F.cross_entropy(m(b[0]), b[1])

    def bare() -> float:
        m = make()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        perm, pos = torch.randperm(n, generator=g), 0
        for _ in range(steps):
            if pos + bs > n:
                perm, pos = torch.randperm(n, generator=g), 0
            idx = perm[pos:pos + bs]
            pos += bs
            loss = F.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        float(loss.detach())
        return steps / (time.perf_counter() - t0)

    def ours() -> float:
        m = make()
        t0 = time.perf_counter()
        fit(m, ce, (x, y), cfg)
        return steps / (time.perf_counter() - t0)

    bare(), ours()  # warm up
    b, o = [], []
    for _ in range(5):
        b.append(bare())
        o.append(ours())
    ratio = max(o) / max(b)
    print(f"\nbare {max(b):.1f} steps/s, fit {max(o):.1f} steps/s, ratio {ratio:.3f}")
    assert ratio >= 0.9, f"fit runs at {ratio:.2f}x the bare loop"
