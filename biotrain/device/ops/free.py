"""Ops with no device work: views, tuple items, allocation.

A view costs nothing and the export resolves it when the step is generated (the op applied to
the arena of element indices), so the C code never copies for it. ``as_strided``,
``lift_fresh_copy`` and ``sym_size`` are free on the cost side but the export has no rule for them.
"""

from .common import free
from .spec import NO_CODE, VIEW, OpSpec

VIEWS = ("view", "_unsafe_view", "t", "detach", "alias", "expand", "permute", "transpose", "unsqueeze",
         "squeeze", "slice", "select", "reshape")

SPECS = [
    OpSpec(VIEWS, cost=free, emit=VIEW),
    OpSpec(("getitem",), cost=free, emit=VIEW),  # an item of a multi-output op (``codegen._phase``)
    OpSpec(("empty",), cost=free, emit=NO_CODE),
    OpSpec(("as_strided", "lift_fresh_copy", "sym_size"), cost=free),
]
