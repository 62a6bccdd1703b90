"""Copies, fills and padding (kind ``copy``).

``constant_pad_nd`` the plan turned into a padded buffer (its producers write the interior) is
free and emits nothing (``codegen._op``); otherwise ``k_pad`` copies tile by tile (negative pads
crop). ``zeros_like``, ``fill_``, ``new_zeros`` and ``zeros`` are costed only.
"""

from __future__ import annotations

from ..export.l1 import Stage
from .common import pointwise
from .spec import OpSpec, UnsupportedOp, fmt, vid

COPY = pointwise("copy")


def copy_emit(cg, node, a, out):
    return f"k_copy({cg.T(a.self)}, {cg.T(a.src)})"


def clone_emit(cg, node, a, out):
    return f"k_copy({cg.T(out)}, {cg.T(a.self)})"


def zero_emit(cg, node, a, out):
    return f"k_fill({cg.T(out)}, 0.0f)"


def pad_emit(cg, node, a, out):
    T = cg.T
    pads = list(a.pad)
    if len(pads) > 4:
        raise UnsupportedOp(f"{node.name}: padding of more than the last two dimensions")
    pads += [0] * (4 - len(pads))
    y_, x_ = T(out), T(a.self)
    xi, pw = vid(x_), pads[0]
    return [Stage(f"k_pad({y_}, {x_}, {pads[2]}, $pw$, {fmt(a.value)})", vid(y_),
                  {xi: ("pad", pw, int(a.self.idx.shape[-1]))},
                  {"pw": lambda t, nt, w0, w1, lo: pw + lo(xi) - w0})]


SPECS = [
    OpSpec(("copy_",), cost=COPY, emit=copy_emit, kernel=("k_copy",)),
    OpSpec(("clone",), cost=COPY, emit=clone_emit, kernel=("k_copy",)),
    OpSpec(("zero_",), cost=COPY, emit=zero_emit, kernel=("k_fill",)),
    OpSpec(("constant_pad_nd",), cost=COPY, emit=pad_emit, kernel=("k_pad",)),
    OpSpec(("zeros_like", "fill_", "new_zeros", "zeros"), cost=COPY),
]
