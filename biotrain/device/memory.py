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

from .capture import StepProgram
from .kernels import INPLACE_OK, Kernel, classify, op_name, return_alias, tensor_inputs, tensor_outputs

ALIGN = 8  # bytes; fp32 and int64 views of the byte arena need aligned offsets
FUSABLE_ACTIVATIONS = ("relu", "hardtanh", "sigmoid", "tanh", "gelu")
POOLS = ("avg_pool2d", "max_pool2d", "max_pool2d_with_indices", "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "mean")
PERSISTENT_KINDS = ("weights", "frozen_weights", "buffers", "optimizer_state", "accumulated_gradients")


def _align(n: int) -> int:
    return (int(n) + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Storage:
    sid: int
    name: str
    kind: str
    nbytes: int
    start: int
    end: int
    shape: tuple = ()
    dtype: torch.dtype = torch.float32
    persistent: bool = False
    members: list = field(default_factory=list)  # value names merged into this storage (in-place)
    # op index of the consumer kernel that computes this value on the fly (fused): the storage then
    # has no bytes, and the executor runs producer and consumer back to back without an arena slot
    fused_into: int | None = None
    level: str = "L2"  # L2, or L3 for activations of a frozen (inference) prefix streamed through external RAM

    @property
    def size(self) -> int:
        return _align(self.nbytes)


@dataclass
class OpRecord:
    t: int
    phase: int
    node: torch.fx.Node
    name: str
    kernel: Kernel
    backward: bool
    scratch: list = field(default_factory=list)  # storage ids
    inputs: list = field(default_factory=list)  # storage ids read
    outputs: list = field(default_factory=list)  # storage ids written (fresh or merged)
    out_idx: list = field(default_factory=list)  # output index of each entry of ``outputs``


@dataclass
class StepGraph:
    """The step's timeline of ops and its storages, ready to be placed."""

    program: StepProgram
    ops: list[OpRecord]
    storages: list[Storage]
    # (phase index, node name, output index) -> storage id ; None for non-tensor values
    value_storage: dict
    state_storage: dict  # state name -> storage id
    n_times: int
    inplace_merges: int = 0
    # (phase, node, output) -> (padded shape, pads) for values written into a padded buffer
    value_interior: dict = field(default_factory=dict)
    # op index -> storage id: the input micro-batch is DMA'd again from L3 into this slot before the op
    refetch: dict = field(default_factory=dict)

    def live_bytes(self) -> list[int]:
        live = [0] * self.n_times
        for s in self.storages:
            if s.nbytes == 0 or s.level != "L2":
                continue
            for t in range(s.start, s.end + 1):
                live[t] += s.size
        return live


def build_graph(program: StepProgram, inplace: bool = True, rewrites: bool = True,
                l2_scratch: bool = False) -> StepGraph:
    """Storages and lifetimes of a captured step.

    ``inplace``: element-wise ops and norms may overwrite an input that dies at them.
    ``rewrites``: also the layout/fusion rewrites (padding elision, in-place depthwise input
    gradient, gradients accumulated by their kernel, activation fused into pooling, input re-fetch).
    ``l2_scratch``: kernel scratch (im2col, transposed weights) as whole-layer L2 buffers, the
    PULP-TrainLib toolchain's placement; otherwise it is built per tile in L1 (see ``tiling.py``).
    """
    refetch_input = rewrites
    storages: list[Storage] = []

    def new(name, kind, nbytes, start, end, shape=(), dtype=torch.float32, persistent=False):
        s = Storage(len(storages), name, kind, int(nbytes), start, end, tuple(shape), dtype, persistent, [name])
        storages.append(s)
        return s.sid

    state_storage = {}
    for name, spec in program.states.items():
        nb = (torch.Size(spec.shape).numel()) * torch.empty((), dtype=spec.dtype).element_size()
        persistent = spec.kind in PERSISTENT_KINDS
        state_storage[name] = new(name, spec.kind, nb, 0, 0, spec.shape, spec.dtype, persistent)

    value_storage: dict = {}
    ops: list[OpRecord] = []
    t = 0
    def find(s):
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    # pass 1: storages, aliases, uses
    last_use: dict[int, int] = {}
    use_times: dict[int, list] = {}
    for pi, phase in enumerate(program.phases):
        placeholders = [n for n in phase.gm.graph.nodes if n.op == "placeholder"]
        for n, state in zip(placeholders, phase.inputs):
            value_storage[(pi, n.name, 0)] = state_storage[state]
        backward = False
        for node in phase.gm.graph.nodes:
            if node.op != "call_function":
                continue
            kern = classify(node, backward, phase.name)
            rec = OpRecord(t, pi, node, op_name(node), kern, backward)
            for a in tensor_inputs(node):
                idxs = [node.args[1]] if rec.name == "getitem" else range(8)  # getitem reads one element
                for key in [k for k in ((pi, a.name, i) for i in idxs) if k in value_storage]:
                    sid = value_storage[key]
                    if sid is not None:
                        rec.inputs.append(sid)
                        last_use[sid] = t
                        use_times.setdefault(sid, []).append(t)
            if rec.name == "getitem":
                src, idx = node.args
                value_storage[(pi, node.name, 0)] = value_storage.get((pi, src.name, idx))
            else:
                for i, v in tensor_outputs(node):
                    ai = return_alias(node, i)
                    if ai is not None:
                        arg = node.args[ai] if ai < len(node.args) else None
                        value_storage[(pi, node.name, i)] = (
                            value_storage.get((pi, arg.name, 0)) if isinstance(arg, torch.fx.Node) else None
                        )
                        continue
                    nb = v.numel() * v.element_size()
                    if nb == 0:
                        value_storage[(pi, node.name, i)] = None
                        continue
                    kind = "activation_gradients" if backward else "activations"
                    if node.meta.get("recomputed"):
                        kind = "recomputed_activations"
                    if phase.name == "update":
                        kind = "optimizer_temp"
                    sid = new(f"{node.name}" + (f"[{i}]" if i else ""), kind, nb, t, t, v.shape, v.dtype)
                    value_storage[(pi, node.name, i)] = sid
                    rec.outputs.append(sid)
                    rec.out_idx.append(i)
                for label, nb in (kern.scratch if l2_scratch else []):
                    rec.scratch.append(new(f"{node.name}:{label}", "scratch", nb, t, t))
            ops.append(rec)
            if phase.loss_node is not None and node.name == phase.loss_node:
                backward = True
            t += 1
        for g in phase.grad_nodes:
            sid = value_storage.get((pi, g, 0))
            if sid is not None and not storages[sid].persistent:
                storages[sid].kind = "gradients"
    n_times = max(t, 1)

    # lifetimes
    for s in storages:
        if s.persistent:
            s.start, s.end = 0, n_times - 1
        else:
            s.end = max(s.end, last_use.get(s.sid, s.start))
    for name in [n for n in ("x", "y") if n in state_storage]:
        s = storages[state_storage[name]]
        s.start, s.end = 0, last_use.get(s.sid, 0)

    # re-fetch of the input: the micro-batch lives in L3 (external RAM) anyway, so when the forward
    # pass is done with it and only the backward of the first layer reads it again, it is DMA'd
    # into L2 a second time instead of being held across the whole step
    refetch: dict = {}
    if refetch_input:
        xs = state_storage["x"]
        times = sorted(set(use_times.get(xs, [])))
        if len(times) > 1:
            gap, i = max((times[k + 1] - times[k], k) for k in range(len(times) - 1))
            t_b = times[i + 1]
            later = [rec for rec in ops if rec.t >= t_b and xs in rec.inputs]
            direct = all(any(a.op == "placeholder" and program.phases[rec.phase].inputs[
                [n for n in program.phases[rec.phase].gm.graph.nodes if n.op == "placeholder"].index(a)] == "x"
                for a in rec.node.all_input_nodes if a.op == "placeholder") for rec in later)
            if gap > 1 and later and direct and all(rec.phase == later[0].phase for rec in later):
                sx = storages[xs]
                x2 = new("x (re-fetched from L3)", "input", sx.nbytes, t_b, times[-1], sx.shape, sx.dtype)
                sx.end = times[i]
                for rec in later:
                    rec.inputs = [x2 if sid == xs else sid for sid in rec.inputs]
                refetch[t_b] = x2

    # pass 2: reuse of storages that die at an op
    merges = 0
    parent = list(range(len(storages)))  # union-find for in-place merges
    interior: dict = {}  # storage id -> (padded shape, pads): written straight into a padded buffer
    if inplace:
        # 2a. padding elision: a zero pad whose input dies there makes the producer write into the
        #     interior of the padded buffer (borders zeroed), so the pad copies nothing
        producer = {sid: rec for rec in ops for sid, i in zip(rec.outputs, rec.out_idx) if i == 0}
        for rec in ops:
            if not rewrites or rec.name != "constant_pad_nd" or not rec.outputs:
                continue
            node = rec.node
            pads = [int(p) for p in node.args[1]]
            value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
            arg = node.args[0]
            if value not in (0, 0.0, None) or any(p < 0 for p in pads) or not isinstance(arg, torch.fx.Node):
                continue
            src = value_storage.get((rec.phase, arg.name, 0))
            if src is None or find(src) != src:
                continue
            rs, so = storages[src], storages[rec.outputs[0]]
            if len(rs.members) != 1 or rs.persistent or rs.kind in ("input", "scratch") or rs.end != rec.t:
                continue
            parent[src] = so.sid
            so.start = min(so.start, rs.start)
            so.members = rs.members + so.members
            interior[src] = (tuple(so.shape), tuple(pads))
            rec.kernel = Kernel("free")
            merges += 1
            # walk up: an element-wise/norm producer may also work inside the padded buffer, in place
            cur = src
            while True:
                prod = producer.get(cur)
                if prod is None or INPLACE_OK.get(prod.name) is None or prod.name == "constant_pad_nd":
                    break
                a = prod.node.args[INPLACE_OK[prod.name]]
                up = value_storage.get((prod.phase, a.name, 0)) if isinstance(a, torch.fx.Node) else None
                if up is None or find(up) != up:
                    break
                us = storages[up]
                if (len(us.members) != 1 or us.persistent or us.kind in ("input", "scratch") or us.end != prod.t
                        or us.nbytes != storages[cur].nbytes):
                    break
                parent[up] = so.sid
                so.start = min(so.start, us.start)
                so.members = us.members + so.members
                interior[up] = (tuple(so.shape), tuple(pads))
                merges += 1
                cur = up
        # 2b. in-place: an op overwrites an input that dies at it (element-wise ops, norms, and the
        #     input gradient of a depthwise convolution over its own input, channel block by block)
        for rec in ops:
            arg_i = INPLACE_OK.get(rec.name)
            if rewrites and rec.name == "convolution_backward" and rec.kernel.kind in ("dw_ig", "dw_bwd"):
                arg_i = 1
            if arg_i is None or 0 not in rec.out_idx or arg_i >= len(rec.node.args):
                continue
            arg = rec.node.args[arg_i]
            if not isinstance(arg, torch.fx.Node):
                continue
            src = value_storage.get((rec.phase, arg.name, 0))
            if src is None:
                continue
            r = find(src)
            out = rec.outputs[rec.out_idx.index(0)]
            if find(out) != out:
                continue
            rs, so = storages[r], storages[out]
            if rs.persistent or rs.kind in ("input", "scratch") or rs.end != rec.t or rs.size != so.size:
                continue
            if src in interior:
                continue  # the value read sits inside a padded buffer: layouts differ
            parent[out] = r
            rs.end = max(rs.end, so.end)
            rs.members += so.members
            if so.kind == "gradients":
                rs.kind = "gradients"
            merges += 1
        # 2c. fused gradient accumulation: a parameter gradient consumed only by ``accum += g``
        #     right where it dies is accumulated by its kernel (C += A.B), with no buffer of its own;
        #     legal only when the accumulation is the very next kernel (producer and consumer fuse)
        kernel_ts = [r.t for r in ops if r.kernel.kind != "free"]
        next_kernel = {a: b for a, b in zip(kernel_ts, kernel_ts[1:])}
        for rec in ops:
            if not rewrites or rec.name != "add_" or len(rec.node.args) < 2:
                continue
            a0, a1 = rec.node.args[0], rec.node.args[1]
            if not isinstance(a0, torch.fx.Node) or not isinstance(a1, torch.fx.Node):
                continue
            s0 = value_storage.get((rec.phase, a0.name, 0))
            s1 = value_storage.get((rec.phase, a1.name, 0))
            if s0 is None or s1 is None or storages[s0].kind != "accumulated_gradients" or find(s1) != s1:
                continue
            g1 = storages[s1]
            if (len(g1.members) != 1 or g1.persistent or g1.kind != "gradients" or g1.end != rec.t or s1 in interior
                    or next_kernel.get(g1.start) != rec.t):
                continue
            g1.nbytes = 0
            g1.kind = "gradients_fused_into_accumulation"
            g1.fused_into = rec.t
            merges += 1
        # 2d. activation fused into a pooling consumer: relu(y) read once, by the pooling op where it
        #     dies, is computed on the fly by the pooling kernel and never stored
        uses: dict = {}
        for rec in ops:
            if rec.kernel.kind != "free":
                for sid in set(rec.inputs):
                    uses.setdefault(sid, []).append(rec)
        for rec in ops:
            if not rewrites or rec.name not in FUSABLE_ACTIVATIONS or not rec.outputs:
                continue
            sid = rec.outputs[0]
            st = storages[sid]
            if find(sid) != sid or len(st.members) != 1 or sid in interior or st.persistent:
                continue
            consumers = uses.get(sid, [])
            if (len(consumers) == 1 and consumers[0].name in POOLS and st.end == consumers[0].t
                    and next_kernel.get(st.start) == consumers[0].t):
                st.nbytes = 0
                st.kind = "activations_fused_into_pooling"
                st.fused_into = consumers[0].t
                merges += 1
    value_interior = {k: interior[v] for k, v in value_storage.items() if v in interior}
    remap = {s.sid: find(s.sid) for s in storages}
    kept = [s for s in storages if remap[s.sid] == s.sid]
    new_id = {s.sid: i for i, s in enumerate(kept)}
    for s in kept:
        s.sid = new_id[s.sid]
    fix = lambda sid: None if sid is None else new_id[remap[sid]]  # noqa: E731
    value_storage = {k: fix(v) for k, v in value_storage.items()}
    state_storage = {k: fix(v) for k, v in state_storage.items()}
    for rec in ops:
        rec.inputs = [fix(s) for s in rec.inputs]
        rec.outputs = [fix(s) for s in rec.outputs]
        rec.scratch = [fix(s) for s in rec.scratch]
    refetch = {t: fix(sid) for t, sid in refetch.items()}
    return StepGraph(program, ops, kept, value_storage, state_storage, n_times, merges, value_interior, refetch)


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
