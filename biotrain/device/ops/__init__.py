"""The op table: one entry per aten op holding its cost rule, its C emitter and its C kernels.

``kernels.classify`` and ``export.codegen`` look ops up here (``table.py``); each family module
(``conv``, ``matmul``, ``norm``, ``pool``, ``act``, ``arith``, ``copies``, ``loss``, ``free``) holds
its entries with both halves side by side. See docs/device.md, "Adding an op".
"""

from .spec import NO_CODE, VIEW, Args, OpSpec, UnsupportedOp
from .table import OPS, VIEW_OPS, cost_of, cost_only, emit_of, exported, refusal, spec_of

__all__ = ["NO_CODE", "OPS", "VIEW", "VIEW_OPS", "Args", "OpSpec", "UnsupportedOp", "cost_of", "cost_only",
           "emit_of", "exported", "refusal", "spec_of"]
