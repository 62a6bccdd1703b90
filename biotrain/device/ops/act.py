"""Activations and their gradients: element-wise passes (``act_fwd``/``act_bwd``).

The export has kernels for ReLU and its mask (``threshold_backward``); hardtanh, GELU, sigmoid
and tanh are costed only.
"""

from __future__ import annotations

from .common import pointwise
from .spec import OpSpec, fmt

ACT = pointwise("act_fwd", "act_bwd")


def relu_emit(cg, node, a, out):
    return f"k_relu({cg.T(out)}, {cg.T(a.self)})"


def threshold_bwd_emit(cg, node, a, out):
    T = cg.T
    return f"k_threshold_bwd({T(out)}, {T(a.grad_output)}, {T(a.self)}, {fmt(a.threshold)})"


SPECS = [
    OpSpec(("relu",), cost=ACT, emit=relu_emit, kernel=("k_relu",)),
    OpSpec(("threshold_backward",), cost=ACT, emit=threshold_bwd_emit, kernel=("k_threshold_bwd",)),
    OpSpec(("hardtanh", "hardtanh_backward", "gelu", "gelu_backward", "sigmoid", "sigmoid_backward", "tanh",
            "tanh_backward"), cost=ACT),
]
