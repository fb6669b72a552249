"""The accuracy-track architectures of BiBench's CIFAR-10 configs (htqin/BiBench @ 5a04a6d, ``configs/acc_cifar10/``):
ResNet-18, ResNet-20, ResNet-34, Bi-Real-18 and ReActNet, built as ``bibench/models/backbones/`` builds them.

The expected parameter counts are derived here from the official definitions by hand-written formulas (not from our
modules), so a changed block layout, width, stride, shortcut or bias makes them fail."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from reproductions.bibench import BiBenchConfig, FULL_ARCHS, SMALL, SMOKE
from reproductions.bibench import experiment
from reproductions.bibench.experiment import Bench, Data, _check_cfg, accuracy_tracks, fp_schedule
from reproductions.bibench.layers import ALGO_NAMES, BinaryConv2d, BinaryOptions, binary_layers
from reproductions.bibench.models import REACTNET_WIDTHS, binarizable, binarize, build
from suite import config, registry
from suite.context import for_tests
from suite.errors import UnknownNameError
from suite.spec import DatasetRef

torch.set_num_threads(1)

# the architectures of configs/acc_cifar10/<arch>_<algo>_*.py (file-name prefixes)
OFFICIAL_ARCHS = ("resnet18", "resnet20", "resnet34", "bireal18", "reactnet")


def _full() -> BiBenchConfig:
    return config.resolve(registry.get("bibench"), "full")


def _official_cifar_resnet_params(blocks: tuple[int, ...], classes: int = 10) -> int:
    """BiBench ``ResNet_CIFAR`` (resnet.py / resnet_cifar.py), stem_channels = base_channels = 64, BasicBlock:
    stem 3x3 conv 3 -> 64 (no bias) + BN; stage i (width 64 * 2^i, stride 1 then 2) has ``blocks[i]`` BasicBlocks
    of two 3x3 convs (no bias) + two BNs; ``ResLayer`` adds a 1x1 conv + BN downsample where stride != 1 or the
    width changes (the first block of stages 2-4); LinearClsHead 512 -> classes with bias. BN = 2 C parameters."""
    n = 3 * 64 * 9 + 2 * 64
    c_in = 64
    for i, nb in enumerate(blocks):
        c = 64 * 2 ** i
        for j in range(nb):
            cin = c_in if j == 0 else c
            n += cin * c * 9 + c * c * 9 + 2 * (2 * c)
            if j == 0 and (i > 0 or cin != c):
                n += cin * c + 2 * c
        c_in = c
    return n + c_in * classes + classes


def _official_reactnet_params(classes: int = 10) -> int:
    """BiBench ``reactnet.py``: firstconv3x3 (3x3 conv 3 -> 32 without bias, BN 32); per BasicBlock(i, p): binary
    3x3 conv i -> i with nn.Conv2d's default bias (9 i^2 + i), BN i (2 i), move12 / PReLU(i) / move13 (3 i); when
    i == p one 1x1 conv i -> p with bias + BN p (i p + p + 2 p), else two 1x1 convs i -> i with bias + two BNs i
    (2 (i^2 + i) + 4 i); move22 / PReLU(p) / move23 (3 p). stage_out_channel = [32, 64, 128 x 2, 256 x 2, 512 x 6,
    1024 x 2]; LinearClsHead 1024 -> classes with bias."""
    w = [32, 64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024] * 2
    n = 3 * 32 * 9 + 2 * 32
    for i, p in zip(w[:-1], w[1:]):
        n += 9 * i * i + i + 2 * i + 3 * i
        n += (i * p + p + 2 * p) if i == p else (2 * (i * i + i) + 4 * i)
        n += 3 * p
    return n + 1024 * classes + classes


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_the_formulas_reproduce_the_known_resnet18_count():
    # the formula is checked on a model whose count is known independently (suite.models.resnet18's docstring)
    assert _official_cifar_resnet_params((2, 2, 2, 2)) == 11_173_962 == _params(build("resnet18", 10, 3, 32))


def test_full_preset_runs_the_official_architectures():
    archs = _full().archs
    # the five official ones, in the README's order, ResNet-18 first (the main track); VGG-small kept as a sixth
    assert tuple(a for a in archs if a != "vgg_small") == OFFICIAL_ARCHS and archs == FULL_ARCHS
    assert set(archs) - set(OFFICIAL_ARCHS) == {"vgg_small"} and archs[0] == "resnet18"
    assert set(OFFICIAL_ARCHS) <= set(_full().complexity_archs)


def test_resnet34_is_the_official_cifar_resnet34():
    m = build("resnet34", 10, 3, 32)
    assert _params(m) == _official_cifar_resnet_params((3, 4, 6, 3)) == 21_282_122
    assert [b.conv2.out_channels for b in m.blocks] == [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
    assert [b.stride for b in m.blocks] == [1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1]
    assert m.stem[0].kernel_size == (3, 3) and m.stem[0].stride == (1, 1) and len(m.stem) == 3  # no max-pool
    assert isinstance(m.stem[2], nn.Hardtanh)  # first_act_cfg = Hardtanh
    x = torch.randn(2, 3, 32, 32)
    feat = m.stem(x)
    for b in m.blocks:
        feat = b(feat)
    assert feat.shape == (2, 512, 4, 4) and m(x).shape == (2, 10)
    # conv_cfg replaces the 32 block convs; stem, head and the 3 downsample projections stay FP
    names = binarizable(m)
    assert len(names) == 32 and not any(".proj." in f".{n}." for n in names)
    assert sum(b.proj is not None for b in m.blocks) == 3


def test_bireal18_is_built_as_the_official_code_builds_it():
    # configs/_base_/models/bireal18.py sets bireal_cut=True, but ResNet.__init__ never passes it to
    # make_res_layer: every BasicBlock has bireal_cut=False, so the official Bi-Real-18 is ResNet-18's layout
    torch.manual_seed(0)
    a = build("bireal18", 10, 3, 32)
    torch.manual_seed(0)
    b = build("resnet18", 10, 3, 32)
    assert _params(a) == _official_cifar_resnet_params((2, 2, 2, 2))
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a.eval()(x), b.eval()(x)) and len(binarizable(a)) == 16


def test_reactnet_is_the_official_reactnet():
    m = build("reactnet", 10, 3, 32)
    assert list(REACTNET_WIDTHS) == [32, 64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024] * 2
    assert _params(m) == _official_reactnet_params() == 28_329_834
    # FP stem: 3x3 stride-2 conv without bias (firstconv3x3), the same backbone for CIFAR-10 as for ImageNet
    assert m.stem.stride == (2, 2) and m.stem.bias is None and m.fc.in_features == 1024
    # stride 2 where the width changes, except 32 -> 64 (``stage_out_channel[i] != 64``)
    assert [b.conv3x3.stride[0] for b in m.blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert [len(b.pw) for b in m.blocks] == [2, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]  # two 1x1 convs where it doubles
    x = torch.randn(2, 3, 32, 32)
    feat = m.bn(m.stem(x))
    shapes = []
    for b in m.blocks:
        feat = b(feat)
        shapes.append(tuple(feat.shape[1:]))
    assert shapes[0] == (64, 16, 16) and shapes[-1] == (1024, 1, 1) and m(x).shape == (2, 10)
    # every block conv is a binarized conv (conv_cfg); only the stem conv and the head stay FP: 8 blocks x 2 + 5 x 3
    names = binarizable(m)
    assert len(names) == 31 and "stem" not in names and "fc" not in names


def _official_block_forward(b, x):
    """``reactnet.py`` BasicBlock.forward written out with functional ops on the block's own parameters."""
    F = torch.nn.functional

    def bn(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    def conv(m, t):
        return F.conv2d(t, m.weight, m.bias, m.stride, m.padding)

    out1 = bn(b.bn1, conv(b.conv3x3, x))
    if b.conv3x3.stride[0] == 2:
        x = F.avg_pool2d(x, 2, 2)
    out1 = x + out1
    out1 = F.prelu(out1 + b.move12.bias, b.prelu1.weight) + b.move13.bias
    if len(b.pw) == 1:
        out2 = bn(b.bn2[0], conv(b.pw[0], out1)) + out1
    else:
        out2 = torch.cat([bn(b.bn2[0], conv(b.pw[0], out1)) + out1, bn(b.bn2[1], conv(b.pw[1], out1)) + out1], 1)
    return F.prelu(out2 + b.move22.bias, b.prelu2.weight) + b.move23.bias


@pytest.mark.parametrize("block", [0, 1, 2])  # 32 -> 64 stride 1, 64 -> 128 stride 2, 128 -> 128 stride 1
def test_reactnet_block_forward_is_the_official_one(block):
    torch.manual_seed(block)
    b = build("reactnet", 10, 3, 32).blocks[block].eval()
    with torch.no_grad():  # non-trivial shifts, PReLU slopes and BN statistics
        for p in b.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for m in b.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, b.conv3x3.in_channels, 16 // max(1, block), 16 // max(1, block))
    with torch.no_grad():
        assert torch.allclose(b(x), _official_block_forward(b, x), atol=1e-5)


@pytest.mark.parametrize("arch,n_binary", [("resnet34", 32), ("bireal18", 16), ("reactnet", 31)])
def test_every_algorithm_plugs_into_the_new_backbones(arch, n_binary):
    torch.manual_seed(0)
    fp = build(arch, 10, 3, 32)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    first = next(n for n, m in fp.named_modules() if isinstance(m, nn.Conv2d))
    for algo in ALGO_NAMES:
        b = binarize(fp, algo)
        layers = dict(binary_layers(b))
        assert len(layers) == n_binary and set(layers) == set(binarizable(fp))
        assert type(b.get_submodule(first)) is nn.Conv2d and type(b.fc) is nn.Linear  # first / last layer FP
        name = next(iter(layers))
        assert isinstance(layers[name], BinaryConv2d) and layers[name].algo.name == algo
        assert torch.equal(layers[name].weight, fp.get_submodule(name).weight)  # FP-pretrained initialisation
        torch.nn.functional.cross_entropy(b(x), y).backward()
        assert all(torch.isfinite(p.grad).all() for p in b.parameters() if p.grad is not None)
        assert layers[name].weight.grad is not None


def test_reactnet_fp_model_trains_with_the_official_adam_schedule():
    # acc_cifar10/reactnet_fp32.py: adam_1e-3_cosinelr_200e (no weight decay); the other fp32 files sgd_1e-1 wd 1e-4
    full = _full()
    assert fp_schedule(full, "reactnet") == ("adam_1e-3_cosine", 0.0)
    for arch in ("resnet18", "resnet20", "resnet34", "bireal18", "vgg_small"):
        assert fp_schedule(full, arch) == ("sgd_1e-1_cosine", pytest.approx(1e-4))
    _check_cfg(full)
    with pytest.raises(UnknownNameError):
        _check_cfg(BiBenchConfig(fp_arch_settings=("reactnett:adam_1e-3_cosine",)))


def test_accuracy_track_trains_each_fp_model_with_its_official_schedule(monkeypatch):
    """``accuracy_tracks`` on a 4-image CIFAR-shaped stand-in with ``fit`` and evaluation stubbed: the TrainConfig
    each FP and binarized fit receives (a track that ignored ``fp_arch_settings`` would give ReActNet SGD)."""
    seen = {}

    def fake_fit(model, loss_fn, data, tc, *, name="", **kw):
        seen[name] = tc
        return SimpleNamespace(total_steps=1)

    monkeypatch.setattr(experiment, "fit", fake_fit)
    monkeypatch.setattr(Bench, "evaluate", lambda self, model, x: 0.5)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    y = torch.tensor([0, 1, 2, 9])
    data = Data(x, y, x.clone(), y.clone(), torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1),
                DatasetRef(name="cifar-10-stub", provenance="stand-in"))
    cfg = dataclasses.replace(_full(), archs=("resnet34", "reactnet"), algorithms=("bnn",), hyper_settings=(),
                              severities=1)
    ctx = for_tests()
    m = accuracy_tracks(Bench(cfg, ctx, data, BinaryOptions()), cfg, ctx)
    assert set(seen) == {"fp-resnet34", "resnet34-bnn", "fp-reactnet", "reactnet-bnn"}
    fp_r, fp_a = seen["fp-resnet34"], seen["fp-reactnet"]
    assert (fp_r.optimizer, fp_r.lr, fp_r.weight_decay, fp_r.momentum) == ("sgd", 0.1, pytest.approx(1e-4), 0.9)
    assert (fp_a.optimizer, fp_a.lr, fp_a.weight_decay) == ("adam", 1e-3, 0.0)
    for n in ("resnet34-bnn", "reactnet-bnn"):  # binarized: adam_1e-3_cosinelr_400e for every architecture
        assert (seen[n].optimizer, seen[n].lr, seen[n].weight_decay, seen[n].epochs) == ("adam", 1e-3, 0.0, 400)
    assert {"acc/resnet34/bnn", "acc/reactnet/bnn", "ratio_mean/cnn/reactnet", "acc_reactnet@algo=1"} <= set(m)


def test_smoke_and_small_presets_keep_their_architectures():
    assert "archs" not in SMOKE and "archs" not in SMALL and "fp_arch_settings" not in SMALL
    small = config.resolve(registry.get("bibench"), "small")
    assert small.archs == ("digits_cnn", "digits_mlp") and small.fp_arch_settings == ()


def test_fp_resnets_zero_initialise_each_blocks_second_bn():
    """BiBench's ``ResNet.init_weights`` (``zero_init_residual=True``, backbones/resnet.py) starts every BasicBlock's
    second BN weight at 0 for FP training from scratch; the first BN and the projections' BN stay at 1."""
    from suite.models.resnet import BasicBlock
    from reproductions.bibench.models import ZERO_INIT_RESIDUAL
    for arch in ZERO_INIT_RESIDUAL:
        model = build(arch, 10, 3, 32)
        blocks = [b for b in model.modules() if isinstance(b, BasicBlock)]
        assert blocks, arch
        for b in blocks:
            assert torch.all(b.bn2.weight == 0), arch
            assert torch.all(b.bn1.weight == 1), arch
            if b.proj is not None:
                assert torch.all(b.proj[1].weight == 1), arch


def test_binarized_reactnet_convs_keep_the_bias_only_where_bibench_does():
    """BiBench's BNN, XNOR, DoReFa, Bi-Real, XNOR++ and ReAct convs are built without a bias (the FP checkpoint's
    bias is dropped by the non-strict load); the FDA and ReCU convs subclass nn.Conv2d and keep it."""
    torch.manual_seed(0)
    fp = build("reactnet", 10, 3, 32)
    assert all(fp.get_submodule(n).bias is not None for n in binarizable(fp))  # nn.Conv2d's default bias
    for algo in ALGO_NAMES:
        layers = dict(binary_layers(binarize(fp, algo)))
        keep = algo in ("fda", "recu")
        assert all((m.bias is not None) == keep for m in layers.values()), algo
        if keep:
            assert all(torch.equal(m.bias, fp.get_submodule(n).bias) for n, m in layers.items())
