"""Pooling and reductions: average pooling (forward, backward) and ``mean``/``sum``.

Costed as element-wise passes (``pool_fwd``/``pool_bwd``; ``sum`` as a plain element-wise op).
In C a ReLU the plan fused into the pooling that reads it is computed by ``k_avg_pool``/``k_sum``
(``relu`` flag). Max and adaptive pooling are costed only.
"""

from __future__ import annotations

from ..export.l1 import Stage
from .common import ELEMENTWISE, pointwise
from .spec import OpSpec, UnsupportedOp, fmt, meta_args, vid

POOL = pointwise("pool_fwd", "pool_bwd")


def _window(node, a):
    """(kernel, stride, divisor) of an average pooling, both as [h, w]."""
    k = list(a.kernel_size)
    stride = list(a.stride) if a.stride else k
    if any(list(a.padding)) or a.ceil_mode:
        raise UnsupportedOp(f"{node.name}: avg_pool2d with padding or ceil_mode")
    if len(k) == 1:
        k = k * 2
    if len(stride) == 1:
        stride = stride * 2
    div = a.divisor_override
    return k, stride, float(div) if div else float(k[0] * k[1])


def avg_pool_emit(cg, node, a, out):
    T = cg.T
    k, stride, divisor = _window(node, a)
    x = a.self
    src, relu = (x.relu_src, 1) if x.relu_src is not None else (x, 0)
    y_, x_ = T(out), T(src)
    call = f"k_avg_pool({y_}, {x_}, {k[0]}, {k[1]}, {stride[0]}, {stride[1]}, {fmt(divisor)}, {relu})"
    return [Stage(call, vid(y_), {vid(x_): ("pool", stride[1], k[1], int(src.idx.shape[-1]))})]


def avg_pool_bwd_emit(cg, node, a, out):
    T = cg.T
    k, stride, divisor = _window(node, a)
    dx_, dy_ = T(out), T(a.grad_output)
    call = f"k_avg_pool_bwd({dx_}, {dy_}, {k[0]}, {k[1]}, {stride[0]}, {stride[1]}, {fmt(divisor)})"
    if k[1] > stride[1]:  # overlapping windows: one tile
        return [Stage(call, None)]
    return [Stage(call, vid(dx_), {vid(dy_): ("poolt", stride[1], int(a.grad_output.idx.shape[-1]))},
                  align=stride[1])]


def _reduce(mean: bool):
    """Emitter of ``sum`` (``mean``: divided by the reduced size) over ``dim`` (every dim if none)."""
    def emit(cg, node, a, out):
        T = cg.T
        x = a.self
        src, relu = (x.relu_src, 1) if x.relu_src is not None else (x, 0)
        xs = tuple(meta_args(node).self.shape)
        dims = sorted(d % len(xs) for d in (a.get("dim") or range(len(xs))))
        ob = out.idx
        if not a.get("keepdim", False):
            for d in dims:
                ob = ob.unsqueeze(d)
        ybc = ob.expand(xs)
        divisor = 1.0
        if mean:
            for d in dims:
                divisor *= xs[d]
        if out.acc and divisor != 1.0:
            raise UnsupportedOp(f"{node.name}: accumulated mean")
        return f"k_sum({T(out)}, {T(ybc)}, {T(src)}, {fmt(divisor)}, {relu}, {int(out.acc)})"
    return emit


SPECS = [
    OpSpec(("avg_pool2d",), cost=POOL, emit=avg_pool_emit, kernel=("k_avg_pool",)),
    OpSpec(("avg_pool2d_backward",), cost=POOL, emit=avg_pool_bwd_emit, kernel=("k_avg_pool_bwd",)),
    OpSpec(("mean",), cost=POOL, emit=_reduce(mean=True), kernel=("k_sum",)),
    OpSpec(("sum",), cost=ELEMENTWISE, emit=_reduce(mean=False), kernel=("k_sum",)),
    OpSpec(("max_pool2d_with_indices", "max_pool2d_with_indices_backward", "adaptive_avg_pool2d",
            "_adaptive_avg_pool2d", "_adaptive_avg_pool2d_backward"), cost=POOL),
]
