"""Long depthwise temporal convolutions whose backward runs as forward convolutions.

On the host, MI-BMINet's fine-tuning step is dominated by the backward of its depthwise temporal
convolution (32 channels, a kernel of 64 samples): for that shape oneDNN's backward is many times
slower than its forward. Both gradients of a stride-1, unpadded, undilated depthwise convolution
are depthwise convolutions:

- input gradient: the output gradient, zero-padded by ``K - 1`` on both sides, correlated with
  the time-reversed kernel;
- weight gradient: each row of the input correlated with its row of the output gradient (the
  output gradient as the kernel), summed over batch and rows.

Run as forward convolutions, the long temporal kernel's forward+backward is several times faster.
Short kernels do not pay, nor do dense convolutions (EpiDeNet's are slower this way), hence
``MIN_KERNEL`` (the timings: ``benchmarks/README.md``, "The fine-tuning loop"). The forward is
the layer's own (bit-identical); the gradients equal PyTorch's up to float summation order
(``tests/adaptation/test_fast_conv.py``), and the same inputs give the same bits from run to run.

:func:`fast_temporal_convs` swaps the eligible ``Conv2d`` layers of a model for the duration of a
``with`` block; parameters and state dict are untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


# shortest kernel for which the forward-convolution backward was measured to pay (benchmarks/README.md)
MIN_KERNEL = 32


def eligible(conv: nn.Module) -> bool:
    """A depthwise Conv2d (one filter per channel) with a 1 x K kernel, K >= MIN_KERNEL, stride 1,
    no padding, dilation or bias: the shape whose PyTorch backward is slow and this one is not."""
    if type(conv) is not nn.Conv2d or conv.bias is not None:
        return False
    return (conv.groups == conv.in_channels == conv.out_channels and conv.kernel_size[0] == 1
            and conv.kernel_size[1] >= MIN_KERNEL and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding == (0, 0) and conv.padding_mode == "zeros")


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B*H, C, W): every row of the 1 x K convolution is a 1-D sequence."""
    b, c, h, w = t.shape
    return t.permute(0, 2, 1, 3).reshape(b * h, c, w)


class _TemporalConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        b, c, h, _ = x.shape
        k = weight.shape[-1]
        g = _rows(grad.contiguous())  # (N, C, T)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            kernel = weight.flip(-1).view(c, 1, k)
            gx = F.conv1d(F.pad(g, (k - 1, k - 1)), kernel, groups=c)  # (N, C, W)
            grad_x = gx.view(b, h, c, -1).permute(0, 2, 1, 3)
        if ctx.needs_input_grad[1]:
            n, t = g.shape[0], g.shape[-1]
            rows = _rows(x).reshape(1, n * c, -1)  # every (row, channel) its own group
            gw = F.conv1d(rows, g.reshape(n * c, 1, t), groups=n * c)  # (1, N*C, K)
            grad_w = gw.view(n, c, k).sum(0).view_as(weight)
        return grad_x, grad_w


def _forward(conv: nn.Conv2d):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return _TemporalConv.apply(x, conv.weight)
    return forward


@contextmanager
def fast_temporal_convs(model: nn.Module) -> Iterator[int]:
    """Inside the block, the model's eligible convolutions compute their gradients as forward
    convolutions; yields how many layers were swapped."""
    swapped = [m for m in model.modules() if eligible(m)]
    for conv in swapped:
        conv.forward = _forward(conv)
    try:
        yield len(swapped)
    finally:
        for conv in swapped:
            del conv.forward
