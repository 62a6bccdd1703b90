"""GroupNorm and BatchNorm, forward and backward: element-wise passes on the cost side, kernels
that run in passes in C.

A norm's C kernel is called once per pass (``$pass$``): the statistics passes tile the input's
time axis, the last pass writes the output; the backward makes its sums over dy and x, then dx.
Each core keeps partial sums per (sample, channel or group) for the parallel reduction: at most
``RED_MAX`` of them (``kernels.h`` ``BT_RED_MAX``). LayerNorm and the functional BatchNorm
variants are costed only.
"""

from __future__ import annotations

from ..export.l1 import Stage
from .common import first_input, pointwise
from .spec import OpSpec, UnsupportedOp, fmt, meta_args, vid

RED_MAX = 256  # kernels.h BT_RED_MAX: partial sums per core of a parallel norm reduction

# A frozen (eval-mode) BatchNorm's backward (bias, sparse, lora; the C kernel k_batch_norm_eval_bwd)
# has no RTL fit of its own: it is costed with the norm_bwd fit of the training-mode kernels, which
# do a reduction pass more per element (an upper bound).
FWD = pointwise("norm_fwd", over=first_input)
BWD = pointwise("norm_bwd", over=first_input)


def _pass_toks(p: int) -> dict:
    return {"pass": lambda t, nt, w0, w1, lo, p=p: p, "first": lambda t, nt, w0, w1, lo: int(t == 0),
            "last": lambda t, nt, w0, w1, lo: int(t == nt - 1)}


def _stages(call: str, drivers: list, same: list) -> list:
    """A norm's passes: pass p tiles ``drivers[p]``'s time axis, ``same[p]`` take the same tile."""
    return [Stage(call, d, {i: ("same",) for i in sm}, _pass_toks(p)) for p, (d, sm) in enumerate(zip(drivers, same))]


def _fwd_stages(call: str, x_: str, y_: str) -> list:
    """Two statistics passes over x, then the output pass over y (x alongside)."""
    return _stages(call, [vid(x_)] * 2 + [vid(y_)], [[]] * 2 + [[vid(x_)]])


def _bwd_stages(call: str, dy_: str, x_: str, dx_: str, sums: bool) -> list:
    """Pass 0 (the sums over dy and x), when there are sums to make; pass 1 (dx), when dx is wanted."""
    stages = []
    if sums:
        stages.append(Stage(call, vid(dy_), {vid(x_): ("same",)}, _pass_toks(0)))
    if dx_ != "NULL":
        stages.append(Stage(call, vid(dx_), {vid(dy_): ("same",), vid(x_): ("same",)}, _pass_toks(1)))
    return stages


def _acc(v) -> int:
    return int(bool(v and v.acc))


def _check_group(node, xs, need) -> None:
    if need > RED_MAX:
        raise UnsupportedOp(f"{node.name}: GroupNorm of {tuple(xs)} needs {need} partial sums per core, "
                            f"the kernels hold {RED_MAX} (kernels.h BT_RED_MAX)")


def _check_batch(node, ch) -> None:
    if 2 * ch > RED_MAX:
        raise UnsupportedOp(f"{node.name}: BatchNorm of {ch} channels needs more partial sums per core than "
                            f"the kernels hold ({RED_MAX}, kernels.h BT_RED_MAX)")


def group_norm_emit(cg, node, a, out):
    T = cg.T
    xs = meta_args(node).input.shape
    _check_group(node, xs, xs[0] * a.group)  # (n, group)
    x, gm, bt = a.input, a.weight, a.bias
    if gm is None or bt is None:
        raise UnsupportedOp(f"{node.name}: GroupNorm without affine parameters")
    y_, x_ = T(out[0]), T(x)
    call = (f"k_group_norm({y_}, {x_}, {T(gm)}, {T(bt)}, {T(out[1])}, {T(out[2])}, {a.group}, "
            f"{fmt(a.eps)}, {int(x.idx.shape[-1])}, $pass$, $first$, $last$)")
    return _fwd_stages(call, x_, y_)


def group_norm_bwd_emit(cg, node, a, out):
    T, P = cg.T, cg.P
    xs = meta_args(node).input.shape
    _check_group(node, xs, xs[0] * 2 * xs[1])  # (n, channel) x 2
    dy, x, mean, rstd, gm = a.grad_out, a.input, a.mean, a.rstd, a.weight
    dx, dg, db = [out[i] if a.output_mask[i] else None for i in range(3)]
    dy_, x_, dx_ = T(dy), T(x), P(dx)
    call = (f"k_group_norm_bwd({dy_}, {x_}, {T(mean)}, {T(rstd)}, {T(gm)}, {dx_}, {P(dg)}, "
            f"{_acc(dg)}, {P(db)}, {_acc(db)}, {a.group}, "
            f"{int(x.idx.shape[-1])}, $pass$, $first$, $last$)")
    return _bwd_stages(call, dy_, x_, dx_, True)


def batch_norm_emit(cg, node, a, out):
    T, P = cg.T, cg.P
    _check_batch(node, int(meta_args(node).input.shape[1]))
    x, gm, bt, rm, rv, eps = a.input, a.weight, a.bias, a.running_mean, a.running_var, a.eps
    if gm is None or bt is None:
        raise UnsupportedOp(f"{node.name}: BatchNorm without affine parameters")
    if not a.training:
        return f"k_batch_norm_eval({T(out[0])}, {T(x)}, {T(gm)}, {T(bt)}, {T(rm)}, {T(rv)}, {fmt(eps)})"
    y_, x_ = T(out[0]), T(x)
    rm_, rv_ = P(rm), P(rv)
    cg.mutated |= {vid(p) for p in (rm_, rv_) if p != "NULL"}  # running statistics, updated in place
    call = (f"k_batch_norm_train({y_}, {x_}, {T(gm)}, {T(bt)}, {rm_}, {rv_}, "
            f"{T(out[1])}, {T(out[2])}, {fmt(a.momentum)}, {fmt(eps)}, {int(x.idx.shape[-1])}, "
            "$pass$, $first$, $last$)")
    return _fwd_stages(call, x_, y_)


def batch_norm_bwd_emit(cg, node, a, out):
    T, P = cg.T, cg.P
    _check_batch(node, int(meta_args(node).input.shape[1]))
    dy, x, gm, rm, rv = a.grad_out, a.input, a.weight, a.running_mean, a.running_var
    dx, dg, db = [out[i] if a.output_mask[i] else None for i in range(3)]
    dy_, x_, dx_ = T(dy), T(x), P(dx)
    if not a.train:  # frozen statistics (bias, sparse, lora): x is read only for the scale's gradient
        call = (f"k_batch_norm_eval_bwd({dy_}, {x_}, {T(gm)}, {T(rm)}, {T(rv)}, {dx_}, {P(dg)}, "
                f"{_acc(dg)}, {P(db)}, {_acc(db)}, {fmt(a.eps)}, "
                "$pass$, $first$, $last$)")
        return _bwd_stages(call, dy_, x_, dx_, dg is not None or db is not None)
    call = (f"k_batch_norm_bwd({dy_}, {x_}, {T(gm)}, {T(a.save_mean)}, {T(a.save_invstd)}, {dx_}, {P(dg)}, "
            f"{_acc(dg)}, {P(db)}, {_acc(db)}, {int(x.idx.shape[-1])}, "
            "$pass$, $first$, $last$)")
    return _bwd_stages(call, dy_, x_, dx_, True)


SPECS = [
    OpSpec(("native_group_norm",), cost=FWD, emit=group_norm_emit, kernel=("k_group_norm",)),
    OpSpec(("native_group_norm_backward",), cost=BWD, emit=group_norm_bwd_emit, kernel=("k_group_norm_bwd",)),
    OpSpec(("native_batch_norm",), cost=FWD, emit=batch_norm_emit, kernel=("k_batch_norm_train", "k_batch_norm_eval")),
    OpSpec(("native_batch_norm_backward",), cost=BWD, emit=batch_norm_bwd_emit,
           kernel=("k_batch_norm_bwd", "k_batch_norm_eval_bwd")),
    OpSpec(("_native_batch_norm_legit", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
            "native_layer_norm"), cost=FWD),
    OpSpec(("native_layer_norm_backward",), cost=BWD),
]
