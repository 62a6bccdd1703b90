"""Convolution and its backward: im2col + matmul on the cost side, ``k_conv2d(_bwd)`` in C.

Cost (PULP-TrainLib, BRIEF section 5): forward N = Cout, K = Kh*Kw*Cin, M = Ho*Wo; input
gradient N = Cin, K = Kh*Kw*Cout, M = Hin*Win; weight gradient K = Ho*Wo. Depthwise layers run
direct kernels (no im2col); im2col copies nothing where the column matrix is the input itself.
The C kernels tile the time axis: every tile reads its input columns with the halo.
"""

from __future__ import annotations

from ..kernels import Kernel, Work, numel
from ..export.l1 import Stage
from .spec import OpSpec, UnsupportedOp, vid


def _im2col_is_identity(kh: int, kw: int, ho: int, stride) -> bool:
    """im2col copies nothing for 1x1 kernels, and for (H x 1) kernels spanning the whole input
    height (one output row, e.g. a spatial convolution over all channels): the column matrix
    [Cin*Kh, Wo] is then the input's own memory layout."""
    unit = all(int(s) == 1 for s in stride)
    return unit and ((kh == 1 and kw == 1) or (kw == 1 and ho == 1))


def _family(groups: int, cin_g: int, kh: int, kw: int) -> str:
    if groups > 1 and cin_g == 1:
        return "dw"
    if kh == 1 and kw == 1:
        return "pw"
    return "conv"


def conv_cost(node, a, backward, phase) -> Kernel:
    x, w = a.input, a.weight
    out = node.meta["val"]
    n, cin, _, _ = x.shape
    cout, cin_g, kh, kw = w.shape
    _, _, ho, wo = out.shape
    macs = n * cout * ho * wo * cin_g * kh * kw
    fam = _family(int(a.groups), cin_g, kh, kw)
    k = Kernel(f"{fam}_fwd", kh=kh, kw=kw)
    k.add(Work(f"{fam}_fwd", macs=macs, par=cout, inner=cin_g * kh * kw, rows=macs // kw))
    if fam != "dw" and not _im2col_is_identity(kh, kw, ho, a.stride):
        k.im2col_elems = n * kh * kw * cin * ho * wo
        k.scratch.append(("im2col", k.im2col_elems * 4))
    if a.bias is not None:
        k.add(Work("bias", elems=numel(out), par=n * cout, inner=ho * wo))
    return k


def conv_bwd_cost(node, a, backward, phase) -> Kernel:
    go, x, w = a.grad_output, a.input, a.weight
    groups = int(a.groups)
    mask = list(a.output_mask)
    n, cin, hin, win = x.shape
    cout, cin_g, kh, kw = w.shape
    _, _, ho, wo = go.shape
    macs_one = n * cout * ho * wo * cin_g * kh * kw
    fam = _family(groups, cin_g, kh, kw)
    k = Kernel(f"{fam}_" + ("bwd" if mask[0] and mask[1] else "ig" if mask[0] else "wg"), kh=kh, kw=kw)
    if mask[0]:  # input gradient: N = Cin, K = Kh*Kw*Cout, M = Hin*Win (BRIEF section 5)
        k.add(Work(f"{fam}_ig", macs=macs_one, par=cin, inner=(cout // groups) * kh * kw, rows=macs_one // kw))
    if mask[1]:  # weight gradient: K = Ho*Wo (the long loop), M = Kh*Kw*Cin
        k.add(Work(f"{fam}_wg", macs=macs_one, par=cout, inner=n * ho * wo, rows=macs_one // max(1, wo)))
    if len(mask) > 2 and mask[2]:  # bias gradient: a reduction
        k.add(Work("bias", elems=numel(go), par=cout, inner=n * ho * wo))
    ident = _im2col_is_identity(kh, kw, ho, a.stride)
    if fam != "dw" and not (ident and not mask[0]):
        cols = 0
        if mask[1] and not ident:
            cols = max(cols, n * kh * kw * cin * ho * wo)
        if mask[0]:
            cols = max(cols, n * cout * kh * kw * hin * win)
        k.im2col_elems = cols
        if cols:
            k.scratch.append(("im2col", cols * 4))
    if mask[0] and fam != "dw":
        k.transpose_elems = kh * kw * cin_g * cout
        k.scratch.append(("transposed_weights", k.transpose_elems * 4))
    return k


def conv_emit(cg, node, a, out):
    T, P = cg.T, cg.P
    x, w, b, stride, pad, dil, groups = a.input, a.weight, a.bias, a.stride, a.padding, a.dilation, a.groups
    if a.transposed or len(stride) != 2:
        raise UnsupportedOp(f"{node.name}: transposed or non-2-D convolution")
    y_, x_ = T(out), T(x)
    call = (f"k_conv2d({y_}, {x_}, {T(w)}, {P(b)}, {stride[0]}, {stride[1]}, {pad[0]}, $pw$, "
            f"{dil[0]}, {dil[1]}, {groups})")
    xi, kw = vid(x_), int(w.idx.shape[-1])
    sw, pw, dw = stride[1], pad[1], dil[1]
    return [Stage(call, vid(y_), {xi: ("conv", sw, pw, dw, kw, int(x.idx.shape[-1]))},
                  {"pw": lambda t, nt, w0, w1, lo: pw + lo(xi) - w0 * sw})]


def conv_bwd_emit(cg, node, a, out):
    if a.transposed:
        raise UnsupportedOp(f"{node.name}: transposed convolution")
    mask = a.output_mask
    dx, dw, db = [out[i] if mask[i] else None for i in range(3)]
    return _bwd_stages(cg, a.grad_output, a.input, a.weight, dx, dw, db, a.stride, a.padding, a.dilation, a.groups)


def _bwd_stages(cg, dy, x, w, dx, dw, db, stride, pad, dil, groups) -> list:
    """Two loops: the weight and bias gradients over tiles of dy (x with its halo; tiles after
    the first accumulate), then the input gradient over tiles of dx (dy with its halo)."""
    T, P = cg.T, cg.P
    sw, pw, dlw = stride[1], pad[1], dil[1]
    kw, W, Wo = int(w.idx.shape[-1]), int(x.idx.shape[-1]), int(dy.idx.shape[-1])
    common = f"{stride[0]}, {stride[1]}, {pad[0]}, $pw$, {dil[0]}, {dil[1]}, {groups}"
    stages = []
    if dw is not None or db is not None:
        dy_, x_, w_ = T(dy), T(x), T(w)
        xi = vid(x_)
        acc_w, acc_b = int(bool(dw and dw.acc)), int(bool(db and db.acc))
        call = (f"k_conv2d_bwd({dy_}, {x_}, {w_}, NULL, {P(dw)}, $accw$, {P(db)}, $accb$, {common})")
        stages.append(Stage(call, vid(dy_), {xi: ("conv", sw, pw, dlw, kw, W)},
                            {"pw": lambda t, nt, w0, w1, lo: pw + lo(xi) - w0 * sw,
                             "accw": lambda t, nt, w0, w1, lo: acc_w if t == 0 else 1,
                             "accb": lambda t, nt, w0, w1, lo: acc_b if t == 0 else 1}))
    if dx is not None:
        dy_, w_, dx_ = T(dy), T(w), T(dx)
        di = vid(dy_)
        call = f"k_conv2d_bwd({dy_}, {dy_}, {w_}, &{dx_}, NULL, 0, NULL, 0, {common})"
        stages.append(Stage(call, vid(dx_), {di: ("convt", sw, pw, dlw, kw, Wo)},
                            {"pw": lambda t, nt, w0, w1, lo: pw + w0 - lo(di) * sw}))
    return stages


SPECS = [
    OpSpec(("convolution",), cost=conv_cost, emit=conv_emit, kernel=("k_conv2d",)),
    OpSpec(("convolution_backward",), cost=conv_bwd_cost, emit=conv_bwd_emit, kernel=("k_conv2d_bwd",)),
]
