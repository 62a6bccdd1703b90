"""Map aten ops of a captured step onto PULP-TrainLib-style kernels (BRIEF section 5).

For every ``call_function`` node this module says which device kernel runs it, how many MACs or
elements it touches, and which kernel scratch buffers it needs (im2col, transposed weights).
Shapes come from the ``val`` metadata that ``make_fx`` records on each node.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch

aten = torch.ops.aten

NORM_FWD = {
    "native_group_norm",
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional",
    "native_layer_norm",
}
NORM_BWD = {"native_group_norm_backward", "native_batch_norm_backward", "native_layer_norm_backward"}
# ops that create no data on the device (views, metadata, bookkeeping)
FREE = {"view", "_unsafe_view", "t", "detach", "expand", "alias", "permute", "transpose", "unsqueeze",
        "squeeze", "reshape", "as_strided", "slice", "select", "empty", "lift_fresh_copy", "sym_size"}
# out-of-place ops whose output may overwrite an input that dies at the op: (op, input arg index)
INPLACE_OK = {
    "relu": 0, "threshold_backward": 0, "add": 0, "sub": 0, "mul": 0, "div": 0, "neg": 0,
    "_log_softmax": 0, "_log_softmax_backward_data": 0, "native_group_norm_backward": 0,
    "native_batch_norm_backward": 0, "native_group_norm": 0, "native_layer_norm": 0,
    "native_batch_norm": 0, "_native_batch_norm_legit_no_training": 0, "hardtanh": 0, "gelu": 0, "sigmoid": 0, "tanh": 0, "clone": 0,
}


def op_name(node: torch.fx.Node) -> str:
    t = node.target
    if t is operator.getitem:
        return "getitem"
    if isinstance(t, torch._ops.OpOverload):
        return t._schema.name.split("::")[-1]
    return getattr(t, "__name__", str(t))


def _val(x):
    if isinstance(x, torch.fx.Node):
        return x.meta.get("val")
    return None


def _numel(v) -> int:
    return int(v.numel()) if isinstance(v, torch.Tensor) else 0


def tensor_outputs(node: torch.fx.Node) -> list[tuple[int, torch.Tensor]]:
    v = node.meta.get("val")
    if isinstance(v, torch.Tensor):
        return [(0, v)]
    if isinstance(v, (tuple, list)):
        return [(i, t) for i, t in enumerate(v) if isinstance(t, torch.Tensor)]
    return []


def tensor_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    out: list[torch.fx.Node] = []
    for a in node.all_input_nodes:
        if isinstance(a.meta.get("val"), (torch.Tensor, tuple, list)):
            out.append(a)
    return out


def shape_only_args(node: torch.fx.Node) -> set[int]:
    """Positional arguments an op takes for their shape alone, whose values it never reads.

    A frozen layer's backward computes only the input gradient: ``convolution_backward`` without
    the weight gradient (``output_mask[1]`` false) needs the layer's weight and output gradient,
    not its input; an eval-mode ``native_batch_norm_backward`` without the scale gradient is
    ``dy * gamma / sqrt(running_var + eps)`` and needs no input either. aten still passes the
    input (for its shape), but nothing has to be kept for it: the plan does not extend its
    lifetime, ``execute`` feeds NaN there to prove it, and the C kernels read only its sizes."""
    t, a = node.target, node.args
    if t is aten.convolution_backward.default and len(a) > 10 and not a[10][1]:
        return {1}
    if t is aten.native_batch_norm_backward.default and len(a) > 9 and not a[7] and not a[9][1]:
        return {1}
    return set()


def read_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The tensor inputs whose values ``node`` reads (``tensor_inputs`` minus :func:`shape_only_args`)."""
    skip = shape_only_args(node)
    if not skip:
        return tensor_inputs(node)
    read = {x for i, x in enumerate(node.args) if i not in skip and isinstance(x, torch.fx.Node)}
    read |= {x for x in node.kwargs.values() if isinstance(x, torch.fx.Node)}
    return [x for x in tensor_inputs(node) if x in read]


def return_alias(node: torch.fx.Node, idx: int) -> int | None:
    """Index of the positional argument that output ``idx`` aliases (views, in-place ops), else None."""
    t = node.target
    if not isinstance(t, torch._ops.OpOverload):
        return None
    rets = t._schema.returns
    if idx >= len(rets) or rets[idx].alias_info is None:
        return None
    sets = rets[idx].alias_info.before_set
    for i, arg in enumerate(t._schema.arguments):
        if arg.alias_info is not None and arg.alias_info.before_set & sets:
            return i
    return 0


def is_view(node: torch.fx.Node, idx: int) -> bool:
    """Output ``idx`` is a read-only alias (a view) of an input: no data moves."""
    t = node.target
    if not isinstance(t, torch._ops.OpOverload):
        return False
    rets = t._schema.returns
    return idx < len(rets) and rets[idx].alias_info is not None and not rets[idx].alias_info.is_write


@dataclass
class Work:
    """One loop nest a device kernel runs: what the latency model costs.

    ``par`` is the size of the dimension the kernel splits over the cores (output channels for
    convolutions and matmuls, rows for element-wise passes); ``inner`` the length of the innermost
    loop (MACs per output, or elements per row), which sets the loop-overhead share.
    """

    kind: str  # e.g. conv_fwd, conv_ig, conv_wg, dw_fwd, pw_wg, linear_fwd, norm_bwd, pool_fwd, optimizer
    macs: int = 0
    elems: int = 0
    par: int = 1
    inner: int = 1
    # invocations of the innermost loop where a direct kernel runs ``inner`` as nested shorter loops
    # (taps over kh, then kw): MACs / kw for convolution forward and input gradient, MACs / Wo for
    # the weight gradient. Costed by ``row_overhead_cycles_<kind>`` (exported program, RTL-measured)
    rows: int = 0


@dataclass
class Kernel:
    kind: str  # main kind: one of the Work kinds, or "free" (views, getitem: no device work)
    macs: int = 0
    macs_by: dict = field(default_factory=dict)  # {work kind: MACs}
    elems: int = 0  # element-wise work (elements)
    im2col_elems: int = 0
    transpose_elems: int = 0
    scratch: list = field(default_factory=list)  # [(label, nbytes)] whole-layer scratch (toolchain placement)
    works: list = field(default_factory=list)  # [Work]
    kh: int = 1  # kernel width/height of a convolution (L1 tile halo)
    kw: int = 1

    def add(self, w: Work) -> None:
        self.works.append(w)
        if w.macs:
            self.macs += w.macs
            self.macs_by[w.kind] = self.macs_by.get(w.kind, 0) + w.macs
        self.elems += w.elems


def _im2col_is_identity(kh: int, kw: int, ho: int, stride) -> bool:
    """im2col copies nothing for 1x1 kernels, and for (H x 1) kernels spanning the whole input
    height (one output row, e.g. a spatial convolution over all channels): the column matrix
    [Cin*Kh, Wo] is then the input's own memory layout."""
    unit = all(int(s) == 1 for s in stride)
    return unit and ((kh == 1 and kw == 1) or (kw == 1 and ho == 1))


def _conv_family(groups: int, cin_g: int, kh: int, kw: int) -> str:
    if groups > 1 and cin_g == 1:
        return "dw"
    if kh == 1 and kw == 1:
        return "pw"
    return "conv"


def _rows(v) -> tuple[int, int]:
    """(rows, row length) of a tensor for a row-parallel element-wise pass."""
    if not isinstance(v, torch.Tensor) or v.dim() == 0:
        return 1, max(1, _numel(v))
    w = int(v.shape[-1])
    return max(1, int(v.numel()) // max(1, w)), max(1, w)


def _elementwise(kind: str, v) -> Kernel:
    rows, w = _rows(v)
    k = Kernel(kind)
    k.add(Work(kind, elems=_numel(v), par=rows, inner=w))
    return k


def classify(node: torch.fx.Node, backward: bool, phase: str = "") -> Kernel:
    """The device kernel that runs ``node``: its loop nests (``works``) and its scratch."""
    name = op_name(node)
    outs = tensor_outputs(node)
    if name == "getitem" or name in FREE or (outs and all(is_view(node, i) for i, _ in outs)):
        return Kernel("free")
    if name == "convolution":
        x, w = _val(node.args[0]), _val(node.args[1])
        groups = int(node.args[8])
        out = node.meta["val"]
        n, cin, _, _ = x.shape
        cout, cin_g, kh, kw = w.shape
        _, _, ho, wo = out.shape
        macs = n * cout * ho * wo * cin_g * kh * kw
        fam = _conv_family(groups, cin_g, kh, kw)
        k = Kernel(f"{fam}_fwd", kh=kh, kw=kw)
        k.add(Work(f"{fam}_fwd", macs=macs, par=cout, inner=cin_g * kh * kw, rows=macs // kw))
        if fam != "dw" and not _im2col_is_identity(kh, kw, ho, node.args[3]):
            k.im2col_elems = n * kh * kw * cin * ho * wo
            k.scratch.append(("im2col", k.im2col_elems * 4))
        if len(node.args) > 2 and node.args[2] is not None:
            k.add(Work("bias", elems=_numel(out), par=n * cout, inner=ho * wo))
        return k
    if name == "convolution_backward":
        go, x, w = _val(node.args[0]), _val(node.args[1]), _val(node.args[2])
        groups = int(node.args[9])
        mask = list(node.args[10])
        n, cin, hin, win = x.shape
        cout, cin_g, kh, kw = w.shape
        _, _, ho, wo = go.shape
        macs_one = n * cout * ho * wo * cin_g * kh * kw
        fam = _conv_family(groups, cin_g, kh, kw)
        k = Kernel(f"{fam}_" + ("bwd" if mask[0] and mask[1] else "ig" if mask[0] else "wg"), kh=kh, kw=kw)
        if mask[0]:  # input gradient: N = Cin, K = Kh*Kw*Cout, M = Hin*Win (BRIEF section 5)
            k.add(Work(f"{fam}_ig", macs=macs_one, par=cin, inner=(cout // groups) * kh * kw, rows=macs_one // kw))
        if mask[1]:  # weight gradient: K = Ho*Wo (the long loop), M = Kh*Kw*Cin
            k.add(Work(f"{fam}_wg", macs=macs_one, par=cout, inner=n * ho * wo, rows=macs_one // max(1, wo)))
        if len(mask) > 2 and mask[2]:  # bias gradient: a reduction
            k.add(Work("bias", elems=_numel(go), par=cout, inner=n * ho * wo))
        ident = _im2col_is_identity(kh, kw, ho, node.args[4])
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
    if name in ("addmm", "mm", "bmm"):
        a, b = (_val(node.args[1]), _val(node.args[2])) if name == "addmm" else (_val(node.args[0]), _val(node.args[1]))
        m, kk = a.shape[-2], a.shape[-1]
        nn_ = b.shape[-1]
        batch = math.prod(a.shape[:-2]) if a.dim() > 2 else 1
        macs = int(batch * m * kk * nn_)
        # BRIEF gives one figure for both backward matmuls; lora's B @ A (forward) and its gradients run
        # the same C kernel (k_mm) and take these RTL-fitted linear costs
        key = "linear_bwd" if backward else "linear_fwd"
        k = Kernel(key)
        # the kernel splits the larger output dimension over the cores; K is the inner loop
        k.add(Work(key, macs=macs, par=int(max(m, nn_)) * int(batch), inner=int(kk)))
        if name == "addmm":
            k.add(Work("bias", elems=_numel(node.meta["val"]), par=int(m), inner=int(nn_)))
        for operand in (a, b):
            if backward and isinstance(operand, torch.Tensor) and operand.dim() == 2 and not operand.is_contiguous():
                k.transpose_elems += _numel(operand)
        if k.transpose_elems:
            k.scratch.append(("transposed_operand", k.transpose_elems * 4))
        return k
    if phase == "update":
        return _elementwise("optimizer", _val(node.args[0]) if node.args else None)
    if name in NORM_FWD:
        return _elementwise("norm_fwd", _val(node.args[0]))
    if name in NORM_BWD:
        # A frozen (eval-mode) BatchNorm's backward (bias, sparse, lora; the C kernel
        # k_batch_norm_eval_bwd) has no RTL fit of its own: it is costed with the norm_bwd fit of the
        # training-mode kernels, which do a reduction pass more per element (an upper bound).
        return _elementwise("norm_bwd", _val(node.args[0]))
    big = max([t for _, t in outs] + [a.meta.get("val") for a in tensor_inputs(node)
                                      if isinstance(a.meta.get("val"), torch.Tensor)] + [torch.empty(0)],
              key=_numel)
    if name in POOL_OPS:
        return _elementwise("pool_bwd" if backward else "pool_fwd", big)
    if name in ACT_OPS:
        return _elementwise("act_bwd" if backward else "act_fwd", big)
    if name in LOSS_OPS:
        return _elementwise("loss", big)
    if name in COPY_OPS:
        return _elementwise("copy", big)
    if backward and name in ("add_", "add") and node.args and _is_accumulator(node):
        return _elementwise("optimizer", big)
    return _elementwise("elementwise", big)


def _is_accumulator(node: torch.fx.Node) -> bool:
    a = node.args[0]
    return isinstance(a, torch.fx.Node) and a.op == "placeholder"


POOL_OPS = {"avg_pool2d", "avg_pool2d_backward", "max_pool2d_with_indices", "max_pool2d_with_indices_backward",
            "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "_adaptive_avg_pool2d_backward", "mean"}
ACT_OPS = {"relu", "threshold_backward", "hardtanh", "hardtanh_backward", "gelu", "gelu_backward", "sigmoid",
           "sigmoid_backward", "tanh", "tanh_backward"}
LOSS_OPS = {"_log_softmax", "_log_softmax_backward_data", "nll_loss_forward", "nll_loss_backward", "ones_like"}
COPY_OPS = {"clone", "copy_", "zeros_like", "zero_", "fill_", "constant_pad_nd", "new_zeros", "zeros"}
