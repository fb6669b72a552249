"""DenseNet-121 (Huang et al. 2017) as the Camelyon17 featurizer of WILDS / the RFC paper (spec §5):
growth 32, blocks (6, 12, 24, 16), bottleneck 4x, compression 0.5, 64 stem features; trained from
scratch. Written here because torchvision cannot be installed beside the suite's torch; it is a
candidate for ``suite/models``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
                                 nn.Conv2d(c_in, bn_size * growth, 1, bias=False),
                                 nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True),
                                 nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.net(x)], 1)


def _transition(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, 1, bias=False),
                         nn.AvgPool2d(2, 2))


class DenseNetFeatures(nn.Module):
    """uint8 or float images (N, 3, H, W) -> pooled features (N, out_dim); out_dim = 1024 for DenseNet-121."""

    def __init__(self, growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16), init_features: int = 64,
                 bn_size: int = 4, compression: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, init_features, 7, 2, 3, bias=False), nn.BatchNorm2d(init_features),
                                   nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        c = init_features
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(_DenseLayer(c, growth, bn_size))
                c += growth
            if i < len(blocks) - 1:
                layers.append(_transition(c, int(c * compression)))
                c = int(c * compression)
        layers.append(nn.BatchNorm2d(c))
        self.body = nn.Sequential(*layers)
        self.out_dim = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return F.adaptive_avg_pool2d(F.relu(self.body(x)), 1).flatten(1)


def densenet121_features() -> DenseNetFeatures:
    return DenseNetFeatures()
