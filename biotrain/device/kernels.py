"""Map aten ops of a captured step onto PULP-TrainLib-style kernels (BRIEF section 5).

For every ``call_function`` node ``classify`` says which device kernel runs it, how many MACs or
elements it touches, and which kernel scratch buffers it needs (im2col, transposed weights): the
cost rule of the op's entry in the op table (``ops/``). This module holds what those rules build
(``Kernel``, ``Work``) and the graph facts the planner reads (outputs, aliases, in-place reuse).
Shapes come from the ``val`` metadata that ``make_fx`` records on each node.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch

aten = torch.ops.aten

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


def numel(v) -> int:
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


def _rows(v) -> tuple[int, int]:
    """(rows, row length) of a tensor for a row-parallel element-wise pass."""
    if not isinstance(v, torch.Tensor) or v.dim() == 0:
        return 1, max(1, numel(v))
    w = int(v.shape[-1])
    return max(1, int(v.numel()) // max(1, w)), max(1, w)


def elementwise(kind: str, v) -> Kernel:
    """One row-parallel pass over the elements of ``v``, costed as kind ``kind``."""
    rows, w = _rows(v)
    k = Kernel(kind)
    k.add(Work(kind, elems=numel(v), par=rows, inner=w))
    return k


def classify(node: torch.fx.Node, backward: bool, phase: str = "") -> Kernel:
    """The device kernel that runs ``node``: its loop nests (``works``) and its scratch, by the
    cost rule of its entry in the op table (``ops/``)."""
    from .ops import cost_of  # the table's rules build this module's Kernel and Work

    return cost_of(node, backward, phase)
