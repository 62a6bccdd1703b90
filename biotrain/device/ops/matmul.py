"""Matrix products: ``mm`` (lora's B @ A and the linear layer's gradients), ``addmm`` (the linear
layer's forward), ``bmm`` (costed only).

BRIEF section 5 gives one figure for both backward matmuls; all run one C kernel family and take
the RTL-fitted linear costs. A backward operand that is a transposed 2-D view is copied
transposed first (its scratch).
"""

from __future__ import annotations

import math

import torch

from ..kernels import Kernel, Work, numel
from .spec import OpSpec, UnsupportedOp


def _operands(name: tuple[str, str], bias: bool = False):
    """Cost rule of a product of the arguments ``name`` (``("mat1", "mat2")``), plus a bias pass."""
    def rule(node, a, backward, phase) -> Kernel:
        x, y = (getattr(a, n) for n in name)
        m, kk = x.shape[-2], x.shape[-1]
        nn_ = y.shape[-1]
        batch = math.prod(x.shape[:-2]) if x.dim() > 2 else 1
        macs = int(batch * m * kk * nn_)
        key = "linear_bwd" if backward else "linear_fwd"
        k = Kernel(key)
        # the kernel splits the larger output dimension over the cores; K is the inner loop
        k.add(Work(key, macs=macs, par=int(max(m, nn_)) * int(batch), inner=int(kk)))
        if bias:
            k.add(Work("bias", elems=numel(node.meta["val"]), par=int(m), inner=int(nn_)))
        for operand in (x, y):
            if backward and isinstance(operand, torch.Tensor) and operand.dim() == 2 and not operand.is_contiguous():
                k.transpose_elems += numel(operand)
        if k.transpose_elems:
            k.scratch.append(("transposed_operand", k.transpose_elems * 4))
        return k
    return rule


def mm_emit(cg, node, a, out):
    T = cg.T
    return f"k_mm({T(out)}, {T(a.self)}, {T(a.mat2)}, {int(out.acc)})"


def addmm_emit(cg, node, a, out):
    T = cg.T
    if a.beta != 1 or a.alpha != 1:
        raise UnsupportedOp(f"{node.name}: addmm with beta/alpha != 1")
    bias = torch.broadcast_to(a.self.idx, tuple(out.idx.shape))
    return f"k_addmm({T(out)}, {T(bias)}, {T(a.mat1)}, {T(a.mat2)})"


SPECS = [
    OpSpec(("mm",), cost=_operands(("self", "mat2")), emit=mm_emit, kernel=("k_mm",)),
    OpSpec(("addmm",), cost=_operands(("mat1", "mat2"), bias=True), emit=addmm_emit, kernel=("k_addmm",)),
    OpSpec(("bmm",), cost=_operands(("self", "mat2"))),
]
