"""Static L2 memory plan of a captured step: lifetimes, in-place reuse, placement, lower bound.

Every tensor of the step gets a *storage*: persistent state (weights, momentum, accumulated
gradients, norm buffers), the micro-batch input, every op output (activations, activation
gradients, parameter gradients) and every kernel's scratch (im2col, transposed weights).
Views and in-place ops share their input's storage (from the aten schema's alias annotations);
an element-wise op may also overwrite an input that dies at that op ("in-place where legal").

A storage is live from the op that writes it to the last op that reads any alias of it;
persistent state is live over the whole step. Placement assigns each storage an offset in one
arena so that storages live at the same time never overlap: a best-fit heuristic first, then
OR-Tools CP-SAT (``AddNoOverlap2D`` over time x address, minimising the peak) seeded with it.
The lower bound is the largest number of bytes live at any one op: no placement can beat it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .stepgraph import ALIGN, OpRecord, Storage, StepGraph, build_graph

__all__ = ["ALIGN", "MemoryPlan", "OpRecord", "Storage", "StepGraph", "best_fit", "breakdown_at", "build_graph",
           "dominant_at", "plan_memory", "validate_plan"]


@dataclass
class MemoryPlan:
    offsets: list[int]  # by storage id
    peak: int
    lower_bound: int
    lower_bound_t: int
    method: str
    solve_s: float = 0.0
    heuristic_peak: int = 0
    status: str = ""

    @property
    def overhead(self) -> float:
        return self.peak / self.lower_bound if self.lower_bound else 1.0


def _overlap_t(a: Storage, b: Storage) -> bool:
    return a.start <= b.end and b.start <= a.end


def best_fit(storages: list[Storage], base: int = 0, order: str = "size", first: bool = False) -> dict[int, int]:
    """Greedy placement in the given order, each tensor into the tightest gap (``first``: the
    lowest gap) left by the already placed tensors that overlap it in time."""
    if order == "size":
        items = sorted(storages, key=lambda s: (-s.size, -(s.end - s.start), s.sid))
    elif order == "start":
        items = sorted(storages, key=lambda s: (s.start, -s.size, s.sid))
    elif order == "length":
        items = sorted(storages, key=lambda s: (-(s.end - s.start), -s.size, s.sid))
    else:
        items = sorted(storages, key=lambda s: (-(s.end - s.start + 1) * s.size, s.sid))
    placed: list[tuple[Storage, int]] = []
    out: dict[int, int] = {}
    for s in items:
        busy = sorted((o, o + p.size) for p, o in placed if _overlap_t(p, s))
        best, best_gap, cur = None, None, base
        for lo, hi in busy:
            if lo - cur >= s.size:
                gap = lo - cur
                if best_gap is None or gap < best_gap:
                    best, best_gap = cur, gap
                if first:
                    break
            cur = max(cur, hi)
        if best is None:
            best = cur
        out[s.sid] = best
        placed.append((s, best))
    return out


def plan_memory(graph: StepGraph, solver: str = "auto", time_limit_s: float = 1.0, max_cpsat_items: int = 400,
                seed: int = 0) -> MemoryPlan:
    """Place every storage of ``graph`` in one arena. ``solver``: auto | cpsat | bestfit."""
    t0 = time.perf_counter()
    st = [s for s in graph.storages if s.nbytes > 0 and s.level == "L2"]
    live = graph.live_bytes()
    lb = max(live)
    lb_t = live.index(lb)
    offsets = [0] * len(graph.storages)
    # persistent state lives throughout: stack it at the bottom of the arena
    base = 0
    for s in sorted((s for s in st if s.persistent), key=lambda s: (-s.size, s.sid)):
        offsets[s.sid] = base
        base += s.size
    rest = [s for s in st if not s.persistent]
    cands = [best_fit(rest, base, o, f) for o in ("size", "area", "start", "length") for f in (False, True)]
    peaks = [max([base] + [c[s.sid] + s.size for s in rest]) for c in cands]
    bf = cands[peaks.index(min(peaks))]
    heur_peak = min(peaks)
    for sid, o in bf.items():
        offsets[sid] = o
    peak, method, status = heur_peak, "best-fit", "heuristic"
    use_cpsat = solver == "cpsat" or (solver == "auto" and len(rest) <= max_cpsat_items)
    if use_cpsat and rest and (heur_peak > lb or solver == "cpsat"):
        res = _cpsat(rest, base, lb, heur_peak, bf, time_limit_s, seed)
        if res is not None:
            offs, p, status = res
            if p <= heur_peak:
                for sid, o in offs.items():
                    offsets[sid] = o
                peak, method = p, "cp-sat"
    elif heur_peak <= lb:
        status = "optimal (heuristic meets the lower bound)"
    l3 = 0  # external RAM: spilled storages stacked one after the other (no reuse needed, it is large)
    for s in graph.storages:
        if s.nbytes and s.level == "L3":
            offsets[s.sid] = l3
            l3 += s.size
    return MemoryPlan(offsets, peak, lb, lb_t, method, time.perf_counter() - t0, heur_peak, status)


def _cpsat(rest, base, lb, ub, hint, time_limit_s, seed):
    from ortools.sat.python import cp_model

    u = ALIGN
    m = cp_model.CpModel()
    ub_u = (ub - base) // u + 1
    xs, ys, offs = [], [], {}
    peak = m.NewIntVar(max(0, (lb - base) // u), ub_u, "peak")
    for s in rest:
        sz = s.size // u
        o = m.NewIntVar(0, ub_u - sz, f"o{s.sid}")
        offs[s.sid] = o
        xs.append(m.NewFixedSizeIntervalVar(s.start, s.end - s.start + 1, f"t{s.sid}"))
        ys.append(m.NewFixedSizeIntervalVar(o, sz, f"m{s.sid}"))
        m.Add(o + sz <= peak)
        m.AddHint(o, (hint[s.sid] - base) // u)
    m.AddNoOverlap2D(xs, ys)
    m.Minimize(peak)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = int(seed)
    r = solver.Solve(m)
    if r not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    out = {sid: base + solver.Value(o) * u for sid, o in offs.items()}
    p = max([base] + [out[s.sid] + s.size for s in rest])
    return out, p, solver.StatusName(r).lower()


def validate_plan(graph: StepGraph, plan: MemoryPlan) -> list[tuple[int, int]]:
    """Pairs of storages that are live at the same time and overlap in the arena (empty if valid)."""
    bad = []
    for level in ("L2", "L3"):
        bad += _overlaps(graph, plan, level)
    return bad


def _overlaps(graph: StepGraph, plan: MemoryPlan, level: str) -> list[tuple[int, int]]:
    st = sorted((s for s in graph.storages if s.nbytes > 0 and s.level == level), key=lambda s: plan.offsets[s.sid])
    bad = []
    for i, a in enumerate(st):
        ao = plan.offsets[a.sid]
        for b in st[i + 1:]:
            bo = plan.offsets[b.sid]
            if bo >= ao + a.size:
                break
            if _overlap_t(a, b):
                bad.append((a.sid, b.sid))
    return bad


def breakdown_at(graph: StepGraph, t: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in graph.storages:
        if s.nbytes and s.level == "L2" and s.start <= t <= s.end:
            out[s.kind] = out.get(s.kind, 0) + s.size
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def dominant_at(graph: StepGraph, t: int, k: int = 8) -> list[dict]:
    live = [s for s in graph.storages if s.nbytes and s.level == "L2" and s.start <= t <= s.end]
    live.sort(key=lambda s: -s.size)
    out = []
    for s in live[:k]:
        out.append({"name": s.name, "kind": s.kind, "bytes": s.size, "shape": list(s.shape),
                    "live_ops": [s.start, s.end]})
    return out
