"""The 16-bit training step on the chip: which tensors take 2 bytes, and how much faster kernels run.

What the device stores in 16 bits is the host emulation's rule (``adaptation/precision.py``,
docs/adaptation.md): weights and buffers, activations and their gradients, parameter gradients,
momentum and the input window; every floating-point storage of the step graph, scratch buffers
(im2col, transposed weights) included. Labels stay 64-bit integers. The planner then places the
narrowed storages exactly as it places fp32 ones, so the two plans compare like for like.

Kernels: ``gap9.yaml``'s ``simd16_speedup_*`` divide a kernel's cycles (``cost.work_cycles``), and
DMA moves the halved bytes.
"""

from __future__ import annotations

import torch

from ..adaptation.precision import DTYPES, check_precision
from .stepgraph import StepGraph


def narrow(graph: StepGraph, precision: str) -> StepGraph:
    """``graph`` with every fp32 storage at 2 bytes per element for a 16-bit ``precision`` (in place)."""
    if check_precision(precision) == "fp32":
        return graph
    for s in graph.storages:
        if s.dtype == torch.float32:
            s.nbytes //= 2
            s.dtype = DTYPES[precision]
    return graph


def speedup(kind: str, macs: bool, c: dict) -> float:
    """How many times faster a loop nest of ``kind`` runs in 16 bits than in fp32 (1 in fp32)."""
    if c.get("precision", "fp32") == "fp32":
        return 1.0
    if kind in ("norm_fwd", "norm_bwd"):
        return float(c["simd16_speedup_norm"])
    return float(c["simd16_speedup_mac" if macs else "simd16_speedup_elementwise"])
