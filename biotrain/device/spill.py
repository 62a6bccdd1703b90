"""Frozen layers run as inference, streaming through L3 when their activations outgrow L2.

Before the first op that reads a trainable parameter, nothing is kept for a backward pass:
autograd saves nothing for frozen layers, so each activation dies at its consumer. When even that
inference working set exceeds the L2 budget (e.g. a frozen backbone run on 8 samples at once),
the largest frozen activation live at the peak moves to external RAM (``level = "L3"``), and every
op that reads or writes it gets a double-buffered staging buffer in L2 (``l3_staging_bytes``)
through which the tiles stream. The executor keeps L3 storages in their own arena, so the saving
is executed, and the cost model charges their bytes at ``l3_bytes_per_cycle``.
"""

from __future__ import annotations

from .memory import Storage, StepGraph


def first_trainable_op(graph: StepGraph) -> int:
    """Index of the first op that reads a trainable parameter (the end of the frozen prefix)."""
    train = {graph.state_storage.get(f"param:{n}") for n in graph.program.trainable}
    return next((rec.t for rec in graph.ops if train & set(rec.inputs)), graph.n_times)


def spill_frozen(graph: StepGraph, budget: int, staging_bytes: int) -> int:
    """Move frozen-prefix activations to L3 until the L2 lower bound fits ``budget``; bytes moved."""
    end = first_trainable_op(graph)
    moved = 0
    while True:
        live = graph.live_bytes()
        peak = max(live)
        if peak <= budget:
            return moved
        t = live.index(peak)
        cands = [s for s in graph.storages if s.level == "L2" and s.kind == "activations" and not s.persistent
                 and s.nbytes > 2 * staging_bytes and s.start <= t <= s.end and s.end < end]
        if not cands:
            return moved
        s = max(cands, key=lambda s: s.size)
        s.level = "L3"
        moved += s.nbytes
        for rec in graph.ops:
            if s.sid in rec.inputs or s.sid in rec.outputs:
                st = Storage(len(graph.storages), f"{rec.node.name}:l3_staging[{s.name}]", "l3_staging",
                             min(s.nbytes, staging_bytes), rec.t, rec.t)
                graph.storages.append(st)
                rec.scratch.append(st.sid)
