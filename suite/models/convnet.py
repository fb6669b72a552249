"""Small VGG-style ConvNets; Conv-2/4/6 of the lottery ticket paper (Frankle & Carbin 2019, Fig. 2)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from suite.errors import ConfigError


class ConvNet(nn.Module):
    """3x3 'same' convs (ReLU, optional BatchNorm) in stages, 2x2 max-pool after each stage, then an MLP head.

    ``stages`` lists the conv widths of each stage, e.g. ``((64, 64), (128, 128))`` for Conv-4.
    ``features(x)`` returns the flattened conv features (the input of the head).
    """

    def __init__(self, in_channels: int, num_classes: int, stages: Sequence[Sequence[int]],
                 fc: Sequence[int] = (256, 256), image_size: int | tuple[int, int] = 32,
                 batch_norm: bool = False, pool: bool = True) -> None:
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        layers: list[nn.Module] = []
        c = in_channels
        for stage in stages:
            for width in stage:
                layers += [nn.Conv2d(c, width, 3, padding=1, bias=not batch_norm)]
                layers += [nn.BatchNorm2d(width)] if batch_norm else []
                layers += [nn.ReLU()]
                c = width
            if pool:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ConfigError(f"ConvNet: {len(stages)} pooling stages shrink a {image_size} input to nothing; "
                              f"use fewer stages or pool=False")
        self.conv = nn.Sequential(*layers)
        dims = [c * h * w, *fc, num_classes]
        head: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            head.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                head.append(nn.ReLU())
        self.head = nn.Sequential(*head)
        self.feature_dim = dims[0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def conv2(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> ConvNet:
    """Conv-2: 64, 64, pool, FC 256, 256, 10 (4,301,642 parameters on CIFAR-10; paper: 4.3M)."""
    return ConvNet(in_channels, num_classes, ((64, 64),), (256, 256), image_size)


def conv4(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> ConvNet:
    """Conv-4: 64, 64, pool, 128, 128, pool, FC 256, 256, 10 (2,425,930 parameters; paper: 2.4M)."""
    return ConvNet(in_channels, num_classes, ((64, 64), (128, 128)), (256, 256), image_size)


def conv6(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> ConvNet:
    """Conv-6: 64, 64, pool, 128, 128, pool, 256, 256, pool, FC 256, 256, 10 (2,262,602 parameters;
    the paper's Fig. 2 lists 1.7M)."""
    return ConvNet(in_channels, num_classes, ((64, 64), (128, 128), (256, 256)), (256, 256), image_size)


def small_convnet(num_classes: int = 10, in_channels: int = 1, image_size: int = 8, width: int = 32,
                  depth: int = 2, batch_norm: bool = True) -> ConvNet:
    """A small ConvNet for 8x8 digits and similar: ``depth`` stages of one conv of ``width`` channels
    (BatchNorm, ReLU, pool), then a linear head."""
    return ConvNet(in_channels, num_classes, [(width,)] * depth, (), image_size, batch_norm=batch_norm)
