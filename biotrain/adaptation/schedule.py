"""The batch schedule of a fine-tuning run: per epoch, its learning rate and its batches.

One definition, read by every loop that fine-tunes (the host loop, the grouped loops, the exported
device program), so that they take the same samples in the same order at the same rate: a seeded
permutation per epoch, cut into batches of ``batch_size`` (a last batch of one sample skipped where
the strategy normalises over the batch), and PyTorch's cosine annealing from ``lr`` over ``epochs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .training import seeded_generator


def cosine_lrs(lr: float, epochs: int) -> list[float]:
    """The learning rate of every epoch, from PyTorch's own ``CosineAnnealingLR`` (the same floats
    a scheduler stepping a real optimizer gives)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@dataclass(frozen=True)
class Epoch:
    lr: float
    batches: list[torch.Tensor]  # sample indices of each optimizer step, in order


@dataclass(frozen=True)
class BatchSchedule:
    """The epochs of one fine-tuning run of ``n`` calibration samples."""

    n: int
    batch_size: int
    epochs: int
    lr: float
    seed: int
    skip_single: bool  # the strategy normalises over the batch: a batch of one sample is skipped

    def __iter__(self) -> Iterator[Epoch]:
        gen = seeded_generator(self.seed)
        for lr in cosine_lrs(self.lr, self.epochs):
            order = torch.randperm(self.n, generator=gen)
            batches = [order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]
            yield Epoch(lr, [b for b in batches if not (self.skip_single and len(b) < 2)])

    def steps(self) -> list[tuple[float, list[int]]]:
        """(lr, sample indices) of every optimizer step: the schedule a device program is given."""
        return [(e.lr, b.tolist()) for e in self for b in e.batches]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The epoch's learning rate, on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
