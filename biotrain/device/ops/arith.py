"""Binary arithmetic: ``add``, ``sub``, ``mul``, ``div`` and their in-place forms.

One element-wise pass each; in the backward an ``add`` into a step input is the gradient
accumulation (kind ``optimizer``). In C: ``k_binary`` (the second operand broadcast), or
``k_binary_scalar``, or ``k_i64_add`` for an integer counter (BatchNorm's batches tracked).
Two operands take runtime values: the SGD update's learning rate and the loss scale
1/(micro-batches in the step).
"""

from __future__ import annotations

import torch

from ..kernels import op_name
from .common import ELEMENTWISE, accumulating
from .spec import OpSpec, UnsupportedOp, fmt

EW = {"add": "EW_ADD", "sub": "EW_SUB", "mul": "EW_MUL", "div": "EW_DIV"}


def binary_emit(cg, node, a, out):
    T = cg.T
    name = op_name(node)
    base = name.rstrip("_")
    x, b = a.self, a.other
    alpha = a.get("alpha", 1)
    y = out
    if y.dtype == torch.int64:
        if base != "add" or a.is_node("other"):
            raise UnsupportedOp(f"{node.name}: integer {name} with a tensor operand")
        return f"k_i64_add({cg.I64(y)}, {y.idx.numel()}, {int(b) * int(alpha)})"
    if a.is_node("other"):
        if b.relu_src is not None:
            raise UnsupportedOp(f"{node.name}: reads a ReLU fused into pooling")
        bb = torch.broadcast_to(b.idx, tuple(y.idx.shape))
        aa = torch.broadcast_to(x.idx, tuple(y.idx.shape))
        al = fmt(alpha * cg.alpha_scale.get(node.name, 1.0))  # fp16: the loss scale taken out of the update
        if node.name in cg.lr_updates:
            al = "-r->lr"  # the SGD update: the learning rate is the step's runtime input (its schedule)
        return f"k_binary({EW[base]}, {T(y)}, {T(aa)}, {T(bb)}, {al})"
    s = float(b) * (float(alpha) if base in ("add", "sub") else 1.0)
    sc = fmt(s)
    if base == "mul" and cg.program.accum > 1 and cg.in_loss_phase and s == 1.0 / cg.program.accum:
        sc = "r->scale"  # loss scale 1/(micro-batches in this step)
    aa = torch.broadcast_to(x.idx, tuple(y.idx.shape))
    return f"k_binary_scalar({EW[base]}, {T(y)}, {T(aa)}, {sc})"


KERNELS = ("k_binary", "k_binary_scalar", "k_i64_add")
SPECS = [
    OpSpec(("add", "add_"), cost=accumulating, emit=binary_emit, kernel=KERNELS),
    OpSpec(("sub", "sub_", "mul", "mul_", "div", "div_"), cost=ELEMENTWISE, emit=binary_emit, kernel=KERNELS),
]
