"""ResNets: the CIFAR family ResNet-20/32/56 (He et al. 2016, Sec. 4.2) and ResNet-18 (He et al. 2016, Table 1)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError, UnknownNameError


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut. ``shortcut``: "A" = strided identity with zero-padded
    channels (no parameters), "B" = 1x1 conv + BN projection, used only where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.pad, self.kind = stride, c_out - c_in, shortcut
        self.proj: nn.Module | None = None
        if (stride != 1 or c_in != c_out) and shortcut == "B":
            self.proj = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(x)
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.residual(x) + self.shortcut(x))


def _check_shortcut(shortcut: str) -> None:
    if shortcut not in ("A", "B"):
        raise UnknownNameError(f"unknown shortcut {shortcut!r}; use 'A' (zero-pad) or 'B' (projection)")


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2: conv3x3(16w), three stages of n blocks with 16w/32w/64w channels
    (stride 2 between stages), global average pool, linear head. ``blocks`` is a flat list."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                 shortcut: str = "A") -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ConfigError(f"CifarResNet: depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        _check_shortcut(shortcut)
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, c = [], width
        for i, cw in enumerate((width, 2 * width, 4 * width)):
            for j in range(n):
                blocks.append(BasicBlock(c, cw, 2 if (i > 0 and j == 0) else 1, shortcut))
                c = cw
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(c, num_classes)
        self.feature_dim = c
        _init(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        for b in self.blocks:
            x = b(x)
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class ResNet(nn.Module):
    """ResNet with BasicBlocks, ``layers`` blocks per stage (ResNet-18: 2, 2, 2, 2), widths w, 2w, 4w, 8w.

    ``cifar_stem``: 3x3 stride-1 stem without max-pool (the usual CIFAR variant); otherwise the ImageNet
    7x7 stride-2 stem + 3x3 max-pool.
    """

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 1000, in_channels: int = 3,
                 width: int = 64, cifar_stem: bool = False) -> None:
        super().__init__()
        if cifar_stem:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU())
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks, c = [], width
        for i, n in enumerate(layers):
            cw = width * 2 ** i
            for j in range(n):
                blocks.append(BasicBlock(c, cw, 2 if (i > 0 and j == 0) else 1, "B"))
                c = cw
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(c, num_classes)
        self.feature_dim = c
        _init(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _init(model: nn.Module) -> None:
    """Kaiming-normal (fan_out) convs, BN weight 1 / bias 0 (He et al. 2015)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet20(num_classes: int = 10, in_channels: int = 3, width: int = 16, shortcut: str = "A") -> CifarResNet:
    """ResNet-20 for CIFAR (269,722 parameters with option-A shortcuts, 10 classes)."""
    return CifarResNet(20, num_classes, in_channels, width, shortcut)


def resnet32(num_classes: int = 10, in_channels: int = 3, width: int = 16, shortcut: str = "A") -> CifarResNet:
    return CifarResNet(32, num_classes, in_channels, width, shortcut)


def resnet56(num_classes: int = 10, in_channels: int = 3, width: int = 16, shortcut: str = "A") -> CifarResNet:
    return CifarResNet(56, num_classes, in_channels, width, shortcut)


def resnet18(num_classes: int = 10, in_channels: int = 3, width: int = 64, cifar_stem: bool = True) -> ResNet:
    """ResNet-18 (11,173,962 parameters in the CIFAR variant with 10 classes; 11,689,512 for ImageNet)."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width, cifar_stem)
