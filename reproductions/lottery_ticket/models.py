"""The two deep CIFAR-10 networks of §4 (Frankle & Carbin 2019, Fig. 2 table, Figs. 7-8).

- VGG-19: the CIFAR-10 adaptation of Liu et al. (2019) that §4 trains: 3x3 convs (BatchNorm, ReLU)
  64, 64, pool, 128, 128, pool, 256 x4, pool, 512 x4, pool, 512 x4, then average pooling and one
  linear layer to 10 classes (Fig. 2: "avg-pool, 10"; 20.0M weights: 20,018,880 conv + 5,120 fc).
  Not in ``suite.models``: the shared ``ConvNet`` max-pools after every stage and has no average pool.
- "Resnet-18": what the paper calls Resnet-18 is He et al.'s 20-layer CIFAR ResNet (Fig. 2: "16,
  3x[16, 16], 3x[32, 32], 3x[64, 64], avg-pool, 10"; 271K parameters, §4), i.e. the shared
  ``suite.models.resnet20`` with 1x1-conv projection shortcuts where the shape changes (§4 names
  "the parameters used to downsample residual connections", which option-A shortcuts do not have).

``unpruned`` names the weights §4 leaves dense: the output layer (Fig. 2: "fc 0%") and, for the
ResNet, the downsampling shortcut convs.
"""
from __future__ import annotations

import torch
from torch import nn

from suite.models import resnet20

VGG19_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                    512, 512, 512, 512, "M", 512, 512, 512, 512)
DEEP_ARCHS = ("vgg19", "resnet18")


class VGG(nn.Module):
    """VGG for 32x32 inputs: conv(3x3, no bias)-BN-ReLU per number in ``cfg``, 2x2 max-pool at "M",
    global average pool, one linear head (Liu et al. 2019's CIFAR variant)."""

    def __init__(self, cfg: tuple[int | str, ...] = VGG19_CFG, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)), nn.ReLU()]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def vgg19(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG-19 of §4 (20,024,000 prunable weights with 10 classes: 20,018,880 conv + 5,120 fc)."""
    return VGG(VGG19_CFG, num_classes, in_channels)


def resnet18_paper(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """The paper's "Resnet-18" (= CIFAR ResNet-20, widths 16/32/64, projection shortcuts; §4)."""
    return resnet20(num_classes=num_classes, in_channels=in_channels, width=16, shortcut="B")


def unpruned(arch: str) -> tuple[str, ...]:
    """Names (as in ``pruning.prunable_params``) of the weights §4 never prunes: the output layer
    (Fig. 2: "fc 0%"), and the ResNet's downsampling shortcut convs (§4)."""
    if arch not in DEEP_ARCHS:
        return ()
    names = ["fc.weight"]
    if arch == "resnet18":  # a small net: read the shortcut names off an instance
        names += [f"{n}.weight" for n, m in resnet18_paper().named_modules()
                  if isinstance(m, nn.Conv2d) and n.endswith("proj.0")]
    return tuple(names)
