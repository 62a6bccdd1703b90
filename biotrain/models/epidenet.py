"""EpiDeNet, the EOG eye-movement model of BRIEF section 3 (on-device variant).

No padding, average pooling, global average pooling before the classifier, so any input
length that survives the three pools works. Convolutions feeding a norm carry no bias (the
norm's shift makes it redundant), which puts the count at about 4.1k parameters. Kernels and
pools are counts of samples, as BRIEF gives them for 500 Hz; ``sfreq`` is recorded, not used.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import BRIEF_SFREQ, BiosignalModel, make_norm


class EpiDeNet(BiosignalModel):
    def __init__(
        self,
        n_chans: int = 2,
        n_times: int = 1000,
        n_outputs: int = 11,
        norm: str = "batch",
        sfreq: float = BRIEF_SFREQ,
        filters: tuple[int, int, int] = (4, 16, 16),
    ):
        super().__init__(n_chans, n_times, n_outputs, norm, sfreq)
        f1, f2, f3 = filters
        if n_times < self.min_times():
            raise ValueError(f"EpiDeNet needs n_times >= {self.min_times()} to survive its pools, got {n_times}")

        def block(c_in, c_out, kernel, pool):
            layers = [nn.Conv2d(c_in, c_out, kernel, bias=False), make_norm(norm, c_out), nn.ReLU()]
            if pool:
                layers.append(nn.AvgPool2d((1, pool)))
            return nn.Sequential(*layers)

        self.block1 = block(1, f1, (1, 4), 8)
        self.block2 = block(f1, f2, (1, 16), 4)
        self.block3 = block(f2, f3, (1, 8), 4)
        self.spatial = block(f3, f3, (n_chans, 1), 0)
        self.mix = block(f3, f3, (1, 1), 0)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(f3, n_outputs)

    @staticmethod
    def min_times() -> int:
        """Shortest input whose time axis survives conv 4, pool 8, conv 16, pool 4, conv 8, pool 4."""
        t = 1
        while ((((t - 3) // 8) - 15) // 4 - 7) // 4 < 1:
            t += 1
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        x = self.mix(self.spatial(x))
        return self.classifier(self.flatten(self.pool(x)))
