"""16-bit training emulated on the host: every value the device stores is rounded to the 16-bit
type where the device would store it; arithmetic between a load and a store stays fp32.

What the device keeps in 16 bits (``bf16`` or ``fp16``), and so what is rounded here:

- weights and buffers (frozen or trained; BatchNorm's running statistics too), after every
  optimizer step;
- every layer's output (the activations kept for the backward and the next layer's input) and
  the input window;
- every layer's input gradient in the backward (the gradient one kernel stores and the next loads);
- parameter gradients (the device's gradient accumulator) after each backward pass;
- the optimizer's momentum, after every step.

What stays fp32: the accumulator inside a kernel (a convolution's or a matrix product's sum, a
norm's mean and variance), the loss and its log-softmax, the SGD update arithmetic (weight decay,
momentum, learning rate applied in fp32 registers between a 16-bit load and a 16-bit store). No
fp32 master copy of the weights is kept: an update smaller than half a 16-bit step of the weight is
lost, which is part of what 16-bit training costs.

``fp16`` has 5 exponent bits: gradients below 2^-24 (6e-8) flush to zero, below 2^-14 lose
precision. A static loss scale (``FP16_LOSS_SCALE``) multiplies the loss before the backward and
divides the parameter gradients after it (in fp32, on load), so small gradients survive the
16-bit stores; :func:`underflow` measures what scaling saves, per layer. ``bf16`` has fp32's
exponent range and needs no scaling.

Rounding is round-to-nearest-even, PyTorch's own conversion (what the FPU's conversion does).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..strategy_table import PRECISIONS

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# a static loss scale (2^10) for fp16; :func:`underflow` measures what it saves, per tensor
FP16_LOSS_SCALE = 1024.0


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not supported; use one of {list(PRECISIONS)}")
    return precision


def rounded(x: torch.Tensor, precision: str) -> torch.Tensor:
    """``x`` rounded to ``precision`` and held as fp32 (the value a 16-bit store then load gives)."""
    if precision == "fp32":
        return x
    return x.to(DTYPES[precision]).to(x.dtype)


class _Store16(torch.autograd.Function):
    """A stored activation: rounded in the forward, its gradient rounded in the backward."""

    @staticmethod
    def forward(ctx, x, precision):
        ctx.precision = precision
        return rounded(x, precision)

    @staticmethod
    def backward(ctx, grad):
        return rounded(grad, ctx.precision), None


def store(x: torch.Tensor, precision: str) -> torch.Tensor:
    """``x`` as the device stores it: rounded, and so is the gradient that flows back through it."""
    if precision == "fp32" or not torch.is_tensor(x) or not x.is_floating_point():
        return x
    return _Store16.apply(x, precision)


def loss_scale(precision: str) -> float:
    """The factor on the loss before the backward (fp16: :data:`FP16_LOSS_SCALE`; else 1)."""
    return FP16_LOSS_SCALE if precision == "fp16" else 1.0


@torch.no_grad()
def round_tensors(tensors, precision: str) -> None:
    """Round every tensor in place (parameters, buffers, momentum)."""
    if precision == "fp32":
        return
    for t in tensors:
        if t is not None and t.is_floating_point():
            t.copy_(rounded(t, precision))


@torch.no_grad()
def store_gradients(params, precision: str, scale: float = 1.0) -> None:
    """The parameter gradients as the device's accumulator holds them: rounded (still scaled by
    the loss scale, as the backward left them), then unscaled in fp32 for the update."""
    if precision == "fp32":
        return
    for p in params:
        if p.grad is not None:
            g = rounded(p.grad, precision)
            p.grad.copy_(g / scale if scale != 1.0 else g)


def after_step(model: nn.Module, opt: torch.optim.Optimizer, precision: str) -> None:
    """Store what an optimizer step wrote: the weights, the buffers (BatchNorm's running
    statistics move in training mode) and the momentum, rounded to the 16-bit type."""
    if precision == "fp32":
        return
    round_tensors(list(model.parameters()) + list(model.buffers()), precision)
    round_tensors((s.get("momentum_buffer") for s in opt.state.values()), precision)


def scaled_loss(loss_fn, precision: str):
    """``loss_fn`` times the loss scale of ``precision``, and that scale (fp32: ``loss_fn`` itself, 1)."""
    scale = loss_scale(precision)
    if scale == 1.0:
        return loss_fn, 1.0
    return (lambda out, target: loss_fn(out, target) * scale), scale


def _leaves(model: nn.Module):
    return [m for m in model.modules() if not list(m.children())]


@contextmanager
def emulated(model: nn.Module, precision: str) -> Iterator[None]:
    """Inside the block, ``model`` computes as the 16-bit device would: its weights and buffers
    rounded now, its input and every leaf layer's output (and their gradients) stored in 16 bits.
    fp32: nothing changes."""
    check_precision(precision)
    if precision == "fp32":
        yield
        return
    round_tensors(list(model.parameters()) + list(model.buffers()), precision)
    handles = [model.register_forward_pre_hook(lambda _m, args: tuple(store(a, precision) for a in args))]
    for leaf in _leaves(model):
        handles.append(leaf.register_forward_hook(lambda _m, _args, out: store(out, precision)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def underflow(grads: dict[str, torch.Tensor], precision: str, scale: float = 1.0) -> dict[str, float]:
    """Per tensor: the fraction of non-zero fp32 gradient elements that a 16-bit store (after
    multiplying by ``scale``) turns into zero."""
    out = {}
    for name, g in grads.items():
        nonzero = g != 0
        n = int(nonzero.sum())
        if n:
            lost = (rounded(g * scale, precision) == 0) & nonzero
            out[name] = int(lost.sum()) / n
    return out
