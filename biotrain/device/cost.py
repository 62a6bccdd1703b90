"""Latency model of a planned step on the GAP9 cluster (BRIEF section 5 kernel figures).

Per op of the captured step:

* compute cycles: MACs over the kernel's 8-core MAC/cycle (conv forward, conv weight+input
  gradient, depthwise direct kernels, linear forward/backward), plus im2col and weight
  transposes, normalisation passes and element-wise work in cycles per element per core
  divided by the 8-core speed-up;
* L1 tiling: the op's working set (its operands and scratch) is split into tiles along time
  until a (double-buffered) tile fits the L1 budget; operands that are small or persistent
  (weights, statistics, parameter gradients) stay whole in L1;
* L2<->L1 DMA: every operand crosses once, each tile transfer pays the setup cost; with double
  buffering the byte transfer overlaps compute, the setups do not;
* a fork of the 8 cores per op and a barrier per tile.

Views, ``getitem`` and other metadata ops cost nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .memory import StepGraph

MAC_KEYS = {
    "conv_fwd": "mac_per_cycle_conv_fwd",
    "conv_bwd": "mac_per_cycle_conv_bwd",
    "dw_fwd": "mac_per_cycle_dw_fwd",
    "dw_bwd": "mac_per_cycle_dw_bwd",
    "linear_fwd": "mac_per_cycle_linear_fwd",
    "linear_bwd": "mac_per_cycle_linear_bwd",
}
ELEM_KEYS = {
    "norm_fwd": "cycles_per_elem_norm_fwd",
    "norm_bwd": "cycles_per_elem_norm_bwd",
}
STATE_KINDS = ("weights", "frozen_weights", "buffers", "optimizer_state", "accumulated_gradients", "gradients")


@dataclass
class OpCost:
    t: int
    name: str
    kernel: str
    compute: float
    dma: float
    setup: float
    sync: float
    cycles: float
    tiles: int
    l1_bytes: int
    l1_fixed_bytes: int
    macs: int


@dataclass
class StepCost:
    ops: list[OpCost]
    cycles: float
    macs: int
    cycles_by_kernel: dict = field(default_factory=dict)
    cycles_by_part: dict = field(default_factory=dict)
    cycles_by_phase: dict = field(default_factory=dict)
    peak_l1_bytes: int = 0
    peak_l1_op: str = ""
    l1_fits: bool = True


def op_cost(graph: StepGraph, rec, c: dict) -> OpCost:
    k = rec.kernel
    if k.kind == "free":
        return OpCost(rec.t, rec.node.name, "free", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    sp = float(c["parallel_speedup"])
    compute = 0.0
    for key, macs in k.macs_by.items():
        compute += macs / float(c[MAC_KEYS[key]])
    compute += k.im2col_elems * float(c["cycles_per_elem_im2col"]) / sp
    compute += k.transpose_elems * float(c["cycles_per_elem_transpose"]) / sp
    cpe = float(c[ELEM_KEYS.get(k.kind, "cycles_per_elem_elementwise")])
    compute += k.elems * cpe / sp

    # L1 working set: operands (each storage once) + scratch
    fixed, tileable, n_tile_ops = 0, 0, 0
    small = int(c["l1_fixed_small_bytes"])
    seen = set()
    for sid in list(rec.inputs) + list(rec.outputs) + list(rec.scratch):
        if sid is None or sid in seen:
            continue
        seen.add(sid)
        s = graph.storages[sid]
        if s.kind in STATE_KINDS or s.size <= small:
            fixed += s.size
        else:
            tileable += s.size
            n_tile_ops += 1
    budget = int(c["l1_budget_bytes"])
    dbl = 2 if c["l1_double_buffer"] else 1
    if tileable == 0:
        tiles, l1 = 1, fixed
    elif fixed + tileable <= budget:
        tiles, l1 = 1, fixed + tileable
    else:
        room = budget - fixed
        tiles = math.ceil(dbl * tileable / room) if room > 0 else max(1, math.ceil(tileable / 1024))
        l1 = fixed + math.ceil(dbl * tileable / tiles)
    n_fixed_ops = len(seen) - n_tile_ops
    transfers = n_fixed_ops + n_tile_ops * tiles
    dma = (fixed + tileable) / float(c["dma_bytes_per_cycle"])
    setup = transfers * float(c["dma_setup_cycles"])
    sync = float(c["fork_cycles"]) + tiles * float(c["barrier_cycles"]) + float(c["per_op_overhead_cycles"])
    body = max(compute, dma) if c["dma_overlap"] else compute + dma
    return OpCost(rec.t, rec.node.name, k.kind, compute, dma, setup, sync, body + setup + sync, tiles, int(l1),
                  int(fixed), int(k.macs))


def step_cost(graph: StepGraph, c: dict) -> StepCost:
    ops = [op_cost(graph, rec, c) for rec in graph.ops]
    phases = graph.program.phases
    total, macs = 0.0, 0
    by_kernel: dict[str, float] = {}
    by_part = {"compute": 0.0, "dma_exposed": 0.0, "dma_setup": 0.0, "fork_barrier": 0.0}
    by_phase: dict[str, float] = {}
    peak_l1, peak_op, fits = 0, "", True
    for rec, oc in zip(graph.ops, ops):
        rep = phases[rec.phase].repeat
        total += oc.cycles * rep
        macs += oc.macs * rep
        if oc.kernel != "free":
            by_kernel[oc.kernel] = by_kernel.get(oc.kernel, 0.0) + oc.cycles * rep
        by_part["compute"] += oc.compute * rep
        by_part["dma_exposed"] += max(0.0, oc.dma - oc.compute if c["dma_overlap"] else oc.dma) * rep
        by_part["dma_setup"] += oc.setup * rep
        by_part["fork_barrier"] += oc.sync * rep
        by_phase[phases[rec.phase].name] = by_phase.get(phases[rec.phase].name, 0.0) + oc.cycles * rep
        if oc.l1_bytes > peak_l1:
            peak_l1, peak_op = oc.l1_bytes, f"{oc.name} ({oc.kernel})"
        if oc.l1_fixed_bytes > int(c["l1_budget_bytes"]):
            fits = False
    # the micro-batch comes from L3 (external RAM) into L2 at the start of each repetition of a
    # phase that reads it, and once more for each planned re-fetch
    x_bytes = sum(graph.storages[graph.state_storage[k]].nbytes for k in ("x", "y"))
    l3 = 0.0
    for pi, ph in enumerate(phases):
        if "x" in ph.inputs:
            n_loads = 1 + sum(1 for t in graph.refetch if graph.ops[t].phase == pi)
            per = x_bytes / float(c["l3_bytes_per_cycle"]) + float(c["dma_setup_cycles"])
            l3 += n_loads * per * ph.repeat
            by_phase[ph.name] = by_phase.get(ph.name, 0.0) + n_loads * per * ph.repeat
    by_part["l3_input_dma"] = l3
    total += l3
    return StepCost(ops, total, macs, by_kernel, by_part, by_phase, peak_l1, peak_op, fits)
