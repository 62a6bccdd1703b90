"""The op table: every aten op the device pipeline knows, by name, with both halves.

``OPS`` maps an op name (``kernels.op_name``) to its ``OpSpec``. ``cost`` is what
``kernels.classify`` returns for a node; ``emit`` what ``export.codegen`` writes for it. An op the
table does not name costs as one element-wise pass (the optimizer's in the ``update`` phase) and
is refused by the export, as is a cost-only entry; the refusal lists the table's exported ops.
"""

from __future__ import annotations

import torch

from ..kernels import Kernel, is_view, op_name, tensor_outputs
from . import act, arith, conv, copies, free, loss, matmul, norm, pool
from .common import ELEMENTWISE
from .spec import VIEW, OpSpec, UnsupportedOp, meta_args

FAMILIES = (free, conv, matmul, norm, pool, act, arith, copies, loss)


def _register(families) -> dict[str, OpSpec]:
    table: dict[str, OpSpec] = {}
    for fam in families:
        for spec in fam.SPECS:
            for name in spec.names:
                if name in table:
                    raise RuntimeError(f"op {name!r} has two entries in the op table")
                table[name] = spec
    return table


OPS = _register(FAMILIES)
FALLBACK = OpSpec((), cost=ELEMENTWISE)  # an op the table does not name: costed, not exported
VIEW_OPS = frozenset(n for n, s in OPS.items() if s.emit == VIEW)


def spec_of(name: str) -> OpSpec:
    return OPS.get(name, FALLBACK)


def cost_of(node: torch.fx.Node, backward: bool, phase: str = "") -> Kernel:
    """The device kernel of ``node`` by its entry's cost rule; any op whose outputs are all views is free."""
    outs = tensor_outputs(node)
    if outs and all(is_view(node, i) for i, _ in outs):
        return Kernel("free")
    return spec_of(op_name(node)).cost(node, meta_args(node), backward, phase)


def emit_of(name: str, node: torch.fx.Node):
    """The entry's C emitter for ``node``; an op without one stops the export, by name."""
    spec = OPS.get(name)
    if spec is None or not callable(spec.emit):
        raise UnsupportedOp(refusal(name, node.name))
    return spec.emit


def exported() -> list[str]:
    """The ops the C export writes (a kernel call, a view or nothing), sorted."""
    return sorted(n for n, s in OPS.items() if s.exported)


def cost_only() -> list[str]:
    """The ops the cost model knows but the export refuses, sorted."""
    return sorted(n for n, s in OPS.items() if not s.exported)


def refusal(name: str, node_name: str) -> str:
    why = ("is costed but has no C kernel in the export (a cost-only entry of the op table)" if name in OPS
           else "has no entry in the op table and no C kernel in the export")
    return f"aten op {name!r} ({node_name}) {why}; supported: {', '.join(exported())}"

