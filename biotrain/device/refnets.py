"""Networks of published PULP training figures, built so the device model can cost their steps.

ResNet-8 (CIFAR-10, 32x32x3) and DS-CNN (keyword spotting, 49x10 MFCC) in their MLPerf Tiny
form, the networks behind BRIEF section 5's whole-network figures (Nadalini et al., arXiv
2305.19167: 3.11 and 0.81 MAC/cycle, 17.1 and 6.4 ms per single-sample step). They expose the
attributes ``capture_step`` reads (``n_chans``/``n_times`` = input height/width,
``in_channels``, ``classifier``).
"""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.short is None else self.short(x)))


class ResNet8(nn.Module):
    """MLPerf Tiny image-classification ResNet-8: stem 16, stages 16/32/64, 10 classes."""

    def __init__(self, n_outputs: int = 10):
        super().__init__()
        self.n_chans, self.n_times, self.in_channels, self.n_outputs = 32, 32, 3, n_outputs
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.stages = nn.Sequential(_Block(16, 16, 1), _Block(16, 32, 2), _Block(32, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, n_outputs)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


class DSCNN(nn.Module):
    """MLPerf Tiny keyword-spotting DS-CNN: conv 10x4 stride 2, four depthwise-separable blocks of 64."""

    def __init__(self, n_outputs: int = 12, width: int = 64):
        super().__init__()
        self.n_chans, self.n_times, self.in_channels, self.n_outputs = 49, 10, 1, n_outputs
        layers: list[nn.Module] = [nn.Conv2d(1, width, (10, 4), (2, 2), (5, 1), bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU()]
        for _ in range(4):
            layers += [nn.Conv2d(width, width, 3, 1, 1, groups=width, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, n_outputs)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
