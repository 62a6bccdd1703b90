"""Latency of a planned step on the GAP9 cluster, kernel by kernel.

Per op (see ``kernels.classify`` for its loop nests and ``tiling.plan_tile`` for its L1 tiles):

* compute: each loop nest splits its parallel dimension over ``n_cores``; the busiest core
  sets the time (``ceil(par / n) / par`` of the work: 3 output channels on 8 cores keep 5 idle).
  A core runs ``inner``-long inner loops at its per-core MAC rate plus ``loop_overhead_cycles``
  per loop (set-up, accumulator store), so short loops are less efficient than long ones;
  element-wise passes cost cycles per element the same way. im2col and weight transposes are
  per-tile copies in L1;
* L2<->L1 DMA: bytes at ``dma_bytes_per_cycle``; with double-buffered tiles it overlaps the
  compute except for the first load and the last store; a single-tile kernel does not overlap.
  Every transfer pays ``dma_setup_cycles``;
* L3<->L2: bytes of operands living in L3 (spilled frozen activations, the micro-batch) at
  ``l3_bytes_per_cycle``, overlapped like the DMA;
* ``kernel_launch_cycles`` per kernel, a fork of the cores and a barrier per tile; a run of
  element-wise ops and a consumer fused with its producer share their predecessor's launch and fork.

It also counts the activity the energy model needs (MACs, element operations, bytes per level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .memory import StepGraph
from .sixteen import speedup
from .tiling import TilePlan, plan_tile

MAC_KEYS = {
    "conv_fwd": "mac_per_cycle_conv_fwd", "pw_fwd": "mac_per_cycle_conv_fwd",
    "conv_ig": "mac_per_cycle_conv_bwd", "conv_wg": "mac_per_cycle_conv_bwd",
    "pw_ig": "mac_per_cycle_conv_bwd", "pw_wg": "mac_per_cycle_conv_bwd",
    "dw_fwd": "mac_per_cycle_dw_fwd", "dw_ig": "mac_per_cycle_dw_bwd", "dw_wg": "mac_per_cycle_dw_bwd",
    "linear_fwd": "mac_per_cycle_linear_fwd", "linear_bwd": "mac_per_cycle_linear_bwd",
}
# the exported program's direct input-gradient kernels (a gather with per-tap index arithmetic) run
# at their own RTL-measured rate; absent (paper-toolchain), the input gradient takes the backward rate
IG_KEYS = {"conv_ig": "mac_per_cycle_conv_ig", "pw_ig": "mac_per_cycle_conv_ig"}
ELEM_KEYS = {
    "norm_fwd": "cycles_per_elem_norm_fwd", "norm_bwd": "cycles_per_elem_norm_bwd",
}


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
    tile_shape: tuple = ()
    l2_l1_bytes: int = 0
    l3_bytes: int = 0
    elem_ops: float = 0.0
    fits_l1: bool = True


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
    activity: dict = field(default_factory=dict)  # macs, elem_ops, l1/l2/l3 bytes, core_cycles
    tiles: list = field(default_factory=list)  # the tile plan of the largest kernels


def counter_kind(kind: str) -> str:
    """A kernel or loop-nest kind folded into the exported program's counter kinds
    (``export.codegen.report_kind``): the per-kind keys of the ``exported`` block
    (``loop_overhead_cycles_<kind>``, ``call_cycles_<kind>``, measured on the RTL) are by these."""
    from .export.codegen import report_kind

    return report_kind(kind)


def call_cycles(kernel_kind: str, c: dict) -> float:
    """Fixed cycles per kernel call on each core (``call_cycles_<kind>``; 0 where not given: the
    paper-toolchain block has none)."""
    return float(c.get(f"call_cycles_{counter_kind(kernel_kind)}", 0.0))


def per_core_mac_rate(kind: str, c: dict) -> float:
    """BRIEF's 8-core MAC/cycle figures are per-cluster; a core runs 1/8 of them."""
    key = IG_KEYS.get(kind)
    if key is not None and key in c:  # exported program: the input gradient's own measured rate
        return float(c[key]) / 8.0
    return float(c[MAC_KEYS[kind]]) / 8.0


def work_cycles(w, c: dict) -> tuple[float, float]:
    """(cycles of the busiest core, element operations) of one loop nest."""
    n = max(1, int(c["n_cores"]))
    par = max(1, int(w.par))
    share = math.ceil(par / n) / par  # the busiest core's share of the work
    loops = (w.macs or w.elems) / max(1, int(w.inner))
    ovh = float(c.get(f"loop_overhead_cycles_{counter_kind(w.kind)}", c["loop_overhead_cycles"]))
    simd = speedup(w.kind, bool(w.macs), c)  # 16-bit: the 2-lane SIMD rates (sixteen.py)
    if w.macs:
        rows = w.rows * float(c.get(f"row_overhead_cycles_{counter_kind(w.kind)}", 0.0))
        return share * (w.macs / per_core_mac_rate(w.kind, c) + loops * ovh + rows) / simd, 0.0
    cpe = float(c[ELEM_KEYS.get(w.kind, "cycles_per_elem_elementwise")])
    return share * (w.elems * cpe + loops * ovh) / simd, float(w.elems)


CHAINABLE = ("elementwise", "optimizer", "act_fwd", "act_bwd", "loss", "copy")


def chained_ops(graph: StepGraph) -> set[int]:
    """Ops that run inside the previous kernel's launch: a run of element-wise kernels (the SGD
    update of a tensor, a loss, a norm-input reconstruction) is one cluster kernel, and a value
    fused into its consumer (``Storage.fused_into``) makes the consumer part of its producer."""
    fused = {s.fused_into for s in graph.storages if s.fused_into is not None}
    out, prev = set(), None
    for rec in graph.ops:
        if rec.kernel.kind == "free":
            continue
        chain = prev is not None and prev.phase == rec.phase and prev.kernel.kind in CHAINABLE and rec.kernel.kind in CHAINABLE
        if chain or rec.t in fused:
            out.add(rec.t)
        prev = rec
    return out


def op_cost(graph: StepGraph, rec, c: dict, chained: bool = False) -> OpCost:
    k = rec.kernel
    if k.kind == "free":
        return OpCost(rec.t, rec.node.name, "free", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    tile: TilePlan = plan_tile(graph, rec, c)
    n = max(1, int(c["n_cores"]))
    compute, elem_ops = 0.0, 0.0
    for w in k.works:
        cyc, el = work_cycles(w, c)
        compute += cyc
        elem_ops += el
    compute += call_cycles(k.kind, c)
    copies = (k.im2col_elems * float(c["cycles_per_elem_im2col"]) + k.transpose_elems * float(c["cycles_per_elem_transpose"])) \
        / speedup("copy", False, c)
    compute += copies / n
    dma = tile.l2_l1_bytes / float(c["dma_bytes_per_cycle"])
    l3 = tile.l3_bytes / float(c["l3_bytes_per_cycle"])
    if tile.double_buffered and c["dma_overlap"]:
        # the first tile's load and the last tile's store are exposed, the rest hides under compute
        edge = (dma + l3) / tile.n_tiles
        body = max(compute, dma, l3) + edge
    else:
        body = compute + dma + l3
    setup = tile.transfers * float(c["dma_setup_cycles"])
    # the orchestrating core forks the compute cores for every tile and waits at a barrier
    per_tile = float(c["barrier_cycles"]) + (0.0 if chained and tile.n_tiles == 1 else float(c["fork_cycles"]))
    sync = (0.0 if chained else float(c["kernel_launch_cycles"])) + tile.n_tiles * per_tile
    return OpCost(rec.t, rec.node.name, k.kind, compute, dma + l3, setup, sync, body + setup + sync, tile.n_tiles,
                  tile.l1_bytes, tile.resident_bytes, int(k.macs), tile.shape, tile.l2_l1_bytes, tile.l3_bytes,
                  elem_ops + k.im2col_elems + k.transpose_elems, tile.fits)


def streamed_op_cost(graph: StepGraph, rec, oc: OpCost, c: dict) -> OpCost:
    """An op of the depth-first streamed frozen prefix (``graph.stream``): it runs once per stream
    tile on tile-sized buffers (``oc`` was costed on them), computes only its new columns (the
    fraction ``col_fraction`` of the whole layer: halos are carried, nothing is recomputed), and
    pays its launch, fork/barrier and DMA set-up per stream tile. The assembled output (and an input
    kept whole) moves once in total, 1/n per tile. The first op also pays the halo moves."""
    st = graph.stream
    if oc.kernel == "free":
        return oc
    n = max(1, int(st.n_tiles))
    f = float(st.col_fraction.get(rec.t, 1.0))
    whole = sum(graph.storages[s].size for s in set(rec.inputs) | set(rec.outputs)
                if s is not None and s in st.buffers and st.buffers[s].role != "tile")
    moved = max(0, oc.l2_l1_bytes - whole) * n + whole
    dma = moved / float(c["dma_bytes_per_cycle"]) + oc.l3_bytes / float(c["l3_bytes_per_cycle"])
    compute, elem = oc.compute * f, oc.elem_ops * f
    if rec.t == st.t0 and st.halo_copy_elems:
        copies = float(st.halo_copy_elems)
        compute += copies * float(c["cycles_per_elem_elementwise"]) / max(1, int(c["n_cores"]))
        elem += copies
    body = max(compute, dma) + dma / n if (n > 1 and c["dma_overlap"]) else compute + dma
    setup, sync = oc.setup * n, oc.sync * n
    return replace(oc, compute=compute, dma=dma, setup=setup, sync=sync, cycles=body + setup + sync,
                   tiles=oc.tiles * n, macs=int(round(oc.macs * f)), l2_l1_bytes=int(moved), elem_ops=elem)


def input_load_cycles(graph: StepGraph, c: dict) -> dict[str, float]:
    """The micro-batch comes from L3 (external RAM) into L2 once per repetition of each phase
    that reads it, and once more for each planned re-fetch; not overlapped."""
    x_bytes = sum(graph.storages[graph.state_storage[k]].nbytes for k in ("x", "y") if k in graph.state_storage)
    out = {}
    for pi, ph in enumerate(graph.program.phases):
        if "x" in ph.inputs:
            n_loads = 1 + sum(1 for t in graph.refetch if graph.ops[t].phase == pi)
            per = x_bytes / float(c["l3_bytes_per_cycle"]) + float(c["dma_setup_cycles"])
            out[ph.name] = n_loads * per * ph.repeat + float(c["micro_batch_overhead_cycles"]) * ph.repeat
            out[ph.name + ":bytes"] = n_loads * x_bytes * ph.repeat
    return out


def step_cost(graph: StepGraph, c: dict) -> StepCost:
    chained = chained_ops(graph)
    ops = [op_cost(graph, rec, c, rec.t in chained) for rec in graph.ops]
    st = getattr(graph, "stream", None)
    if st is not None:
        ops = [streamed_op_cost(graph, rec, oc, c) if rec.phase == st.phase and st.t0 <= rec.t <= st.t1 else oc
               for rec, oc in zip(graph.ops, ops)]
    phases = graph.program.phases
    total, macs = 0.0, 0
    by_kernel: dict[str, float] = {}
    by_part = {"compute": 0.0, "dma_exposed": 0.0, "dma_setup": 0.0, "fork_barrier_launch": 0.0}
    by_phase: dict[str, float] = {}
    act = {"macs": 0.0, "elem_ops": 0.0, "l2_l1_bytes": 0.0, "l3_bytes": 0.0}
    peak_l1, peak_op, fits = 0, "", True
    for rec, oc in zip(graph.ops, ops):
        rep = phases[rec.phase].repeat
        total += oc.cycles * rep
        macs += oc.macs * rep
        if oc.kernel != "free":
            by_kernel[oc.kernel] = by_kernel.get(oc.kernel, 0.0) + oc.cycles * rep
        by_part["compute"] += oc.compute * rep
        by_part["dma_exposed"] += (oc.cycles - oc.compute - oc.setup - oc.sync) * rep
        by_part["dma_setup"] += oc.setup * rep
        by_part["fork_barrier_launch"] += oc.sync * rep
        by_phase[phases[rec.phase].name] = by_phase.get(phases[rec.phase].name, 0.0) + oc.cycles * rep
        act["macs"] += oc.macs * rep
        act["elem_ops"] += oc.elem_ops * rep
        act["l2_l1_bytes"] += oc.l2_l1_bytes * rep
        act["l3_bytes"] += oc.l3_bytes * rep
        if oc.l1_bytes > peak_l1:
            peak_l1, peak_op = oc.l1_bytes, f"{oc.name} ({oc.kernel})"
        if not oc.fits_l1 or oc.l1_bytes > int(c["l1_budget_bytes"]):
            fits = False
    loads = input_load_cycles(graph, c)
    l3 = 0.0
    for ph in phases:
        if ph.name in loads:
            l3 += loads[ph.name]
            by_phase[ph.name] = by_phase.get(ph.name, 0.0) + loads[ph.name]
            act["l3_bytes"] += loads[ph.name + ":bytes"]
    by_part["l3_input_dma"] = l3
    total += l3
    act["cycles"] = total
    big = sorted((o for o in ops if o.kernel != "free"), key=lambda o: -o.cycles)[:8]
    tiles = [{"op": o.name, "kernel": o.kernel, "tile_shape": list(o.tile_shape), "n_tiles": o.tiles,
              "l1_bytes": o.l1_bytes, "l2_l1_bytes": o.l2_l1_bytes, "l3_bytes": o.l3_bytes,
              "cycles": round(o.cycles)} for o in big]
    return StepCost(ops, total, macs, by_kernel, by_part, by_phase, peak_l1, peak_op, fits, act, tiles)
