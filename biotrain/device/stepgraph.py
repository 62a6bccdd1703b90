"""Storages and lifetimes of a captured step, and the exact reuse rewrites on them.

Every tensor of the step gets a *storage*: persistent state (weights, momentum, accumulated
gradients, norm buffers), the micro-batch input, every op output (activations, activation
gradients, parameter gradients) and, with the toolchain placement, every kernel's scratch.
Views and in-place ops share their input's storage (from the aten schema's alias annotations).
A storage is live from the op that writes it to the last op that reads any alias of it;
persistent state is live over the whole step. ``build_graph`` runs one pass per rewrite
(``_Builder``): trace, lifetimes, input re-fetch, padding elision, in-place reuse, fused
gradient accumulation, activation fused into pooling, then renumbers the storages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .capture import StepProgram
from .kernels import INPLACE_OK, Kernel, classify, op_name, read_inputs, return_alias, tensor_outputs

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
    # depth-first streaming of the frozen prefix (``stream.FrozenStream``), None when not streamed
    stream: object = None

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
    b = _Builder(program, l2_scratch)
    b.trace()
    b.lifetimes()
    if rewrites:
        b.refetch_input()
    if inplace:
        if rewrites:
            b.elide_padding()
        b.inplace_reuse(rewrites)
        if rewrites:
            b.fuse_accumulation()
            b.fuse_activation_into_pool()
    return b.finish()


class _Builder:
    """The passes of ``build_graph`` over one shared state (storages, value map, union-find)."""

    def __init__(self, program: StepProgram, l2_scratch: bool):
        self.program = program
        self.l2_scratch = l2_scratch
        self.storages: list[Storage] = []
        self.value_storage: dict = {}
        self.state_storage: dict = {}
        self.ops: list[OpRecord] = []
        self.last_use: dict[int, int] = {}
        self.use_times: dict[int, list] = {}
        self.refetch: dict = {}
        self.interior: dict = {}  # storage id -> (padded shape, pads): written straight into a padded buffer
        self.merges = 0
        self.parent: list[int] = []
        self.n_times = 1

    def new(self, name, kind, nbytes, start, end, shape=(), dtype=torch.float32, persistent=False) -> int:
        s = Storage(len(self.storages), name, kind, int(nbytes), start, end, tuple(shape), dtype, persistent, [name])
        self.storages.append(s)
        self.parent.append(s.sid)
        return s.sid

    def find(self, s: int) -> int:
        parent = self.parent
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    def _next_kernel(self) -> dict:
        kernel_ts = [r.t for r in self.ops if r.kernel.kind != "free"]
        return {a: b for a, b in zip(kernel_ts, kernel_ts[1:])}

    def trace(self) -> None:
        """Pass 1: a storage per state tensor and op output, aliases and uses."""
        program, storages, value_storage = self.program, self.storages, self.value_storage
        for name, spec in program.states.items():
            nb = (torch.Size(spec.shape).numel()) * torch.empty((), dtype=spec.dtype).element_size()
            persistent = spec.kind in PERSISTENT_KINDS
            self.state_storage[name] = self.new(name, spec.kind, nb, 0, 0, spec.shape, spec.dtype, persistent)
        t = 0
        for pi, phase in enumerate(program.phases):
            placeholders = [n for n in phase.gm.graph.nodes if n.op == "placeholder"]
            for n, state in zip(placeholders, phase.inputs):
                value_storage[(pi, n.name, 0)] = self.state_storage[state]
            backward = False
            for node in phase.gm.graph.nodes:
                if node.op != "call_function":
                    continue
                rec = OpRecord(t, pi, node, op_name(node), classify(node, backward, phase.name), backward)
                self._record_inputs(rec)
                if rec.name == "getitem":
                    src, idx = node.args
                    value_storage[(pi, node.name, 0)] = value_storage.get((pi, src.name, idx))
                else:
                    self._record_outputs(rec, phase.name)
                self.ops.append(rec)
                if phase.loss_node is not None and node.name == phase.loss_node:
                    backward = True
                t += 1
            for g in phase.grad_nodes:
                sid = value_storage.get((pi, g, 0))
                if sid is not None and not storages[sid].persistent:
                    storages[sid].kind = "gradients"
        self.n_times = max(t, 1)

    def _record_inputs(self, rec: OpRecord) -> None:
        node, pi, t = rec.node, rec.phase, rec.t
        for a in read_inputs(node):  # an input taken for its shape alone is not a use
            idxs = [node.args[1]] if rec.name == "getitem" else range(8)  # getitem reads one element
            for key in [k for k in ((pi, a.name, i) for i in idxs) if k in self.value_storage]:
                sid = self.value_storage[key]
                if sid is not None:
                    rec.inputs.append(sid)
                    self.last_use[sid] = t
                    self.use_times.setdefault(sid, []).append(t)

    def _record_outputs(self, rec: OpRecord, phase_name: str) -> None:
        node, pi, t = rec.node, rec.phase, rec.t
        for i, v in tensor_outputs(node):
            ai = return_alias(node, i)
            if ai is not None:
                arg = node.args[ai] if ai < len(node.args) else None
                self.value_storage[(pi, node.name, i)] = (
                    self.value_storage.get((pi, arg.name, 0)) if isinstance(arg, torch.fx.Node) else None
                )
                continue
            nb = v.numel() * v.element_size()
            if nb == 0:
                self.value_storage[(pi, node.name, i)] = None
                continue
            kind = "activation_gradients" if rec.backward else "activations"
            if node.meta.get("recomputed"):
                kind = "recomputed_activations"
            if phase_name == "update":
                kind = "optimizer_temp"
            sid = self.new(f"{node.name}" + (f"[{i}]" if i else ""), kind, nb, t, t, v.shape, v.dtype)
            self.value_storage[(pi, node.name, i)] = sid
            rec.outputs.append(sid)
            rec.out_idx.append(i)
        for label, nb in (rec.kernel.scratch if self.l2_scratch else []):
            rec.scratch.append(self.new(f"{node.name}:{label}", "scratch", nb, t, t))

    def lifetimes(self) -> None:
        n = self.n_times
        for s in self.storages:
            if s.persistent:
                s.start, s.end = 0, n - 1
            else:
                s.end = max(s.end, self.last_use.get(s.sid, s.start))
        for name in [k for k in ("x", "y") if k in self.state_storage]:
            s = self.storages[self.state_storage[name]]
            s.start, s.end = 0, self.last_use.get(s.sid, 0)

    def refetch_input(self) -> None:
        """The micro-batch lives in L3 (external RAM) anyway: when the forward pass is done with it
        and only the first layer's backward reads it again, DMA it into L2 a second time instead of
        holding it across the whole step."""
        program, ops = self.program, self.ops
        xs = self.state_storage.get("x")
        times = sorted(set(self.use_times.get(xs, [])))
        if xs is None or len(times) < 2:
            return
        gap, i = max((times[k + 1] - times[k], k) for k in range(len(times) - 1))
        t_b = times[i + 1]
        later = [rec for rec in ops if rec.t >= t_b and xs in rec.inputs]
        direct = all(any(a.op == "placeholder" and program.phases[rec.phase].inputs[
            [n for n in program.phases[rec.phase].gm.graph.nodes if n.op == "placeholder"].index(a)] == "x"
            for a in rec.node.all_input_nodes if a.op == "placeholder") for rec in later)
        if gap > 1 and later and direct and all(rec.phase == later[0].phase for rec in later):
            sx = self.storages[xs]
            x2 = self.new("x (re-fetched from L3)", "input", sx.nbytes, t_b, times[-1], sx.shape, sx.dtype)
            sx.end = times[i]
            for rec in later:
                rec.inputs = [x2 if sid == xs else sid for sid in rec.inputs]
            self.refetch[t_b] = x2

    def elide_padding(self) -> None:
        """A zero pad whose input dies there makes the producer write into the interior of the
        padded buffer (borders zeroed), so the pad copies nothing."""
        producer = {sid: rec for rec in self.ops for sid, i in zip(rec.outputs, rec.out_idx) if i == 0}
        for rec in self.ops:
            if rec.name != "constant_pad_nd" or not rec.outputs:
                continue
            node = rec.node
            pads = [int(p) for p in node.args[1]]
            value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
            arg = node.args[0]
            if value not in (0, 0.0, None) or any(p < 0 for p in pads) or not isinstance(arg, torch.fx.Node):
                continue
            src = self.value_storage.get((rec.phase, arg.name, 0))
            if src is None or self.find(src) != src:
                continue
            rs, so = self.storages[src], self.storages[rec.outputs[0]]
            if len(rs.members) != 1 or rs.persistent or rs.kind in ("input", "scratch") or rs.end != rec.t:
                continue
            self._merge_into_padded(src, so, pads)
            rec.kernel = Kernel("free")
            self._extend_padded_upwards(src, so, pads, producer)

    def _merge_into_padded(self, sid: int, padded: Storage, pads: list[int]) -> None:
        """Storage ``sid`` becomes the interior of the padded buffer ``padded``."""
        s = self.storages[sid]
        self.parent[sid] = padded.sid
        padded.start = min(padded.start, s.start)
        padded.members = s.members + padded.members
        self.interior[sid] = (tuple(padded.shape), tuple(pads))
        self.merges += 1

    def _extend_padded_upwards(self, cur: int, padded: Storage, pads: list[int], producer: dict) -> None:
        """Walk up from the pad's input: an element-wise/norm producer whose own input dies at it,
        with the same size, also works inside the padded buffer, in place."""
        while True:
            prod = producer.get(cur)
            if prod is None or INPLACE_OK.get(prod.name) is None or prod.name == "constant_pad_nd":
                return
            a = prod.node.args[INPLACE_OK[prod.name]]
            up = self.value_storage.get((prod.phase, a.name, 0)) if isinstance(a, torch.fx.Node) else None
            if up is None or self.find(up) != up:
                return
            us = self.storages[up]
            if (len(us.members) != 1 or us.persistent or us.kind in ("input", "scratch") or us.end != prod.t
                    or us.nbytes != self.storages[cur].nbytes):
                return
            self._merge_into_padded(up, padded, pads)
            cur = up

    def inplace_reuse(self, rewrites: bool) -> None:
        """An op overwrites an input that dies at it (element-wise ops, norms, and with ``rewrites``
        the input gradient of a depthwise convolution over its own input, channel block by block)."""
        for rec in self.ops:
            arg_i = INPLACE_OK.get(rec.name)
            if rewrites and rec.name == "convolution_backward" and rec.kernel.kind in ("dw_ig", "dw_bwd"):
                arg_i = 1
            if arg_i is None or 0 not in rec.out_idx or arg_i >= len(rec.node.args):
                continue
            arg = rec.node.args[arg_i]
            if not isinstance(arg, torch.fx.Node):
                continue
            src = self.value_storage.get((rec.phase, arg.name, 0))
            if src is None:
                continue
            r = self.find(src)
            out = rec.outputs[rec.out_idx.index(0)]
            if self.find(out) != out:
                continue
            rs, so = self.storages[r], self.storages[out]
            if rs.persistent or rs.kind in ("input", "scratch") or rs.end != rec.t or rs.size != so.size:
                continue
            if src in self.interior:
                continue  # the value read sits inside a padded buffer: layouts differ
            self.parent[out] = r
            rs.end = max(rs.end, so.end)
            rs.members += so.members
            if so.kind == "gradients":
                rs.kind = "gradients"
            self.merges += 1

    def fuse_accumulation(self) -> None:
        """A parameter gradient consumed only by ``accum += g`` right where it dies is accumulated
        by its kernel (C += A.B), with no buffer of its own; legal only when the accumulation is the
        very next kernel (producer and consumer fuse, ``Storage.fused_into``)."""
        next_kernel = self._next_kernel()
        for rec in self.ops:
            if rec.name != "add_" or len(rec.node.args) < 2:
                continue
            a0, a1 = rec.node.args[0], rec.node.args[1]
            if not isinstance(a0, torch.fx.Node) or not isinstance(a1, torch.fx.Node):
                continue
            s0 = self.value_storage.get((rec.phase, a0.name, 0))
            s1 = self.value_storage.get((rec.phase, a1.name, 0))
            if s0 is None or s1 is None or self.storages[s0].kind != "accumulated_gradients" or self.find(s1) != s1:
                continue
            g1 = self.storages[s1]
            if (len(g1.members) != 1 or g1.persistent or g1.kind != "gradients" or g1.end != rec.t or s1 in self.interior
                    or next_kernel.get(g1.start) != rec.t):
                continue
            g1.nbytes = 0
            g1.kind = "gradients_fused_into_accumulation"
            g1.fused_into = rec.t
            self.merges += 1

    def fuse_activation_into_pool(self) -> None:
        """relu(y) read once, by the pooling op where it dies and which runs next, is computed on
        the fly by the pooling kernel and never stored."""
        next_kernel = self._next_kernel()
        uses: dict = {}
        for rec in self.ops:
            if rec.kernel.kind != "free":
                for sid in set(rec.inputs):
                    uses.setdefault(sid, []).append(rec)
        for rec in self.ops:
            if rec.name not in FUSABLE_ACTIVATIONS or not rec.outputs:
                continue
            sid = rec.outputs[0]
            st = self.storages[sid]
            if self.find(sid) != sid or len(st.members) != 1 or sid in self.interior or st.persistent:
                continue
            consumers = uses.get(sid, [])
            if (len(consumers) == 1 and consumers[0].name in POOLS and st.end == consumers[0].t
                    and next_kernel.get(st.start) == consumers[0].t):
                st.nbytes = 0
                st.kind = "activations_fused_into_pooling"
                st.fused_into = consumers[0].t
                self.merges += 1

    def finish(self) -> StepGraph:
        """Drop merged storages and renumber the rest: the step's ``StepGraph``."""
        value_interior = {k: self.interior[v] for k, v in self.value_storage.items() if v in self.interior}
        remap = {s.sid: self.find(s.sid) for s in self.storages}
        kept = [s for s in self.storages if remap[s.sid] == s.sid]
        new_id = {s.sid: i for i, s in enumerate(kept)}
        for s in kept:
            s.sid = new_id[s.sid]
        fix = lambda sid: None if sid is None else new_id[remap[sid]]  # noqa: E731
        value_storage = {k: fix(v) for k, v in self.value_storage.items()}
        state_storage = {k: fix(v) for k, v in self.state_storage.items()}
        for rec in self.ops:
            rec.inputs = [fix(s) for s in rec.inputs]
            rec.outputs = [fix(s) for s in rec.outputs]
            rec.scratch = [fix(s) for s in rec.scratch]
        refetch = {t: fix(sid) for t, sid in self.refetch.items()}
        return StepGraph(self.program, self.ops, kept, value_storage, state_storage, self.n_times, self.merges,
                         value_interior, refetch)


