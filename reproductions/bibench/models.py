"""Architectures of the benchmark and the drop-in binarization of a full-precision model (spec §3, §5, §6).

- ``digits_cnn``: spec §6 CPU model: FP conv3x3(16), three conv blocks of 32 channels (BN + Hardtanh,
  real-valued shortcut), global pool, FP linear head.
- ``digits_mlp``: an MLP family for the architecture track (FP first/last Linear, BN + Hardtanh).
- ``vgg_small``: VGG-small for CIFAR (Zhang et al. 2018, LQ-Nets; 128-128-M-256-256-M-512-512-M, FC).
- ``resnet20`` / ``resnet18`` / ``resnet34``: the shared suite ResNets with Hardtanh instead of ReLU (BiBench
  configs set ``act_cfg=Hardtanh`` for binarized ResNets: sign(ReLU(x)) would be constant +1). ResNet-20 is
  BiBench's ``configs/_base_/models/resnet20.py`` on ``BiBench_ResNet_CIFAR``: 1x1 conv + BN projection
  shortcuts wherever the shape changes (``ResLayer``), and a 64-channel stem (the config sets
  ``base_channels=16`` but leaves ``stem_channels`` at its default 64), so the first block maps 64 -> 16
  channels through a projection. ResNet-34 is ``configs/_base_/models/resnet34.py`` on
  ``BiBench_ResNet_CIFAR``: ResNet-18's CIFAR stem and widths with (3, 4, 6, 3) BasicBlocks.
- ``bireal18``: ``configs/_base_/models/bireal18.py`` is ResNet-18 with ``bireal_cut=True``, but BiBench's
  ``ResNet.__init__`` (``bibench/models/backbones/resnet.py``) takes ``bireal_cut`` and never passes it to
  ``make_res_layer``, so every BasicBlock keeps ``bireal_cut=False``: the official Bi-Real-18 is built
  exactly as ResNet-18 (its own FP model, ``bireal18_cifar10.pth``). We build what the code builds.
- ``reactnet``: ``bibench/models/backbones/reactnet.py`` (``BiBench_ReActNet``, the same backbone for
  CIFAR-10 as for ImageNet): FP 3x3 stride-2 stem conv 3 -> 32 + BN (no activation), 13 blocks with
  widths 64, 128, 128, 256, 256, 512 x 6, 1024 x 2 (stride 2 where the width doubles, except 32 -> 64),
  GAP, FP linear 1024 -> 10. See :class:`ReActBlock`.

``binarize(model, algo)`` replaces every Conv2d/Linear except the first and the last layer (and, as in
BiBench's configs, the 1x1 downsample projections unless ``binarize_downsample``) by the algorithm's
binarized operator, starting from the FP weights (BiBench ``init_cfg=Pretrained``).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from reproductions.bibench.layers import BinaryConv2d, BinaryLinear, BinaryOptions, get_algorithm
from suite.errors import ConfigError, UnknownNameError
from suite.models import resnet18 as _resnet18
from suite.models import resnet20 as _resnet20
from suite.models.resnet import BasicBlock, CifarResNet, ResNet, _init

RESNET20_STEM = 64  # BiBench ResNet(stem_channels=64) default, not overridden by configs/_base_/models/resnet20.py


def _shortcut(x: torch.Tensor, c_out: int, stride: int) -> torch.Tensor:
    """Parameter-free shortcut: strided identity with zero-padded channels (He et al. option A)."""
    if stride != 1:
        x = x[:, :, ::stride, ::stride]
    pad = c_out - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, 0, pad)) if pad > 0 else x


class ConvBlock(nn.Module):
    """conv3x3 -> BN -> (+ real-valued shortcut) -> Hardtanh."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.c_out, self.stride, self.use_shortcut = c_out, stride, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if self.use_shortcut:
            y = y + _shortcut(x, self.c_out, self.stride)
        return F.hardtanh(y)


class DigitsCNN(nn.Module):
    """Spec §6: FP conv(16) + BN + Hardtanh, 3 blocks of ``width`` channels (strides 1, 2, 1), pool, FP head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, stem: int = 16, width: int = 32,
                 shortcut: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(stem)
        self.blocks = nn.Sequential(ConvBlock(stem, width, 1, shortcut), ConvBlock(width, width, 2, shortcut),
                                    ConvBlock(width, width, 1, shortcut))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardtanh(self.bn(self.stem(x)))
        return self.fc(self.blocks(x).mean((2, 3)))


class DigitsMLP(nn.Module):
    """Architecture-track MLP: FP Linear(in, h), then ``depth`` Linear(h, h) blocks (BN + Hardtanh), FP head."""

    def __init__(self, in_dim: int = 64, num_classes: int = 10, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.bn0 = nn.BatchNorm1d(hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.bns = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(depth))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardtanh(self.bn0(self.inp(x.flatten(1))))
        for lin, bn in zip(self.hidden, self.bns):
            x = F.hardtanh(bn(lin(x)))  # plain MLP (PointNet-style), no shortcut
        return self.fc(x)


class VGGSmall(nn.Module):
    """VGG-small (LQ-Nets, Zhang et al. 2018): conv widths 128,128,M,256,256,M,512,512,M; FC 512*s*s -> 10.

    BN + Hardtanh after every conv; max-pool after the second conv of each stage.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for stage in ((128, 128), (256, 256), (512, 512)):
            for j, w in enumerate(stage):
                layers += [nn.Conv2d(c, w, 3, 1, 1, bias=False)]
                if j == 1:
                    layers += [nn.MaxPool2d(2)]
                layers += [nn.BatchNorm2d(w), nn.Hardtanh()]
                c = w
        self.features = nn.Sequential(*layers)
        s = image_size // 8
        self.fc = nn.Linear(512 * s * s, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class _HardtanhBlock(BasicBlock):
    """The shared BasicBlock with Hardtanh in place of ReLU (BiBench binarized ResNets)."""

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.hardtanh(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(self.residual(x) + self.shortcut(x))


class _HardtanhCifarResNet(CifarResNet):
    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardtanh(self.bn(self.conv(x)))
        for b in self.blocks:
            x = b(x)
        return x.mean((2, 3))


def _hardtanh_blocks(model: nn.Module) -> None:
    for b in model.blocks:  # type: ignore[attr-defined]
        b.__class__ = _HardtanhBlock


def resnet20(num_classes: int = 10, in_channels: int = 3, stem: int = RESNET20_STEM) -> nn.Module:
    """BiBench's CIFAR ResNet-20: widths 16-32-64 with projection ("B") shortcuts and a ``stem``-channel stem."""
    m = _resnet20(num_classes=num_classes, in_channels=in_channels, shortcut="B")
    width = m.blocks[0].conv1.out_channels
    if stem != width:  # stem conv -> `stem` channels; block 0 projects them to `width` (BiBench ResLayer)
        m.conv = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        m.bn = nn.BatchNorm2d(stem)
        m.blocks[0] = BasicBlock(stem, width, 1, "B")
        _init(m)
    m.__class__ = _HardtanhCifarResNet
    _hardtanh_blocks(m)
    return m


def resnet18(num_classes: int = 10, in_channels: int = 3, cifar_stem: bool = True) -> nn.Module:
    m = _resnet18(num_classes=num_classes, in_channels=in_channels, cifar_stem=cifar_stem)
    m.stem[2] = nn.Hardtanh()
    _hardtanh_blocks(m)
    return m


def resnet34(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """BiBench's CIFAR ResNet-34 (``configs/_base_/models/resnet34.py`` with ``BiBench_ResNet_CIFAR``): the
    ResNet-18 CIFAR stem (3x3 stride 1, no max-pool), widths 64-128-256-512, (3, 4, 6, 3) BasicBlocks with
    1x1 conv + BN projections where the shape changes (``ResLayer``), Hardtanh as ``resnet18``."""
    m = ResNet((3, 4, 6, 3), num_classes, in_channels, 64, cifar_stem=True)
    m.stem[2] = nn.Hardtanh()
    _hardtanh_blocks(m)
    return m


class LearnableBias(nn.Module):
    """ReActNet's learnable per-channel shift (``reactnet.py`` ``LearnableBias``, zero-initialised)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class ReActBlock(nn.Module):
    """BiBench ``reactnet.py`` ``BasicBlock`` (ReActNet, Liu et al. 2020, Fig. 3 / MobileNet-style blocks).

    3x3 conv (c_in -> c_in, ``stride``) + BN, added to the input (2x2 average-pooled when stride 2), then
    shift / PReLU / shift; 1x1 conv(s) + BN added to that: one c_in -> c_out conv when the width is kept, two
    c_in -> c_in convs concatenated when it doubles; then shift / PReLU / shift. Every conv here is a
    binarized conv (``conv_cfg``); their bias is nn.Conv2d's default (``build_conv_layer`` without ``bias``).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv3x3 = nn.Conv2d(c_in, c_in, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.move12, self.prelu1, self.move13 = LearnableBias(c_in), nn.PReLU(c_in), LearnableBias(c_in)
        if c_in == c_out:
            self.pw = nn.ModuleList([nn.Conv2d(c_in, c_out, 1)])
            self.bn2 = nn.ModuleList([nn.BatchNorm2d(c_out)])
        else:
            if c_out != 2 * c_in:
                raise ConfigError(f"ReActBlock: c_out must be c_in or 2 c_in, got {c_in} -> {c_out}")
            self.pw = nn.ModuleList([nn.Conv2d(c_in, c_in, 1), nn.Conv2d(c_in, c_in, 1)])
            self.bn2 = nn.ModuleList([nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_in)])
        self.move22, self.prelu2, self.move23 = LearnableBias(c_out), nn.PReLU(c_out), LearnableBias(c_out)
        # BiBench only pools the shortcut when the width changes; every stride-2 block of ReActNet doubles it
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.bn1(self.conv3x3(x)) + (self.pool(x) if self.pool is not None else x)
        out1 = self.move13(self.prelu1(self.move12(out1)))
        out2 = torch.cat([bn(pw(out1)) + out1 for pw, bn in zip(self.pw, self.bn2)], dim=1)
        return self.move23(self.prelu2(self.move22(out2)))


REACTNET_WIDTHS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)  # stage_out_channel


class ReActNet(nn.Module):
    """BiBench ``BiBench_ReActNet`` (``reactnet.py``) + GAP neck + linear head (``configs/_base_/models/
    reactnet.py``, head 1024 -> 10 for CIFAR-10). The stem is ``firstconv3x3``: FP 3x3 conv stride 2 (no bias)
    + BN, no activation; the CIFAR-10 configs use this same ImageNet backbone, so 32x32 inputs reach the head
    at 1x1. Block i maps widths[i-1] -> widths[i] with stride 2 where the width changes, except to 64."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        w = REACTNET_WIDTHS
        self.stem = nn.Conv2d(in_channels, w[0], 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(w[0])
        self.blocks = nn.ModuleList(ReActBlock(w[i - 1], w[i], 2 if w[i - 1] != w[i] and w[i] != 64 else 1)
                                    for i in range(1, len(w)))
        self.fc = nn.Linear(w[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.stem(x))
        for b in self.blocks:
            x = b(x)
        return self.fc(x.mean((2, 3)))


ARCHS: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": lambda num_classes=10, in_channels=1, image_size=8: DigitsCNN(in_channels, num_classes),
    "digits_mlp": lambda num_classes=10, in_channels=1, image_size=8: DigitsMLP(in_channels * image_size ** 2,
                                                                                num_classes),
    "vgg_small": lambda num_classes=10, in_channels=3, image_size=32: VGGSmall(in_channels, num_classes, image_size),
    "resnet20": lambda num_classes=10, in_channels=3, image_size=32: resnet20(num_classes, in_channels),
    "resnet18": lambda num_classes=10, in_channels=3, image_size=32: resnet18(num_classes, in_channels, True),
    "resnet34": lambda num_classes=10, in_channels=3, image_size=32: resnet34(num_classes, in_channels),
    # the official Bi-Real-18 is built as ResNet-18 (bireal_cut is dropped by ResNet.__init__; module docstring)
    "bireal18": lambda num_classes=10, in_channels=3, image_size=32: resnet18(num_classes, in_channels, True),
    "reactnet": lambda num_classes=10, in_channels=3, image_size=32: ReActNet(in_channels, num_classes),
    "resnet18_imagenet": lambda num_classes=1000, in_channels=3, image_size=224: resnet18(num_classes, in_channels,
                                                                                          False),
}
FAMILY = {"digits_cnn": "cnn", "vgg_small": "cnn", "resnet20": "cnn", "resnet18": "cnn", "resnet34": "cnn",
          "bireal18": "cnn", "reactnet": "cnn", "digits_mlp": "mlp"}


# BiBench's ResNet(zero_init_residual=True) default: init_weights sets each BasicBlock's second BN weight to 0
# for training from scratch (backbones/resnet.py init_weights; suppressed only for a Pretrained init_cfg)
ZERO_INIT_RESIDUAL = ("resnet18", "resnet20", "resnet34", "bireal18")


def build(arch: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    if arch not in ARCHS:
        raise UnknownNameError(f"unknown architecture {arch!r}; use one of {sorted(ARCHS)}")
    model = ARCHS[arch](num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    if arch in ZERO_INIT_RESIDUAL:
        for block in model.modules():
            if isinstance(block, BasicBlock):
                nn.init.zeros_(block.bn2.weight)
    return model


def binarizable(model: nn.Module, binarize_downsample: bool = False) -> list[str]:
    """Names of the Conv2d/Linear layers to binarize: all but the first and the last (spec §3), and
    not the downsample projections (``proj``) unless ``binarize_downsample``."""
    names = [n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    inner = names[1:-1]
    if not binarize_downsample:
        inner = [n for n in inner if ".proj." not in f".{n}."]
    return inner


def binarize(model: nn.Module, algo: str, opts: BinaryOptions | None = None,
             binarize_downsample: bool = False) -> nn.Module:
    """A copy of ``model`` whose inner layers are ``algo``'s binarized operators (FP weights copied)."""
    get_algorithm(algo)
    out = copy.deepcopy(model)
    for name in binarizable(out, binarize_downsample):
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        layer = getattr(parent, child)
        new = (BinaryConv2d.from_float(layer, algo, opts) if isinstance(layer, nn.Conv2d)
               else BinaryLinear.from_float(layer, algo, opts))
        setattr(parent, child, new)
    return out
