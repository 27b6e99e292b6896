"""Width-scalable ResNet-18 and ResNet-50 for small images (paper Table 2).

The *width* ``w`` is the number of channels of the first residual stage; the four stages have
``w, 2w, 4w, 8w`` channels (ResNet-50: bottleneck inner widths, expanded ×4 at each block's
output), as in He et al. (2016). Following the CIFAR convention used by the paper's zoos the stem
is a single 3×3 stride-1 convolution and there is no max-pool, so a 32×32 input reaches the last
stage at 4×4 (an 8×8 digit reaches it at 1×1).

Initialisation: Kaiming-uniform (fan-in, ReLU gain) for every conv and linear weight, zero
biases, BatchNorm weight 1 and bias 0 (paper Table 2: "Kaiming Uniform").
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with an identity (or 1×1 projection) shortcut; expansion 1."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, with a projection shortcut when shapes change."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class ResNet(nn.Module):
    """ResNet with a 3×3 stride-1 stem, no max-pool, four stages of widths w·(1, 2, 4, 8)."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, int, int, int],
        *,
        width: int,
        in_channels: int,
        num_classes: int,
    ):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        in_planes = width
        stages = []
        for i, n in enumerate(num_blocks):
            planes = width * 2**i
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(in_planes, num_classes)
        init_kaiming_uniform(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate representation (global-average-pooled last stage), shape (N, 8w·expansion)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def init_kaiming_uniform(model: nn.Module) -> None:
    """Kaiming-uniform (fan-in, ReLU gain √2) weights, zero biases, BatchNorm to identity."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet18(*, width: int, in_channels: int, num_classes: int) -> ResNet:
    """ResNet-18: basic blocks, (2, 2, 2, 2) per stage."""
    return ResNet(BasicBlock, (2, 2, 2, 2), width=width, in_channels=in_channels, num_classes=num_classes)


def resnet50(*, width: int, in_channels: int, num_classes: int) -> ResNet:
    """ResNet-50: bottleneck blocks, (3, 4, 6, 3) per stage, output channels 4·8w = 32w."""
    return ResNet(Bottleneck, (3, 4, 6, 3), width=width, in_channels=in_channels, num_classes=num_classes)
