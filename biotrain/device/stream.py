"""Frozen layers at their real cost: the frozen prefix streamed depth-first in time tiles.

Before the first op that reads a trainable parameter nothing is kept for a backward pass, so the
frozen prefix is pure inference. Run layer after layer it holds whole activations (MI-BMINet: two
32 x ~1900 tensors at its temporal convolution). Run *depth-first* (fused-layer / patch-based
inference, MCUNetV2) it holds only tiles: the time axis of the prefix's output is cut into
``n_tiles`` tiles, and for each tile every prefix layer computes just the new columns that tile
needs, one layer after the other, into small per-layer tile buffers; the prefix's output is
assembled whole.

Which ops stream: a contiguous run of ops from the start of the step, all before the first
trainable op, each *tile-local along time* (the last axis): convolutions with stride 1, no time
padding and no dilation along time; eval-mode norms (running statistics, per-element affine);
element-wise activations; pooling along time without padding. The run ends at the last such op
after which exactly one of its values is read again (the assembled output).

Halo: a convolution with a kernel of ``kw`` columns needs ``kw - 1`` columns of its input beyond
the tile. They are *carried*: the input's tile buffer keeps the last ``kw - 1`` columns of the
previous tile (moved to its front) and the producer computes only the new columns, so nothing is
recomputed (``recompute_macs == 0``); the moves are ``halo_copy_elems`` element copies the cost
model charges. A buffer that carries a halo is live across the whole streamed run; the others
only from their producer to their consumer within a tile, so the planner reuses their bytes.

The micro-batch lives in L3 (external RAM) anyway: when only the streamed run reads it, each tile's
new input columns come from L3 into a small ``x tile`` buffer and the whole micro-batch never
occupies L2.

With the toolchain placement (``l2_im2col: true``, the ``paper-toolchain`` program) a streamed
convolution's L2 im2col buffer is sized for the columns one tile computes (the kernel runs once
per tile on them), not for the whole layer.

Ranges: for tile ``i`` every value has the absolute column range ``[lo, hi)`` its consumers need
(the receptive field of the output tile) and computes ``[c, hi)`` with ``c = max(lo, hi of tile
i-1)``; its buffer holds ``[lo, hi)`` at positions ``[0, hi - lo)`` (the assembled output and an
input kept whole in L2 hold absolute positions). ``execute.execute_plan`` runs exactly that, tile
by tile on the planned arena offsets, garbage-filling every tile buffer before each use.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch

from .memory import Storage, StepGraph
from .spill import first_trainable_op

ELEMENTWISE = ("relu", "hardtanh", "sigmoid", "tanh", "gelu", "clone")
NORMS = ("_native_batch_norm_legit_no_training", "native_batch_norm")
POOLS_T = ("avg_pool2d", "max_pool2d")


@dataclass
class StreamBuffer:
    """How one storage is used by the stream."""

    sid: int
    role: str  # tile | output (assembled whole) | input (x whole in L2)
    cap: int  # columns it holds (whole width for output / input)
    carry: bool = False  # keeps a halo of the previous tile
    base: list = field(default_factory=list)  # absolute column at position 0, per tile
    carry_cols: list = field(default_factory=list)  # columns kept from the previous tile, per tile
    start_in_tile: int = 0  # op index of its first write within an iteration (garbage-filled there)


@dataclass
class FrozenStream:
    """Depth-first streaming of the frozen prefix (``StepGraph.stream``)."""

    phase: int
    t0: int
    t1: int
    n_tiles: int
    out_node: str  # fx node read after the run (the assembled output)
    out_len: int
    # canonical value key (node name, output index) -> [(lo, c, hi)] per tile, absolute columns
    ranges: dict
    buffers: dict  # sid -> StreamBuffer
    x_key: tuple | None  # value key of the micro-batch placeholder
    x_tile: int | None  # sid of the L2 tile buffer the micro-batch streams into from L3 (None: x whole in L2)
    nodes: list  # fx node names of the run, in order
    lower_bound_classic: int = 0
    lower_bound_streamed: int = 0
    halo_copy_elems: int = 0
    recompute_macs: int = 0
    col_fraction: dict = field(default_factory=dict)  # op index -> computed / whole output columns

    @property
    def tile_len(self) -> int:
        return -(-self.out_len // self.n_tiles)

    def summary(self, graph: StepGraph | None = None) -> dict:
        d = {"n_tiles": self.n_tiles, "tile_len": self.tile_len, "output_len": self.out_len,
             "ops": [self.t0, self.t1], "output": self.out_node,
             "lower_bound_classic_bytes": int(self.lower_bound_classic),
             "lower_bound_streamed_bytes": int(self.lower_bound_streamed),
             "recompute_macs": int(self.recompute_macs), "halo_copy_elems": int(self.halo_copy_elems),
             "x_from_l3": self.x_tile is not None}
        if graph is not None:
            d["tile_buffers"] = {graph.storages[b.sid].name: {"bytes": graph.storages[b.sid].size, "cols": b.cap,
                                                             "carries_halo": b.carry}
                                 for b in self.buffers.values() if b.role == "tile"}
        return d


# --- receptive fields ---------------------------------------------------------------------------

def _last(v, default=None):
    if isinstance(v, (list, tuple)):
        return int(v[-1]) if len(v) else default
    return default if v is None else int(v)


def _rf(node: torch.fx.Node, name: str):
    """A function (lo, hi) -> input range along time of a tile-local op, or None if not tile-local."""
    a = node.args
    if name == "convolution":
        w = a[1].meta.get("val") if isinstance(a[1], torch.fx.Node) else None
        if w is None or _last(a[3]) != 1 or _last(a[4]) != 0 or _last(a[5]) != 1 or a[6]:
            return None
        kw = int(w.shape[-1])
        return lambda lo, hi: (lo, hi + kw - 1)
    if name in POOLS_T:
        k = _last(a[1])
        s = _last(a[2], k) if len(a) > 2 else k
        pad = _last(a[3], 0) if len(a) > 3 else 0
        ceil = bool(a[4]) if len(a) > 4 else False
        if k is None or not s or pad != 0 or ceil or (name == "max_pool2d" and len(a) > 5 and _last(a[5]) != 1):
            return None
        return lambda lo, hi: (s * lo, s * (hi - 1) + k) if hi > lo else (s * lo, s * lo)
    if name in ELEMENTWISE:
        return lambda lo, hi: (lo, hi)
    if name == "native_batch_norm" and len(a) > 5 and not a[5]:
        return lambda lo, hi: (lo, hi)
    if name == "_native_batch_norm_legit_no_training":
        return lambda lo, hi: (lo, hi)
    return None


def _canon(node: torch.fx.Node) -> tuple:
    if node.target is operator.getitem:
        return (node.args[0].name, int(node.args[1]))
    return (node.name, 0)


# --- finding the run ----------------------------------------------------------------------------

@dataclass
class _Run:
    phase: int
    recs: list  # OpRecords t0..t1
    out: torch.fx.Node
    x_ph: torch.fx.Node | None
    rfs: dict  # node name -> rf function


def _find_runs(graph: StepGraph) -> list[_Run]:
    """Every run that can stream: the tile-local frozen prefix cut where exactly one value escapes.
    Empty when the very first op reads a trainable parameter (no frozen prefix: ``sparse`` training
    the first layer, ``lora`` adapting it, whose first op is that adapter's B @ A)."""
    end = first_trainable_op(graph)
    if not graph.ops or end == 0:
        return []
    pi = graph.ops[0].phase
    phase = graph.program.phases[pi]
    placeholders = [n for n in phase.gm.graph.nodes if n.op == "placeholder"]
    persistent = {n.name for n, st in zip(placeholders, phase.inputs)
                  if graph.storages[graph.state_storage[st]].persistent}
    x_ph = next((n for n, st in zip(placeholders, phase.inputs) if st == "x"), None)
    inside: set = set()
    rfs: dict = {}
    ends = []
    recs = []
    for rec in graph.ops:
        if rec.t >= end or rec.phase != pi or rec.t in graph.refetch:
            break
        node, name = rec.node, rec.name
        ins = [a for a in node.all_input_nodes]
        if name == "getitem":
            if node.args[0].name not in inside:
                break
        elif not ins and not rec.outputs:
            pass  # bookkeeping (e.g. the empty statistics of an eval-mode norm)
        else:
            rf = _rf(node, name)
            a0 = node.args[0] if node.args else None
            others = [a for a in ins if a is not a0]
            if (rf is None or not isinstance(a0, torch.fx.Node) or not (a0.name in inside or a0 is x_ph)
                    or any(o.name not in persistent for o in others)):
                break
            val = node.meta.get("val")
            v0 = val[0] if isinstance(val, (tuple, list)) else val
            if not isinstance(v0, torch.Tensor) or v0.dim() < 2:
                break
            rfs[node.name] = rf
        inside.add(node.name)
        recs.append(rec)
        if rec.name == "getitem" or name in rfs:
            # can the run end here? exactly one of its values is read after it
            names = {r.node.name for r in recs}
            escaping = [r.node for r in recs if any(u.name not in names for u in r.node.users)]
            if len(escaping) == 1 and escaping[0].name in rfs and _storage_ok(graph, pi, escaping[0]):
                ends.append((len(recs), escaping[0]))
    return [_Run(pi, recs[:n], out, x_ph, rfs) for n, out in ends]


def _storage_ok(graph, pi, node) -> bool:
    k = _canon(node)
    sid = graph.value_storage.get((pi, k[0], k[1]))
    if sid is None:
        return False
    s = graph.storages[sid]
    return s.nbytes > 0 and len(s.shape) >= 2 and (pi, k[0], k[1]) not in graph.value_interior


# --- tiles ----------------------------------------------------------------------------------------

def _ranges(run: _Run, n: int, out_len: int) -> dict:
    """(lo, c, hi) per tile of every value of the run, from the output tiles backwards: a value is
    needed over [lo, hi) (the union of what its consumers read), computes [c, hi) with c the end of
    what it computed for the previous tile (the rest is carried), and reads its input over the
    receptive field of [c, hi) only."""
    bounds = [(i * out_len // n, (i + 1) * out_len // n) for i in range(n)]
    need: dict = {_canon(run.out): list(bounds)}
    out: dict = {}

    def computed(r):
        rows, prev = [], None
        for lo, hi in r:
            c = lo if prev is None else min(max(lo, prev), hi)
            rows.append((lo, c, hi))
            prev = hi if prev is None else max(prev, hi)
        return rows

    for rec in reversed(run.recs):
        name = rec.node.name
        if name not in run.rfs:
            continue
        r = need.get((name, 0))
        if r is None:
            continue
        rows = out[(name, 0)] = computed(r)
        a0 = rec.node.args[0]
        k = _canon(a0) if a0 is not run.x_ph else (a0.name, 0)
        new = [run.rfs[name](c, hi) for lo, c, hi in rows]
        old = need.get(k)
        need[k] = new if old is None else [(min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(old, new)]
    if run.x_ph is not None and (run.x_ph.name, 0) in need:
        out[(run.x_ph.name, 0)] = computed(need[(run.x_ph.name, 0)])
    return out


def _layout(graph: StepGraph, run: _Run, n: int, x_to_l3: bool):
    """Buffers, their sizes and lifetimes for ``n`` tiles (nothing is changed): (ranges, buffers,
    sizes, ...) where sizes maps sid -> (bytes, start, end); the x tile is sid -1. None when the
    run cannot stream (a halo in a value that is not the last one written into its storage)."""
    pi = run.phase
    out_key = _canon(run.out)
    out_sid = graph.value_storage[(pi, *out_key)]
    out_len = int(graph.storages[out_sid].shape[-1])
    ranges = _ranges(run, n, out_len)
    t0, t1 = run.recs[0].t, run.recs[-1].t
    x_key = (run.x_ph.name, 0) if run.x_ph is not None else None
    x_sid = graph.state_storage.get("x")
    prod_t = {r.node.name: r.t for r in run.recs}
    by_sid: dict = {}
    for k, rows in ranges.items():
        sid = x_sid if k == x_key else graph.value_storage.get((pi, *k))
        if sid is None or (k != x_key and (pi, *k) in graph.value_interior):
            return None
        by_sid.setdefault(sid, []).append((k, rows))
    buffers, sizes = {}, {}
    for sid, keyed in by_sid.items():
        s = graph.storages[sid]
        width = int(s.shape[-1])
        if sid == out_sid or (sid == x_sid and not x_to_l3):
            buffers[sid] = StreamBuffer(sid, "output" if sid == out_sid else "input", width, False, [0] * n,
                                        [0] * n, s.start)
            if sid == out_sid:
                sizes[sid] = (s.size, t0, s.end)
            continue
        base = [min(rows[i][0] for _, rows in keyed) for i in range(n)]
        cap = max(max(rows[i][2] for _, rows in keyed) - base[i] for i in range(n))
        carry_cols = [0] + [max(0, max(rows[i - 1][2] for _, rows in keyed) - base[i]) for i in range(1, n)]
        carry = any(carry_cols)
        if carry:
            if s.nbytes == 0:
                return None  # a fused value has no bytes to carry a halo in
            last = max(keyed, key=lambda kr: prod_t.get(kr[0][0], -1))[0]
            if any(k != last and any(lo < c for lo, c, hi in rows[1:]) for k, rows in keyed):
                return None
        per_col = s.nbytes // width
        key = -1 if sid == x_sid else sid
        start = t0 if (carry or sid == x_sid) else s.start
        end = t1 if carry else (max(_uses(graph, sid, t0, t1)) if sid == x_sid else s.end)
        buffers[key] = StreamBuffer(key, "tile", cap, carry, base, carry_cols, start)
        if s.nbytes:
            sizes[key] = (per_col * cap, start, end)
    sizes.update(_scratch_sizes(graph, run, ranges))
    return ranges, buffers, sizes, out_sid, out_len, x_key


def _scratch_sizes(graph: StepGraph, run: _Run, ranges: dict) -> dict:
    """With the toolchain placement (``l2_im2col``) a streamed kernel runs once per tile on the
    columns it computes, so its L2 im2col buffer holds those columns, not the whole layer's:
    sid -> (bytes, start, end), bytes scaled by the most columns one tile computes. Other scratch
    (transposed weights) does not depend on the columns and keeps its size."""
    out = {}
    for rec in run.recs:
        rows = ranges.get((rec.node.name, 0))
        if not rec.scratch or not rows:
            continue
        val = rec.node.meta["val"]
        whole = int((val[0] if isinstance(val, (tuple, list)) else val).shape[-1])
        cols = max(hi - c for lo, c, hi in rows)
        for sid in rec.scratch:
            st = graph.storages[sid]
            if st.kind == "scratch" and st.name.endswith(":im2col") and whole:
                out[sid] = (-(-st.nbytes * cols // whole), st.start, st.end)
    return out


NEAR_PEAK = 0.10  # a peak this much above the lowest is worth fewer tiles


def _tile_counts(out_len: int) -> list[int]:
    """Numbers of tiles worth trying: every tile length up to 16 columns, then lengths growing by a
    quarter (a finer search changes the peak by a few bytes at most), and the whole output."""
    lengths, L = set(range(1, 17)), 16
    while L < out_len:
        L = int(L * 1.25) + 1
        lengths.add(L)
    return sorted({max(1, -(-out_len // min(L, out_len))) for L in lengths})


def _uses(graph, sid, t0, t1):
    return [r.t for r in graph.ops if t0 <= r.t <= t1 and sid in r.inputs] or [t0]


def _lower_bound(graph: StepGraph, sizes: dict, x_to_l3: bool) -> int:
    live = [0] * graph.n_times
    x_sid = graph.state_storage.get("x")
    for s in graph.storages:
        if s.nbytes == 0 or s.level != "L2" or (x_to_l3 and s.sid == x_sid):
            continue
        nb, a, b = sizes.get(s.sid, (s.size, s.start, s.end))
        nb = (nb + 7) // 8 * 8
        for t in range(a, b + 1):
            live[t] += nb
    if -1 in sizes:
        nb, a, b = sizes[-1]
        for t in range(a, b + 1):
            live[t] += (nb + 7) // 8 * 8
    return max(live)


def stream_frozen(graph: StepGraph, n_tiles: int = 0) -> FrozenStream | None:
    """Stream the frozen prefix of ``graph`` depth-first when that lowers the peak; sets
    ``graph.stream`` and resizes the storages. ``n_tiles``: 0 picks the number of tiles with the
    lowest peak, otherwise that many; among tile counts whose peak is within ``NEAR_PEAK`` of the
    lowest, the fewest tiles win (every tile pays its launches and DMA set-ups again). Returns
    None (graph unchanged) when there is no tile-local frozen prefix or streaming does not lower
    the peak."""
    classic = max(graph.live_bytes())
    x_sid = graph.state_storage.get("x")
    x_uses = [r.t for r in graph.ops if x_sid in r.inputs]
    found = []
    for run in _find_runs(graph):
        t0, t1 = run.recs[0].t, run.recs[-1].t
        x_to_l3 = run.x_ph is not None and bool(x_uses) and all(t0 <= t <= t1 for t in x_uses)
        out_key = _canon(run.out)
        out_len = int(graph.storages[graph.value_storage[(run.phase, *out_key)]].shape[-1])
        for n in ([min(n_tiles, out_len)] if n_tiles else _tile_counts(out_len)):
            lay = _layout(graph, run, n, x_to_l3)
            if lay is None:
                continue
            found.append(((_lower_bound(graph, lay[2], x_to_l3), n, -len(run.recs)), run, n, lay, x_to_l3))
    if not found or min(f[0] for f in found)[0] >= classic:
        return None
    lowest = min(f[0] for f in found)[0]
    near = [f for f in found if f[0][0] <= lowest * (1 + NEAR_PEAK)]
    best = min(near, key=lambda f: (f[0][1], f[0][0], f[0][2]))  # fewest tiles, then lowest peak
    (lb, _, _), run, n, (ranges, buffers, sizes, out_sid, out_len, x_key), x_to_l3 = best
    return _apply(graph, run, n, ranges, buffers, sizes, out_len, x_key, x_to_l3, classic, lb)


def _apply(graph, run, n, ranges, buffers, sizes, out_len, x_key, x_to_l3, classic, lb) -> FrozenStream:
    pi = run.phase
    t0, t1 = run.recs[0].t, run.recs[-1].t
    x_sid = graph.state_storage.get("x")
    x_tile = None
    if x_to_l3:
        sx = graph.storages[x_sid]
        nb, a, b = sizes.pop(-1)
        x_tile = len(graph.storages)
        graph.storages.append(Storage(x_tile, "x tile (from L3)", "input", nb, a, b,
                                      (*sx.shape[:-1], buffers[-1].cap), sx.dtype, members=["x"]))
        buf = buffers.pop(-1)
        buf.sid = x_tile
        buffers[x_tile] = buf
        sx.level = "L3"
        for rec in run.recs:
            rec.inputs = [x_tile if s == x_sid else s for s in rec.inputs]
    for sid, (nb, a, b) in sizes.items():
        s = graph.storages[sid]
        s.start, s.end = a, b
        if sid not in buffers:  # a streamed kernel's im2col scratch (_scratch_sizes)
            s.nbytes = nb
        elif buffers[sid].role == "tile":
            s.nbytes = nb
            s.shape = (*s.shape[:-1], buffers[sid].cap)
    halo = 0
    for b in buffers.values():
        if b.carry:
            s = graph.storages[b.sid]
            per_col = s.nbytes // max(1, b.cap) // torch.empty((), dtype=s.dtype).element_size()
            halo += sum(b.carry_cols) * per_col
    frac = {}
    for rec in run.recs:
        if rec.node.name in run.rfs:
            rows = ranges.get((rec.node.name, 0))
            whole = int(rec.node.meta["val"][0].shape[-1] if isinstance(rec.node.meta["val"], (tuple, list))
                        else rec.node.meta["val"].shape[-1])
            frac[rec.t] = sum(hi - c for lo, c, hi in rows) / whole if rows and whole else 1.0
    st = FrozenStream(pi, t0, t1, n, run.out.name, out_len, ranges, buffers, x_key, x_tile,
                      [r.node.name for r in run.recs], classic, lb, halo, 0, frac)
    graph.stream = st
    return st
