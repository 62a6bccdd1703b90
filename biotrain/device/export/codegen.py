"""Generate ``step.c``: the captured training step as C calls on the planned arena.

The aten graphs of :func:`biotrain.device.capture.capture_step` are walked in order, as
``execute.execute_plan`` walks them, but instead of running ops this module writes one kernel
call per op. Every tensor is a strided view of the arena at the byte offset the memory plan gave
its storage; views (``view``, ``t``, ``expand``...) are resolved here, at generation time, by
applying the op to an arena of element *indices*, so the C code never copies for a view.

The plan's rewrites are honoured, not undone: values written into the interior of a padded
buffer, in-place outputs, parameter gradients accumulated by their kernel (``acc`` flag) instead
of a separate ``add_``, ReLU computed inside the pooling that reads it, and the micro-batch
re-fetched into a second slot before the first layer's backward.
"""

from __future__ import annotations

import operator
import re

import torch

from ...adaptation.precision import check_precision, loss_scale
from ..kernels import return_alias, tensor_outputs
from ..memory import MemoryPlan, StepGraph
from ..ops import NO_CODE, VIEW_OPS, Args, UnsupportedOp, emit_of, spec_of
from ..tiling import STATE_KINDS
from . import l1 as L1
from .l1 import Stage

KINDS = ("conv_fwd", "conv_bwd", "dw_fwd", "dw_bwd", "linear_fwd", "linear_bwd", "norm_fwd", "norm_bwd",
         "elementwise", "data", "dma")  # dma: the DMA stand-in's copies between L2 and L1 (core 0)
# kernels that are element-wise in time: every view with the output's time length takes the same tile
TIME_LOCAL = ("k_fill", "k_copy", "k_binary", "k_binary_scalar", "k_relu", "k_threshold_bwd", "k_batch_norm_eval")


def report_kind(kernel_kind: str) -> str:
    """The cost model's kernel kind folded into the program's counters: pointwise convolutions
    count as convolutions, and input- and weight-gradient halves as the backward pass."""
    fam, _, phase = kernel_kind.rpartition("_")
    fam = {"pw": "conv"}.get(fam, fam)
    phase = "bwd" if phase in ("ig", "wg", "bwd") else phase
    kind = f"{fam}_{phase}"
    return kind if kind in KINDS else "elementwise"


class Val:
    """A tensor of the step: index view into the arena (``idx``), plus how it is produced."""

    def __init__(self, idx, dtype=torch.float32, acc=False, relu_src=None):
        self.idx, self.dtype, self.acc, self.relu_src = idx, dtype, acc, relu_src


class StepCodegen:
    def __init__(self, graph: StepGraph, plan: MemoryPlan, prefix: str = "", l1: dict | None = None,
                 precision: str = "fp32"):
        """``l1``: {"budget", "small", "double_buffer"} (the L1 tiles, ``l1.py``); None: every kernel
        reads and writes the L2 arena in place. ``precision``: bf16/fp16 keep every floating-point
        tensor of the arena in 2 bytes (``store16.h``; the graph narrowed by ``sixteen.narrow``),
        the kernels compute on fp32 L1 copies, so a 16-bit program needs the L1 tiles."""
        self.g, self.plan, self.prefix, self.l1 = graph, plan, prefix, l1
        self.precision = check_precision(precision)
        self.esz = 4 if precision == "fp32" else 2  # bytes of a floating-point arena element
        if self.esz == 2 and l1 is None:
            raise ValueError(f"precision {precision!r}: a 16-bit program computes on fp32 L1 copies of its "
                             "16-bit arena; export it with the L1 tiles on")
        # names of the L2 side of a copy (fp32: the same functions as the L1 side)
        self.win_l2 = "bt_win4" if self.esz == 4 else "bt_win4h"
        self.dma_in, self.dma_out = ("bt_dma", "bt_dma") if self.esz == 4 else ("bt_dma_in", "bt_dma_out")
        self.rec: list | None = None  # views of the call being generated (T() records them)
        self.l1_bytes = 0  # the largest L1 region any call uses
        self.l1_calls: list[dict] = []  # per call: kernel, tiles per stage, L1 bytes, DMA bytes
        self.program = graph.program
        sizes = [plan.offsets[s.sid] + s.size for s in graph.storages if s.nbytes]
        self.arena_bytes = max([plan.peak, 8] + sizes)
        self.idxf = torch.arange(self.arena_bytes // self.esz, dtype=torch.int64)  # floating-point elements
        self.idx64 = torch.arange(self.arena_bytes // 8, dtype=torch.int64)
        self.lines: list[str] = []
        self.ops_emitted: dict[str, int] = {}

    # ------------------------------------------------------------------ layout helpers
    def sview(self, sid: int, shape, dtype) -> torch.Tensor:
        o = self.plan.offsets[sid]
        n = torch.Size(shape).numel()
        if dtype == torch.float32:
            assert o % self.esz == 0
            return self.idxf[o // self.esz:o // self.esz + n].view(tuple(shape))
        if dtype == torch.int64:
            assert o % 8 == 0, f"int64 tensor at unaligned offset {o}"
            return self.idx64[o // 8:o // 8 + n].view(tuple(shape))
        raise UnsupportedOp(f"dtype {dtype} is not supported by the C export (fp32 and int64 only)")

    def state_val(self, name: str) -> Val:
        spec = self.program.states[name]
        return Val(self.sview(self.g.state_storage[name], spec.shape, spec.dtype), spec.dtype)

    def byte_off(self, v: Val) -> int:
        return v.idx.storage_offset() * (self.esz if v.dtype == torch.float32 else 8)

    def T(self, v) -> str:
        """C expression of a ten_t view; while a call is generated, a placeholder ``@i@`` for it."""
        t = v.idx if isinstance(v, Val) else v
        if t.dim() > 4:
            raise UnsupportedOp(f"tensor of {t.dim()} dimensions (the C kernels take at most 4)")
        if self.rec is not None:
            self.rec.append(t)
            return f"@{len(self.rec) - 1}@"
        return self.ten(t)

    def ten(self, t) -> str:
        """TEN(...) of an arena view (offset in bytes, strides in elements)."""
        d = [1] * (4 - t.dim()) + list(t.shape)
        s = [0] * (4 - t.dim()) + list(t.stride())
        off = t.storage_offset() * self.esz
        return f"TEN({off}, {d[0]},{d[1]},{d[2]},{d[3]}, {s[0]},{s[1]},{s[2]},{s[3]})"

    def P(self, v) -> str:
        return "NULL" if v is None else "&" + self.T(v)

    def I64(self, v: Val) -> str:
        assert v.dtype == torch.int64 and v.idx.is_contiguous()
        return f"(int64_t *)(bt_arena + {self.byte_off(v)})"

    # ------------------------------------------------------------------ emission
    def emit(self, kind: str, call: str, comment: str = "") -> None:
        if comment:
            self.lines.append(f"    /* {comment} */")
        self.lines.append(f"    PROF(K_{kind.upper()}, {call});")

    def emit_call(self, kind: str, stages: list, views: list, outputs: set, read: set, rec, comment: str) -> None:
        """One kernel call in stages: on L2 directly, or through its L1 tiles (``l1.py``)."""
        if self.l1 is None:  # one emit per op (rtl/fit.py's recorder counts them), its other passes after it
            for j, st in enumerate(stages):
                W = _width(views[st.driver]) if st.driver is not None else 1
                wins = {i: (0, _width(views[i])) for i in range(len(views))}
                call = _subst(st.call, {i: self.ten(t) for i, t in enumerate(views)},
                              {k: f(0, 1, 0, W, lambda i: wins[i][0]) for k, f in st.toks.items()})
                if j == 0:
                    self.emit(kind, call, comment)
                else:
                    self.lines.append(f"    PROF(K_{kind.upper()}, {call});")
            return
        self.lines.append(f"    /* {comment} */")
        emit_l1_call(self, kind, stages, views, outputs, read, rec)

    def generate(self) -> str:
        out = []
        for pi, phase in enumerate(self.program.phases):
            self.lines = []
            self._phase(pi, phase)
            ret = "float" if phase.loss_node else "void"
            out.append(f"/* phase {phase.name!r}: {len([ln for ln in self.lines if 'PROF(' in ln])} kernel calls */")
            out.append(f"static {ret} phase_{self.prefix}{phase.name}(run_t *r)\n{{")
            if phase.loss_node:
                out.append("    float loss = 0.0f;")
            out.append("    (void)r;")
            out += self.lines
            if phase.loss_node:
                out.append("    return loss;")
            out.append("}\n")
        return "\n".join(out)

    def _fused_accumulations(self, pi, phase, env) -> tuple[dict, set]:
        """Parameter gradients the plan accumulates inside their kernel: producer output -> the
        accumulator's layout seen through the views between them; and the ``add_`` nodes to skip."""
        fused, skip = {}, set()
        for node in phase.gm.graph.nodes:
            if node.op != "call_function" or node.target is not torch.ops.aten.add_.Tensor:
                continue
            a0, a1 = node.args[0], node.args[1]
            if not isinstance(a1, torch.fx.Node) or a0 not in env:
                continue
            sid = self.g.value_storage.get((pi, a1.name, 0))
            if sid is None or self.g.storages[sid].nbytes != 0:
                continue
            if self.g.storages[sid].kind != "gradients_fused_into_accumulation":
                continue
            inv, cur = env[a0].idx, a1
            while True:
                name = cur.target.__name__.split(".")[0] if cur.target is not operator.getitem else "getitem"
                if name in ("t", "transpose"):
                    inv = inv.t()
                elif name in ("view", "_unsafe_view", "reshape"):
                    inv = inv.view(tuple(cur.args[0].meta["val"].shape))
                elif name in ("detach", "alias"):
                    pass
                elif name == "getitem":
                    fused[(cur.args[0].name, cur.args[1])] = inv
                    break
                else:
                    fused[(cur.name, 0)] = inv
                    break
                cur = cur.args[0]
            skip.add(node.name)
        return fused, skip

    def _phase(self, pi, phase) -> None:
        g = self.g
        recs = {rec.node.name: rec for rec in g.ops if rec.phase == pi}
        phs = [n for n in phase.gm.graph.nodes if n.op == "placeholder"]
        env: dict = {n: self.state_val(st) for n, st in zip(phs, phase.inputs)}
        if "x" in phase.inputs:
            self.lines.append("    /* the micro-batch, from the sample store (L3) into its arena slots */")
            self.emit("data", f"load_x(r, {self.T(self.state_val('x'))})")
            self.emit("data", f"load_y(r, {self.I64(self.state_val('y'))}, {self.program.micro_batch})")
        fused, skip = self._fused_accumulations(pi, phase, env)
        self.fused, self.skip = fused, skip
        self.hp = self.program.hparams
        self.lr_updates = _weight_updates(phs, phase.inputs)
        self.seed = loss_scale(self.precision)  # the backward's seed: fp16 scales every gradient by it
        self.alpha_scale = _unscaled_updates(phase, self.lr_updates, self.seed)
        self.in_loss_phase = phase.loss_node is not None
        for node in phase.gm.graph.nodes:
            if node.op == "get_attr":
                raise UnsupportedOp(f"graph constant {node.target!r} (the C export takes no tensor constants)")
            if node.op != "call_function":
                continue
            rec = recs[node.name]
            if rec.t in g.refetch:
                x_ph = phs[phase.inputs.index("x")]
                spec = self.program.states["x"]
                xv = Val(self.sview(g.refetch[rec.t], spec.shape, spec.dtype))
                self.emit("data", f"load_x(r, {self.T(xv)})", "the micro-batch again, from L3 into its second slot")
                env[x_ph] = xv
            if rec.name == "getitem":
                src = env[node.args[0]]
                env[node] = src[node.args[1]] if isinstance(src, (tuple, list)) else None
            else:
                env[node] = self._op(pi, node, rec, env)
            if phase.loss_node and node.name == phase.loss_node:
                v = env[node]
                load = "*(const float *)" if self.esz == 4 else "BT_L2_LOAD_AT"
                self.lines.append(f"    loss = {load}(bt_arena + {self.byte_off(v)});")

    # ------------------------------------------------------------------ one op
    def _outputs(self, pi, node, rec, env):
        vals = node.meta.get("val")
        multi = isinstance(vals, (tuple, list))
        n_out = len(vals) if multi else 1
        outs: list = [None] * n_out
        for i, v in tensor_outputs(node):
            ai = return_alias(node, i)
            if ai is not None:
                outs[i] = env[node.args[ai]]
                continue
            if (node.name, i) in self.fused:
                outs[i] = Val(self.fused[(node.name, i)], v.dtype, acc=True)
                continue
            sid = self.g.value_storage.get((pi, node.name, i))
            if sid is None:
                continue
            st = self.g.storages[sid]
            if st.nbytes == 0:
                if st.kind == "activations_fused_into_pooling":
                    outs[i] = Val(None, v.dtype, relu_src=env[node.args[0]])
                    continue
                raise UnsupportedOp(f"{node.name}: output {i} has no storage ({st.kind})")
            padded = self.g.value_interior.get((pi, node.name, i))
            if padded is None:
                outs[i] = Val(self.sview(sid, v.shape, v.dtype), v.dtype)
            else:
                shape, pads = padded
                full = self.sview(sid, shape, v.dtype)
                dst = full
                for d in range(len(pads) // 2):
                    dim = full.dim() - 1 - d
                    dst = dst.narrow(dim, pads[2 * d], v.shape[dim])
                outs[i] = Val(dst, v.dtype)
                outs[i].full, outs[i].pads = full, pads
        return outs if multi else outs[0]

    def _op(self, pi, node, rec, env):
        name = rec.name
        args = node.args
        A = lambda i: env[args[i]] if isinstance(args[i], torch.fx.Node) else args[i]  # noqa: E731
        if name in VIEW_OPS:
            vargs = [env[a].idx if isinstance(a, torch.fx.Node) else a for a in args]
            src = env[args[0]]
            if src is None or src.relu_src is not None:
                raise UnsupportedOp(f"{node.name}: a view of a value with no arena slot")
            return Val(node.target(*vargs, **node.kwargs), src.dtype)
        if spec_of(name).emit == NO_CODE:
            return None
        if node.name in self.skip:
            return env[args[0]]  # accumulated by the gradient's own kernel
        if name == "relu" and (pi, node.name, 0) in self.g.value_storage:
            sid = self.g.value_storage[(pi, node.name, 0)]
            if sid is not None and self.g.storages[sid].kind == "activations_fused_into_pooling":
                return Val(None, relu_src=env[args[0]])
        if name == "constant_pad_nd" and rec.kernel.kind == "free":
            return self._outputs(pi, node, rec, env)  # producers already wrote the interior
        out = self._outputs(pi, node, rec, env)
        kind = report_kind(rec.kernel.kind)
        self.rec, self.mutated = [], set()
        try:
            call = self._call(name, node, A, out, kind)
            views = self.rec
        finally:
            self.rec = None
        stages = call if isinstance(call, list) else [self._auto_stage(call, views)]
        outs = [o for o in (out if isinstance(out, (list, tuple)) else [out]) if isinstance(o, Val) and o.idx is not None]
        written = {i for i, t in enumerate(views) if any(t is o.idx for o in outs)}
        read = {i for i, t in enumerate(views) if any(t is o.idx and o.acc for o in outs)} | self.mutated
        written |= self.mutated
        self.ops_emitted[name] = self.ops_emitted.get(name, 0) + 1
        self.emit_call(kind, stages, views, written, read, rec, f"{node.name}: {name}")
        for o in outs:
            if hasattr(o, "full"):
                pads = list(o.pads) + [0] * (4 - len(o.pads))
                H, W = o.full.shape[-2], o.full.shape[-1]
                full = o.full
                st = Stage(f"k_zero_border(@0@, {pads[2]}, {H - pads[3]}, $w0$, $w1$)", 0, {0: ("same",)},
                           {"w0": lambda t, nt, w0, w1, lo, a=pads[0]: a - w0,
                            "w1": lambda t, nt, w0, w1, lo, b=W - pads[1]: b - w0})
                self.emit_call("elementwise", [st], [full], {0}, {0}, rec, "zero border of the padded buffer")
        return out

    def _auto_stage(self, call: str, views: list) -> Stage:
        """A call with no tiling rule of its own: time-local kernels tile every view of the
        output's time length alike; any other kernel is one tile."""
        fname = call.split("(", 1)[0]
        if fname not in TIME_LOCAL or not views:
            return Stage(call, None)
        if views[0].dim() == 0:
            return Stage(call, None)
        W = _width(views[0])
        maps = {i: ("same",) if (t.dim() and _width(t) == W and t.stride(-1) != 0) else ("whole",)
                for i, t in enumerate(views) if i}
        return Stage(call, 0, maps)

    def _call(self, name, node, A, out, kind) -> str | list:
        """The kernel call (or its L1 stages) of one op: its op-table entry's emitter, the
        arguments by schema name (``A(i)``: positional argument i as a value of the step)."""
        return emit_of(name, node)(self, node, Args(node, A), out)


def _width(t) -> int:
    """Length of a view's last (time) dimension; 1 for a scalar."""
    return int(t.shape[-1]) if t.dim() else 1


def _subst(call: str, views: dict, toks: dict) -> str:
    """``call`` with its view placeholders and tile tokens replaced."""
    for k, v in toks.items():
        call = call.replace(f"${k}$", str(v))
    for i in sorted(views, reverse=True):
        call = call.replace(f"@{i}@", views[i])
    return call


def _weight_updates(placeholders, inputs) -> set[str]:
    """The SGD updates of a phase: the in-place ``add_`` into a trained weight (``p.add_(m, alpha=-lr)``
    in ``capture``), found by where it writes rather than by its traced value, so the program
    takes the learning rate from each step's schedule entry whatever rate was traced."""
    weights = {ph for ph, state in zip(placeholders, inputs) if state.startswith("param:")}
    return {user.name for ph in weights for user in ph.users
            if user.target is torch.ops.aten.add_.Tensor and user.args[0] is ph}


def _unscaled_updates(phase, lr_updates: set[str], scale: float) -> dict[str, float]:
    """fp16's loss scale taken out of the SGD update without storing an unscaled gradient (which
    could underflow): the weight decay is added into the scaled gradient buffer times ``scale``
    (``g.add_(p, alpha=wd * S)``), and the momentum takes the buffer over ``scale``
    (``m.mul_(mom).add_(g, alpha=1 / S)``), in fp32 between a 16-bit load and store; S is a power
    of two, so both are exact. Node name -> the factor on its alpha ({} when ``scale`` is 1)."""
    if scale == 1.0:
        return {}
    add_ = torch.ops.aten.add_.Tensor
    out = {}
    for node in phase.gm.graph.nodes:
        if node.name not in lr_updates:
            continue
        mom = node.args[1]  # p.add_(m, alpha=-lr): m = m.mul_(momentum).add_(g)
        wd = mom.args[1] if getattr(mom, "target", None) is add_ else None  # g = g.add_(p, alpha=wd)
        if getattr(wd, "target", None) is not add_:
            raise UnsupportedOp(f"{node.name}: the SGD update is not weight decay, momentum, update in place; "
                                "the fp16 loss scale cannot be folded into it")
        out[mom.name], out[wd.name] = 1.0 / scale, scale
    return out


def _l1t(off: str, d, s) -> str:
    return f"L1T({off}, {d[0]},{d[1]},{d[2]},{d[3]}, {s[0]},{s[1]},{s[2]},{s[3]})"


def _state_range(cg: StepCodegen, rec):
    """f(lo, hi) -> whether arena elements [lo, hi) lie in persistent state the op touches."""
    spans = []
    for sid in set(rec.inputs) | set(rec.outputs):
        if sid is None:
            continue
        st = cg.g.storages[sid]
        if st.nbytes and (st.kind in STATE_KINDS or st.persistent):
            o = cg.plan.offsets[sid] // cg.esz
            spans.append((o, o + st.size // cg.esz))
    return lambda lo, hi: any(a <= lo and hi <= b for a, b in spans)


def emit_l1_call(cg: StepCodegen, kind: str, stages: list, views: list, outputs: set, read: set, rec) -> None:
    """The call through L1: resident buffers in, every stage's tile loop (double-buffered
    streamed windows, fetched and written back by core 0), resident buffers out."""
    cfg = cg.l1
    bufs, where = L1.plan_buffers(views, outputs, read, stages, int(cfg["small"]), _state_range(cg, rec))
    off = 0
    for b in bufs:
        if b.resident:
            t = views[b.vids[0]]
            n = (b.hi - b.lo) if b.block else L1.compact(t.shape, t.stride())[2]
            b.off, b.cap = off, L1._al(4 * n)
            off += b.cap
    resident = off
    k = kind.upper()
    L = cg.lines

    def res_view(i):
        b = bufs[where[i]]
        t = views[i]
        if b.block:
            d = [1] * (4 - t.dim()) + list(t.shape)
            s = [0] * (4 - t.dim()) + list(t.stride())
            return _l1t(str(b.off + 4 * (t.storage_offset() - b.lo)), d, s)
        d, s, _ = L1.compact(t.shape, t.stride())
        return _l1t(str(b.off), d, s)

    def res_copies(out: bool) -> list:
        lines = []
        for b in bufs:
            if not b.resident or not (b.copy_out if out else b.copy_in):
                continue
            if b.block:
                n = b.hi - b.lo
                l2, l1v = f"TEN({cg.esz * b.lo}, 1,1,1,{n}, 0,0,0,1)", _l1t(str(b.off), (1, 1, 1, n), (0, 0, 0, 1))
            else:
                l2, l1v = cg.ten(views[b.vids[0]]), res_view(b.vids[0])
            lines.append(f"{cg.dma_out}({l2}, {l1v});" if out else f"{cg.dma_in}({l1v}, {l2});")
        return lines

    ins = res_copies(False)
    if ins:
        L.append(f"    PROF(K_DMA, BT_SERIAL {{ {' '.join(ins)} }});")
    peak, moved, tiles = resident, 0, []
    for st in stages:
        nt, tw, spt, caps, total = L1.tile_stage(st, views, bufs, where, resident, int(cfg["budget"]),
                                                 bool(cfg["double_buffer"]))
        peak = max(peak, total)
        tiles.append(nt)
        moved += _emit_stage(cg, k, st, views, bufs, where, (nt, tw, spt), caps, resident, res_view)
    outs = res_copies(True)
    if outs:
        L.append(f"    PROF(K_DMA, BT_SERIAL {{ {' '.join(outs)} }});")
    moved += (sum(b.cap for b in bufs if b.resident and b.copy_in)
              + sum(b.cap for b in bufs if b.resident and b.copy_out)) * cg.esz // 4  # L1 holds fp32
    cg.l1_bytes = max(cg.l1_bytes, peak)
    cg.l1_calls.append({"kernel": kind, "tiles": tiles, "l1_bytes": int(peak), "dma_bytes": int(moved)})


def _emit_stage(cg, k, st, views, bufs, where, tiling, caps, resident, res_view) -> int:
    """One stage's loop over its tiles (``tiling``: count, width, samples per tile); returns the
    bytes its streamed windows move. Every view's window per tile is a row of a table:
    (first sample, end sample, first column, end column), then the tile's tokens."""
    nt, tw, spt = tiling
    L = cg.lines
    if st.driver is None:
        vexpr = {i: res_view(i) if bufs[where[i]].resident else None for i in range(len(views))}
        if any(v is None for v in vexpr.values()):  # one tile: a streamed buffer is whole in its slot
            raise UnsupportedOp("internal: an untiled stage with a streamed buffer")
        call = _subst(st.call, vexpr, {kk: f(0, 1, 0, 1, lambda i: 0) for kk, f in st.toks.items()})
        L.append(f"    PROF(K_{k}, {call});")
        return 0
    used = sorted({int(x) for x in re.findall(r"@(\d+)@", st.call)} | {st.driver})
    tiles = L1.tile_windows(st, views, nt, tw, spt)
    cols = {}
    for i in used:  # every used view's window per tile
        cols[i] = len(cols) * 4
    tok_col = {kk: 4 * len(cols) + j for j, kk in enumerate(st.toks)}
    table = []
    for t, (w0, w1, wins) in enumerate(tiles):
        lo = lambda i, wins=wins: wins.get(i, (0, 0, 0, 0))[2]  # noqa: E731
        r = []
        for i in used:
            n0 = int(views[i].shape[0]) if views[i].dim() == 4 else 1
            r += list(wins.get(i, (0, n0, 0, _width(views[i]))))
        r += [int(f(t, nt, w0, w1, lo)) for f in st.toks.values()]
        table.append(r)
    # a streamed buffer this stage has no window for is an argument the pass does not touch (a
    # norm's output during its statistics passes): it gets its L2 view and no slot
    idle = {i for i in used if not bufs[where[i]].resident and i != st.driver and i not in st.maps}
    streamed = sorted({where[i] for i in used if not bufs[where[i]].resident and i not in idle})
    slot_off, o = {}, resident
    for b in streamed:
        slot_off[b] = o
        o += caps[b] * (2 if nt > 1 else 1)

    def win(v, i, w, fn="bt_win4"):
        c = cols[i]
        return f"{fn}({v}, {w}[{c}], {w}[{c + 1}], {w}[{c + 2}], {w}[{c + 3}])"

    def view_of(i, w):
        b = where[i]
        if i in idle:  # a 16-bit program passes a placeholder in L1: the pass does not touch it
            return cg.ten(views[i]) if cg.esz == 4 else _l1t("0", *L1.compact(views[i].shape, views[i].stride())[:2])
        if bufs[b].resident:
            v = res_view(i)
            mp = st.maps.get(i)
            return v if (i != st.driver and (mp is None or mp[0] == "whole")) else win(v, i, w)
        t = views[i]
        c = cols[i]
        widest = max(r[c + 3] - r[c + 2] for r in table)
        most = max(r[c + 1] - r[c] for r in table)
        d, s, n = L1.compact(t.shape, t.stride(), widest, most if t.dim() == 4 else None)
        assert L1._al(4 * n) <= caps[b], "a slot smaller than its widest window"
        d[0] = f"{w}[{c + 1}] - {w}[{c}]"
        d[3] = f"{w}[{c + 3}] - {w}[{c + 2}]"
        return _l1t(f"BT_SLOT({slot_off[b]}, {caps[b]}, {w}_s)", d, s)

    def copies(w, out: bool) -> str:
        lines = []
        for b in streamed:
            buf = bufs[b]
            if not (buf.copy_out if out else buf.copy_in):
                continue
            i = next(j for j in buf.vids if j in used and j not in idle)
            l2 = win(cg.ten(views[i]), i, w, cg.win_l2)
            l1v = view_of(i, w)
            lines.append(f"{cg.dma_out}({l2}, {l1v});" if out else f"{cg.dma_in}({l1v}, {l2});")
        return " ".join(lines)

    if nt == 1:  # one tile: straight-line code, the windows as constants
        w0 = {i: v for i, v in enumerate(table[0])}
        sub = lambda text: re.sub(r"\b(wn|w)\[(\d+)\]", lambda m: str(w0[int(m.group(2))]),  # noqa: E731
                                                 text).replace("wn_s", "0").replace("w_s", "0")
        fetch = copies("w", False)
        if fetch:
            L.append(f"    PROF(K_DMA, BT_SERIAL {{ {sub(fetch)} }});")
        decl = " ".join(f"ten_t bt_v{i} = {view_of(i, 'w')};" for i in used if f"@{i}@" in st.call)
        call = _subst(st.call, {i: f"bt_v{i}" for i in used}, {kk: f"w[{c}]" for kk, c in tok_col.items()})
        L.append(f"    PROF(K_{k}, {sub(decl)} {sub(call)});")  # the views are built inside the count
        back = copies("w", True)
        if back:
            L.append(f"    PROF(K_DMA, BT_SERIAL {{ {sub(back)} }});")
        return _moved(tiles, streamed, bufs, used, idle, st, views, cg.esz)
    name = f"bt_w{len(cg.l1_calls)}_{len(L)}"
    L.append("    {")
    L.append(f"        static const int32_t {name}[{nt}][{len(table[0])}] = {{"
             + ", ".join("{" + ", ".join(map(str, r)) + "}" for r in table) + "};")
    fetch0 = copies("wn", False)
    if fetch0:
        L.append(f"        {{ const int32_t *wn = {name}[0]; const int wn_s = 0; PROF(K_DMA, BT_SERIAL {{ {fetch0} }}); }}")
    L.append(f"        for (int t = 0; t < {nt}; t++) {{")
    L.append(f"            const int32_t *w = {name}[t];")
    L.append("            const int w_s = t & 1;")
    L.append("            (void)w, (void)w_s;")
    if fetch0:
        L.append(f"            if (t + 1 < {nt}) {{ const int32_t *wn = {name}[t + 1]; const int wn_s = (t + 1) & 1; "
                 f"PROF(K_DMA, BT_SERIAL {{ {fetch0} }}); }}")
    decl = " ".join(f"ten_t bt_v{i} = {view_of(i, 'w')};" for i in used if f"@{i}@" in st.call)
    call = _subst(st.call, {i: f"bt_v{i}" for i in used}, {kk: f"w[{c}]" for kk, c in tok_col.items()})
    L.append(f"            PROF(K_{k}, {decl} {call});")
    back = copies("w", True)
    if back:
        L.append(f"            PROF(K_DMA, BT_SERIAL {{ {back} }});")
    L.append("        }")
    L.append("    }")
    return _moved(tiles, streamed, bufs, used, idle, st, views, cg.esz)


def _moved(tiles, streamed, bufs, used, idle, st, views, esz: int = 4) -> int:
    """Bytes the stage's streamed windows move (in and out; ``esz``: bytes of an arena element)."""
    moved = 0
    for (w0, w1, wins) in tiles:
        for b in streamed:
            buf = bufs[b]
            i = next(j for j in buf.vids if j in used and j not in idle)
            n0, n1, lo, hi = wins[i]
            t = views[i]
            per = L1.compact(t.shape, t.stride(), 1, 1 if t.dim() == 4 else None)[2]
            moved += esz * per * (n1 - n0) * (hi - lo) * (int(buf.copy_in) + int(buf.copy_out))
    return moved
