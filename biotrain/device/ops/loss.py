"""The loss: log-softmax and negative log-likelihood, forward and backward (kind ``loss``).

``ones_like`` seeds the backward with the loss's gradient (1.0; fp16: the loss scale). The C kernels take the mean
reduction without class weights over a 2-D [batch, classes] input.
"""

from __future__ import annotations

from .common import pointwise
from .spec import OpSpec, UnsupportedOp, fmt, meta_args

LOSS = pointwise("loss")


def log_softmax_emit(cg, node, a, out):
    if a.dim not in (1, -1) or meta_args(node).self.dim() != 2:
        raise UnsupportedOp(f"{node.name}: log_softmax over dim {a.dim} of a non-2-D tensor")
    return f"k_log_softmax({cg.T(out)}, {cg.T(a.self)})"


def log_softmax_bwd_emit(cg, node, a, out):
    T = cg.T
    return f"k_log_softmax_bwd({T(out)}, {T(a.grad_output)}, {T(a.output)})"


def _mean_unweighted(node, a) -> None:
    if a.weight is not None or a.reduction != 1:
        raise UnsupportedOp(f"{node.name}: nll_loss with class weights or reduction != mean")


def nll_loss_emit(cg, node, a, out):
    _mean_unweighted(node, a)
    T = cg.T
    return f"k_nll_loss({T(out[0])}, {T(out[1])}, {T(a.self)}, {cg.I64(a.target)}, {a.ignore_index})"


def nll_loss_bwd_emit(cg, node, a, out):
    _mean_unweighted(node, a)
    T = cg.T
    return f"k_nll_loss_bwd({T(out)}, {T(a.grad_output)}, {cg.I64(a.target)}, {T(a.total_weight)}, {a.ignore_index})"


def ones_like_emit(cg, node, a, out):
    return f"k_fill({cg.T(out)}, {fmt(cg.seed)})"  # fp16: the loss scale, so every gradient is stored scaled


SPECS = [
    OpSpec(("_log_softmax",), cost=LOSS, emit=log_softmax_emit, kernel=("k_log_softmax",)),
    OpSpec(("_log_softmax_backward_data",), cost=LOSS, emit=log_softmax_bwd_emit, kernel=("k_log_softmax_bwd",)),
    OpSpec(("nll_loss_forward",), cost=LOSS, emit=nll_loss_emit, kernel=("k_nll_loss",)),
    OpSpec(("nll_loss_backward",), cost=LOSS, emit=nll_loss_bwd_emit, kernel=("k_nll_loss_bwd",)),
    OpSpec(("ones_like",), cost=LOSS, emit=ones_like_emit, kernel=("k_fill",)),
]
