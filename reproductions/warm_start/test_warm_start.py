"""warm_start: the shrink-perturb map (exactness, per-layer noise), the stopping rule, the online protocol on
the teacher-student stand-in, a broken variant at smoke size, the smoke-scale claims and the config ranges
(the full preset is pinned to the official code by test_official_config.py)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from suite import config, registry, runner, teeth
from suite.context import for_tests
from suite.errors import ConfigError
from suite.models import MLP, count_params, resnet18

from . import CLAIMS, SCALES, Config
from . import method as M
from .experiment import TEACHER_REF, Data, load_data, model_factory, online_metrics, split_pool, teacher_student

SLUG = "warm_start"


def _cfg(**kw) -> Config:
    cfg = config.resolve(registry.get(SLUG), "smoke", [f"{k}={v}" for k, v in kw.items()])
    return cfg


# ---------------------------------------------------------------- the shrink-perturb map (paper §4)

def _make_mlp():
    return MLP(12, (16, 8), 3)



def official_train_accuracy(correct: list[int], sizes: list[int]) -> float:
    """run.py's ``train()`` count over one epoch's minibatches, step by step (read, not copied): the
    reference that ``M.official_batch_weights`` must agree with."""
    total_acc = total_samps = total = hits = 0
    for batch_idx, (c, n) in enumerate(zip(correct, sizes)):
        total += n
        hits += c
        total_acc += hits
        total_samps += total
        if batch_idx % 10 == 0 and batch_idx != 0:
            hits = total = 0
    return total_acc / total_samps

def test_shrink_perturb_endpoints_and_formula():
    torch.manual_seed(0)
    prev = _make_mlp()
    with torch.no_grad():
        for p in prev.parameters():
            p.mul_(3.0).add_(1.0)
    warm = M.shrink_perturb(prev, _make_mlp, 1.0, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(warm.parameters(), prev.parameters()))
    assert warm is not prev  # a new module: optimiser state never carries over
    torch.manual_seed(5)
    ref = _make_mlp()
    torch.manual_seed(5)
    fresh = M.shrink_perturb(prev, _make_mlp, 0.0, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), ref.parameters()))
    torch.manual_seed(9)
    noise = _make_mlp()
    torch.manual_seed(9)
    sp = M.shrink_perturb(prev, _make_mlp, 0.4, 0.1)
    for s, p, q in zip(sp.parameters(), prev.parameters(), noise.parameters()):
        assert torch.allclose(s, 0.4 * p + 0.1 * q, atol=0, rtol=0)


def test_noise_has_each_layers_init_scale_and_bn_buffers_are_fresh():
    torch.manual_seed(0)
    make = lambda: resnet18(num_classes=10, in_channels=3, width=4)  # noqa: E731
    prev = make()
    with torch.no_grad():
        for b in prev.buffers():
            if b.dtype.is_floating_point:
                b.add_(2.0)
    sp = M.shrink_perturb(prev, make, 0.0, 0.1)
    stds = [float(p.detach().std()) for p in sp.parameters() if p.dim() > 1]
    assert max(stds) / min(stds) > 3  # conv and linear layers differ in scale: not one global N(0, sigma^2)
    bn = [b for b in sp.buffers() if b.dtype.is_floating_point]
    assert all(float(b.abs().max()) <= 1.0 for b in bn)  # fresh running stats (run.py returns the new model)
    kept = M.shrink_perturb(prev, make, 0.0, 0.1, keep_buffers=True)
    assert all(torch.equal(a, b) for a, b in zip(kept.buffers(), prev.buffers()))


def test_scheme_coefficients_and_variants():
    assert M.scheme_coefficients("random", 0.4, 0.1) == (0.0, 1.0)
    assert M.scheme_coefficients("warm", 0.4, 0.1) == (1.0, 0.0)
    assert M.scheme_coefficients("shrink_perturb", 0.4, 0.1) == (0.4, 0.1)
    assert M.scheme_coefficients("shrink_perturb", 0.4, 0.1, "sp-no-shrink") == (1.0, 0.0)
    assert M.scheme_coefficients("warm", 0.4, 0.1, "warm-reinit") == (0.0, 1.0)
    assert M.scheme_coefficients("shrink_perturb", 0.4, 0.1, "sp-reinit") == (0.0, 1.0)


# ---------------------------------------------------------------- the stopping rule and the protocol

def test_train_to_accuracy_stops_at_target():
    x, y = teacher_student(400, 10, 32, 3.0, 0)
    torch.manual_seed(0)
    net = MLP(10, (128,), 10)
    cost = M.train_to_accuracy(net, x, y, lr=3e-3, batch_size=32, optimizer="adam", weight_decay=0.0,
                               target_acc=0.99, max_epochs=300, generator=torch.Generator().manual_seed(0),
                               device=torch.device("cpu"))
    assert cost.reached and cost.train_acc >= 0.99
    assert cost.steps == cost.epochs * 13  # stops at an epoch boundary (400 / 32 -> 13 batches)
    assert M.accuracy(net, x, y) >= 0.95
    # a target already met by the end of epoch 1 stops there
    cost2 = M.train_to_accuracy(net, x, y, lr=1e-4, batch_size=32, optimizer="adam", weight_decay=0.0,
                                target_acc=0.5, max_epochs=50, generator=torch.Generator().manual_seed(0),
                                device=torch.device("cpu"))
    assert cost2.epochs == 1 and cost2.steps == 13


def test_pool_and_test_split_is_two_thirds():
    pool, test = split_pool(900, torch.Generator().manual_seed(0), 0)
    assert pool.numel() == 600 and test.numel() == 300
    assert torch.equal(torch.cat([pool, test]).sort().values, torch.arange(900))


def test_broken_variants_at_smoke_size():
    """teeth at smoke size: a warm start that reinitialises costs exactly what random init costs, and a
    shrink-perturb that does not shrink is exactly the warm start (no accuracy difference)."""
    ctx = for_tests()
    good = online_metrics(_cfg(), ctx, load_data(_cfg(), ctx))
    assert good["steps_random_over_warm"] > 1.2
    cfg = _cfg(variant="warm-reinit")
    bad = online_metrics(cfg, for_tests(), load_data(cfg, ctx))
    assert bad["steps_random_over_warm"] == 1.0 and bad["acc_warm_mean"] == bad["acc_random_mean"]
    cfg = _cfg(variant="sp-no-shrink")
    bad = online_metrics(cfg, for_tests(), load_data(cfg, ctx))
    assert bad["sp_minus_warm_acc"] == 0.0 and bad["steps_sp"] == bad["steps_warm"]


# ---------------------------------------------------------------- declaration, smoke run, full preset

def test_every_paper_claim_has_teeth_from_the_variant_field():
    choices = teeth.variant_choices(registry.get(SLUG))
    for c in CLAIMS:
        if c.kind == "paper" and c.teeth:
            assert c.teeth in choices and c.teeth != "correct" and "small" in c.scales
        elif c.kind == "paper":
            assert c.scales == ("full",) and c.no_teeth
    assert set(M.VARIANTS) == set(choices)


def test_smoke_run_passes_its_claims(tmp_path):
    rec = runner.execute(runner.RunSpec(SLUG, "smoke", 0), tmp_path, device="cpu")
    assert rec["status"] == "ok", rec.get("error")
    for cid, entry in rec["claims"].items():
        if "smoke" in registry.get(SLUG).claim(cid).scales:
            assert entry["verdict"] == "holds", (cid, entry)
    assert rec["dataset"]["provenance"] == "stand-in"
    m = rec["metrics"]
    for s in ("random", "warm", "sp"):
        assert m[f"steps_{s}"] > 0 and m[f"seconds_{s}"] > 0


def test_full_dry_run_builds_on_fixtures(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    rec = runner.execute(runner.RunSpec(SLUG, "full", 0), tmp_path, device="cpu", dry_run=True)
    assert rec["status"] == "dry-run", rec.get("error")


def test_full_without_data_names_the_layout(tmp_path, monkeypatch):
    from suite.errors import DataNotFoundError
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    cfg = config.resolve(registry.get(SLUG), "full")
    ctx = for_tests(scale="full", tmp=tmp_path)
    ctx.data_root = tmp_path / "empty"
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_data(cfg, ctx)


def test_config_ranges():
    r = registry.get(SLUG)
    for s in ("smoke", "small", "full"):
        config.resolve(r, s)
    for bad in ("shrink=1.5", "perturb=-0.1", "target_acc=0", "n_samples=0", "variant=broken"):
        with pytest.raises(ConfigError):
            config.resolve(r, "small", [bad])
    with pytest.raises(ConfigError, match="resnet18"):
        config.resolve(r, "smoke", ["model=resnet18"])
    assert SCALES["small"] == {} and Config().shrink == 0.4 and Config().perturb == 0.1


@pytest.mark.slow
def test_full_code_path_trains_on_the_cifar_fixture(tmp_path, monkeypatch):
    """Rehearsal: ResNet-18 on the published-format CIFAR-10 fixture, every budget cut (1 epoch per round)."""
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SUITE_DATA", raising=False)
    cfg = config.resolve(registry.get(SLUG), "full", ["n_samples=20", "max_epochs=1"])
    ctx = for_tests(scale="full", tmp=tmp_path)
    ctx.dry_run = True  # the catalog hands a dry run the fixture; we still train on it here
    data = load_data(cfg, ctx)
    assert data.ref.provenance == "stand-in" and data.in_shape == (3, 32, 32)
    m = online_metrics(cfg, ctx, data)
    assert m["rounds"] == 2 and m["steps_warm"] == m["steps_random"] == 2
    assert 0.0 <= m["acc_sp_final"] <= 1.0


# ---------------------------------------------------------------- run.py / resnet.py fidelity (issue 17)

def _full_make(**over):
    cfg = config.resolve(registry.get(SLUG), "full", [f"{k}={v}" for k, v in over.items()])
    data = Data(torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long), TEACHER_REF, (3, 32, 32), 10)
    return model_factory(cfg, data, torch.device("cpu"))


def test_full_resnet18_is_resnet_py_width_16():
    """resnet.py's ResNet18 on CIFAR-10: stages 16/32/64/128, 701,466 parameters (width 64 had 11,173,962)."""
    net = _full_make()()
    assert count_params(net) == 701_466
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 16 and convs[-1].out_channels == 128
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_models_keep_pytorch_default_init():
    """resnet.py sets no init: every layer is PyTorch's default (what shrink-perturb's fresh model supplies).
    Exact: with the same seed, the stem conv is what a freshly constructed nn.Conv2d draws; statistics: every
    conv/linear weight is uniform in +-1/sqrt(fan_in) (std bound/sqrt 3), not Kaiming-normal (fan_out)."""
    make = _full_make()
    torch.manual_seed(3)
    net = make()
    torch.manual_seed(3)
    resnet18(num_classes=10, in_channels=3, width=16)  # the same construction draws
    ref = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    stem = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert torch.equal(stem.weight, ref.weight)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()
            bound = 1.0 / math.sqrt(w[0].numel())
            assert float(w.abs().max()) <= bound * (1 + 1e-6)  # float32 rounding of the bound
            if w.numel() >= 1000:
                assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))
    # the small/smoke MLP (suite.models.MLP) is nn.Linear's default as built: same seed, same first layer
    cfg = _cfg()
    data = load_data(cfg, for_tests())
    torch.manual_seed(4)
    mlp = model_factory(cfg, data, torch.device("cpu"))()
    torch.manual_seed(4)
    lin = nn.Linear(cfg.ts_dim, cfg.hidden[0])
    first = next(m for m in mlp.modules() if isinstance(m, nn.Linear))
    assert torch.equal(first.weight, lin.weight) and torch.equal(first.bias, lin.bias)


def test_official_batch_weights_are_run_py_train_count():
    """run.py's train(): window counts reset after batches 10, 20, ...; the running counts are summed each
    batch. The weights reproduce that loop exactly, and differ from the plain fraction correct."""
    g = torch.Generator().manual_seed(0)
    for per_epoch in (1, 2, 10, 11, 12, 13, 25, 40, 263):
        sizes = [128] * (per_epoch - 1) + [int(torch.randint(1, 129, (1,), generator=g))]
        correct = [int(torch.randint(0, s + 1, (1,), generator=g)) for s in sizes]
        w = M.official_batch_weights(per_epoch)
        mine = sum(a * c for a, c in zip(w, correct)) / sum(a * s for a, s in zip(w, sizes))
        assert mine == pytest.approx(official_train_accuracy(correct, sizes), rel=1e-12)
    assert M.official_batch_weights(13) == [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 2, 1]
    # an epoch whose accuracy rises batch by batch: run.py's count weighs the early batches more
    correct, sizes = [0] * 11 + [10] * 11, [10] * 22
    assert official_train_accuracy(correct, sizes) < sum(correct) / sum(sizes)


class _Recorder(nn.Module):
    """A fixed classifier (lr 0: it never changes) that records every training minibatch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.0, 1.0], [0.0, -1.0]]))
            self.lin.bias.zero_()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x[:, 0].long().clone())
        return self.lin(x)


def test_train_to_accuracy_uses_run_py_count():
    """The accuracy train_to_accuracy stops on is run.py's count of the epoch's minibatches, not the plain
    fraction correct (the old rule): per-batch accuracies vary, so the two differ."""
    n = 200
    idx = torch.arange(n, dtype=torch.float32)
    y = (torch.arange(n) % 3 == 0).long()  # the recorder predicts class 0 on feature +1, class 1 on -1
    sign = torch.where(torch.arange(n) < 120, 1.0, -1.0)
    x = torch.stack([idx, sign], 1)
    net = _Recorder()
    cost = M.train_to_accuracy(net, x, y, lr=0.0, batch_size=8, optimizer="sgd", weight_decay=0.0,
                               target_acc=1.0, max_epochs=1, generator=torch.Generator().manual_seed(1),
                               device=torch.device("cpu"))
    assert len(net.seen) == 25 and not cost.reached
    pred = (sign < 0).long()
    correct = [int((pred[b] == y[b]).sum()) for b in net.seen]
    sizes = [b.numel() for b in net.seen]
    assert cost.train_acc == pytest.approx(official_train_accuracy(correct, sizes), abs=1e-9)
    assert abs(cost.train_acc - sum(correct) / n) > 1e-3
