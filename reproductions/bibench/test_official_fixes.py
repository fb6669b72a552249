"""Issue 17 item 1: where the full preset deviated from BiBench's official code by accident, it now follows it.
Each test fails on the old behaviour (README "Full preset against the official code"; htqin/BiBench @ 5a04a6d)."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from reproductions.bibench import BiBenchConfig, SMALL, SMOKE
from reproductions.bibench import experiment
from reproductions.bibench.experiment import Bench, load, train_config, training_consumption
from reproductions.bibench.layers import BinaryOptions
from reproductions.bibench.models import binarizable, binarize, build
from suite import config, registry
from suite.context import for_tests
from suite.train import TrainConfig, optimizer

torch.set_num_threads(1)


def _full() -> BiBenchConfig:
    return config.resolve(registry.get("bibench"), "full")


def test_full_fp_weight_decay_is_the_official_1e_4():
    # configs/_base_/schedules/sgd_1e-1_cosinelr_200e.py: weight_decay=1e-4 (was 5e-4 here)
    assert _full().fp_weight_decay == pytest.approx(1e-4)


def test_sgd_momentum_follows_the_official_schedule_files():
    cfg = _full()
    # sgd_*_cosinelr_*.py set momentum=0.9; sgd_*_steplr_200e.py set none (torch SGD default 0)
    assert train_config(cfg, 1, "sgd_1e-1_cosine", 0.0).momentum == 0.9
    assert train_config(cfg, 1, "sgd_1e-1_step", 0.0).momentum == 0.0
    assert train_config(cfg, 1, "sgd_1e-2_step", 0.0).momentum == 0.0
    opt = optimizer([nn.Parameter(torch.zeros(2))], train_config(cfg, 1, "sgd_1e-2_step", 1e-4))
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[0]["weight_decay"] == 1e-4


def _hyper_calls(cfg: BiBenchConfig, monkeypatch) -> dict[str, TrainConfig]:
    """The TrainConfig of every hyper-sensitivity fit of ``training_consumption`` (training itself stubbed)."""
    seen: dict[str, TrainConfig] = {}

    def fake_fit(model, loss_fn, data, tc, *, name="", **kw):
        seen[name] = tc
        return SimpleNamespace(total_steps=1)

    monkeypatch.setattr(experiment, "fit", fake_fit)
    ctx = for_tests()
    bench = Bench(cfg, ctx, load("digits", ctx), BinaryOptions())
    monkeypatch.setattr(Bench, "evaluate", lambda self, model, x: 0.5)
    training_consumption(bench, cfg, ctx, {a: 1.0 for a in ("fp", *cfg.algorithms)})
    return seen


def test_hyper_runs_use_the_official_weight_decay_and_momentum(monkeypatch):
    full = _full()
    cfg = dataclasses.replace(BiBenchConfig(**SMOKE), algorithms=("bnn",), archs=("digits_cnn",),
                              hyper_settings=full.hyper_settings, hyper_weight_decay=full.hyper_weight_decay,
                              fp_weight_decay=full.fp_weight_decay, weight_decay=full.weight_decay)
    seen = _hyper_calls(cfg, monkeypatch)
    assert len(seen) == 16
    for s in full.hyper_settings:
        for a in ("fp", "bnn"):
            tc = seen[f"hyper-{s}-{a}"]
            # SGD schedules: weight_decay=1e-4 for FP and binarized alike; Adam schedules: none
            assert tc.weight_decay == pytest.approx(1e-4 if s.startswith("sgd") else 0.0), (s, a)
            if s.startswith("sgd"):
                assert tc.momentum == (0.9 if s.endswith("cosine") else 0.0), (s, a)


def test_small_preset_values_are_unchanged(monkeypatch):
    # preset values move at full only: small keeps no weight decay in its (cosine-only) hyper runs
    small = config.resolve(registry.get("bibench"), "small")
    assert small.hyper_weight_decay == 0.0 and small.fp_weight_decay == 0.0
    seen = _hyper_calls(dataclasses.replace(BiBenchConfig(**SMALL), algorithms=("bnn",), archs=("digits_cnn",),
                                            hyper_epochs=1), monkeypatch)
    assert all(tc.weight_decay == 0.0 for tc in seen.values())
    assert all(tc.momentum == 0.9 for n, tc in seen.items() if "-sgd_" in n)


def test_resnet20_is_the_official_projection_resnet20():
    m = build("resnet20", 10, 3, 32)
    # BiBench ResLayer: 1x1 conv + BN projection where the shape changes, never option-A zero padding
    projs = [b.proj for b in m.blocks if b.proj is not None]
    assert len(projs) == 3
    assert all(isinstance(p[0], nn.Conv2d) and p[0].kernel_size == (1, 1) and isinstance(p[1], nn.BatchNorm2d)
               for p in projs)
    # stem_channels defaults to 64 in BiBench's ResNet and configs/_base_/models/resnet20.py does not set it
    assert m.conv.out_channels == 64 and m.blocks[0].conv1.in_channels == 64
    assert [b.conv2.out_channels for b in m.blocks] == [16] * 3 + [32] * 3 + [64] * 3 and m.fc.in_features == 64
    # 18 binarized 3x3 convs; stem, head and the three projections stay FP (downsample_conv_cfg unset)
    names = binarizable(m)
    assert len(names) == 18 and not any(".proj." in f".{n}." for n in names)
    b = binarize(m, "bnn")
    assert b(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cifar10_is_normalised_with_the_official_constants():
    # configs/_base_/datasets/cifar10.py img_norm_cfg on 0-255 pixels (was: statistics of the loaded pixels)
    d = load("cifar-10", for_tests("full", dry_run=True))  # the published-format fixture where no data is on disk
    want_mean = torch.tensor([125.307, 122.961, 113.8575]) / 255
    want_std = torch.tensor([51.5865, 50.847, 51.255]) / 255
    assert torch.allclose(d.mean.flatten(), want_mean) and torch.allclose(d.std.flatten(), want_std)
    assert d.mean.shape == (1, 3, 1, 1)
    dg = load("digits", for_tests())  # the digits stand-in keeps its own statistics
    assert torch.allclose(dg.mean.flatten(), dg.x_train.mean((0, 2, 3)))


def test_recu_alpha_starts_uniform_as_the_official():
    # BiBench recu.py: alpha = torch.rand(c_out, 1, 1); the pretrained checkpoint carries none
    conv = nn.Conv2d(16, 32, 3, bias=False)
    with torch.no_grad():
        conv.weight.mul_(100)  # mean|W| ~ 8: an initialisation from the weights would leave [0, 1)
    torch.manual_seed(0)
    b = binarize(nn.Sequential(nn.Conv2d(3, 16, 1), conv, nn.Conv2d(32, 2, 1)), "recu")
    alpha = b[1].alpha.detach().flatten()
    assert alpha.shape == (32,) and float(alpha.min()) >= 0 and float(alpha.max()) < 1
    assert float(alpha.std()) > 0.1  # drawn, not a constant
