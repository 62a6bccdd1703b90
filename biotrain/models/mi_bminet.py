"""MI-BMINet, the EEG motor-imagery model of BRIEF section 3.

Temporal convolutions use ``same`` padding (explicit zero padding layers) so the flattened feature size is ``F2 * (T // 64)``,
which is what BRIEF's parameter count (about 7.9k) and FLOP count (about 17.4 MFLOP forward at
C=8, T=1900) assume. There is no dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import BiosignalModel, make_norm


def _same_pad(kernel: int) -> nn.ZeroPad2d:
    """Explicit 'same' padding along time (PyTorch's own is ~1.7x slower for even kernels)."""
    left = (kernel - 1) // 2
    return nn.ZeroPad2d((left, kernel - 1 - left, 0, 0))


class MIBMINet(BiosignalModel):
    def __init__(
        self,
        n_chans: int = 8,
        n_times: int = 1900,
        n_outputs: int = 2,
        norm: str = "batch",
        F1: int = 32,
        D: int = 1,
        F2: int = 32,
        Nf: int = 128,
        Nf2: int = 16,
    ):
        super().__init__(n_chans, n_times, n_outputs, norm)
        if n_times < 64:
            raise ValueError(f"MI-BMINet needs n_times >= 64 (two pools of 8), got {n_times}")
        f1d = F1 * D
        self.spatial = nn.Conv2d(1, F1, (n_chans, 1), bias=False)
        self.norm1 = make_norm(norm, F1)
        self.pad_temporal = _same_pad(Nf)
        self.temporal = nn.Conv2d(F1, f1d, (1, Nf), groups=F1, bias=False)
        self.norm2 = make_norm(norm, f1d)
        self.act2 = nn.ReLU()
        self.pool2 = nn.AvgPool2d((1, 8))
        self.pad_depthwise = _same_pad(Nf2)
        self.depthwise = nn.Conv2d(f1d, f1d, (1, Nf2), groups=f1d, bias=False)
        self.pointwise = nn.Conv2d(f1d, F2, (1, 1), bias=False)
        self.norm3 = make_norm(norm, F2)
        self.act3 = nn.ReLU()
        self.pool3 = nn.AvgPool2d((1, 8))
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(F2 * ((n_times // 8) // 8), n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(self.spatial(x))
        x = self.pool2(self.act2(self.norm2(self.temporal(self.pad_temporal(x)))))
        x = self.pool3(self.act3(self.norm3(self.pointwise(self.depthwise(self.pad_depthwise(x))))))
        return self.classifier(self.flatten(x))
