"""Low-rank adapters: a frozen weight W plus a trainable update B @ A of rank r.

The layer computes with ``W + B @ A`` (reshaped to W's shape) in place of W, so the same
convolution or matrix product runs and its weight gradient flows into A and B; B starts at zero,
so an adapted model starts as the base model. :func:`merge_adapters` folds the update into W and
puts the plain layer back: after adaptation inference costs nothing extra. The rank of a layer is
``min(rank, rows, columns)``: a larger one adds parameters and no expressiveness.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import adapter_targets, matrix_shape

ADAPTER_PARAMS = ("lora_A", "lora_B")  # the names an adapter's parameters end with, wherever it sits


class LoRA(nn.Module):
    """A frozen convolution or linear layer (``base``) beside a rank-r update of its weight."""

    def __init__(self, base: nn.Module, rank: int, generator: torch.Generator):
        super().__init__()
        rows, cols = matrix_shape(base)
        r = min(int(rank), rows, cols)
        if r < 1:
            raise ValueError(f"an adapter needs rank >= 1, got {rank!r}")
        self.base = base
        bound = 1.0 / math.sqrt(cols)  # nn.Linear's own init scale for the down-projection
        self.lora_A = nn.Parameter(torch.empty(r, cols).uniform_(-bound, bound, generator=generator))
        self.lora_B = nn.Parameter(torch.zeros(rows, r))

    def merged_weight(self) -> torch.Tensor:
        w = self.base.weight
        return w + (self.lora_B @ self.lora_A).view(w.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        if isinstance(b, nn.Linear):
            return F.linear(x, self.merged_weight(), b.bias)
        return F.conv2d(x, self.merged_weight(), b.bias, b.stride, b.padding, b.dilation, b.groups)


def add_adapters(model: nn.Module, rank: int, seed: int) -> list[str]:
    """Put an adapter beside every adapter target of ``model`` (in place); their names.

    A's initial values draw from a generator seeded with ``seed``, in forward order."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    names = adapter_targets(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no layer with a channel-mixing weight to adapt")
    for name in names:
        *path, last = name.split(".")
        parent = model.get_submodule(".".join(path))
        setattr(parent, last, LoRA(getattr(parent, last), rank, g))
    return names


@torch.no_grad()
def merge_adapters(model: nn.Module) -> int:
    """Fold every adapter into its base weight and put the plain layer back; how many were merged."""
    names = [n for n, m in model.named_modules() if isinstance(m, LoRA)]
    for name in names:
        *path, last = name.split(".")
        parent = model.get_submodule(".".join(path))
        adapter = getattr(parent, last)
        adapter.base.weight.copy_(adapter.merged_weight())
        setattr(parent, last, adapter.base)
    return len(names)


def has_adapters(model: nn.Module) -> bool:
    return any(isinstance(m, LoRA) for m in model.modules())
