"""Proof that a memory plan is right: run the planned step on one flat buffer.

Every tensor of the step lives in a single byte arena at its planned offset: persistent
state is copied in once, every op runs on *views* of the arena and its fresh outputs are
copied into their planned slots (views and in-place ops write straight into the arena), and
each kernel's scratch region is filled with NaN while the kernel runs (the device writes its
im2col there). A plan that lets two live tensors share bytes therefore corrupts the result.
The updated weights, momentum and norm buffers are then compared with eager PyTorch running
``torch.optim.SGD`` on the same model, batch and initial state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .capture import StepProgram, strategy_setup
from .kernels import return_alias, shape_only_args
from .memory import MemoryPlan, StepGraph, validate_plan


@dataclass
class CheckResult:
    ok: bool
    max_rel_error: float
    worst_tensor: str
    tol: float
    errors: dict

    def to_dict(self) -> dict:
        return {"ok": self.ok, "max_rel_error": self.max_rel_error, "worst": self.worst_tensor,
                "tol": self.tol, "rel_error_by_kind": self.errors.get("by_kind", {})}


def persistent_state(model: nn.Module, program: StepProgram, g: torch.Generator) -> dict:
    """The step's persistent state: the model's weights and buffers, a non-zero momentum drawn
    from ``g`` (so the optimizer state is exercised) and zeroed gradient accumulators."""
    params, bufs = dict(model.named_parameters()), dict(model.named_buffers())
    state = {}
    for name, spec in program.states.items():
        kind, _, key = name.partition(":")
        if kind == "param":
            state[name] = params[key].detach().clone()
        elif kind == "buffer":
            state[name] = bufs[key].detach().clone()
        elif kind == "momentum":
            state[name] = 1e-2 * torch.randn(spec.shape, generator=g)
        elif kind == "accum":
            state[name] = torch.zeros(spec.shape)
    return state


def model_at_state(model: nn.Module, strategy: str, state: dict, layers: tuple[str, ...] | None = None
                   ) -> tuple[nn.Module, set]:
    """A copy of ``model`` holding ``state``'s weights and buffers, set up for ``strategy`` (``layers``:
    what ``sparse`` trains); returns it with the names of its trainable parameters."""
    m = copy.deepcopy(model)
    trainable, training = strategy_setup(m, strategy, layers)
    m.train(training)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(state[f"param:{n}"])
            p.requires_grad_(n in trainable)
        for n, b in m.named_buffers():
            b.copy_(state[f"buffer:{n}"])
    return m, trainable


def initial_state(model: nn.Module, program: StepProgram, seed: int = 0) -> tuple[dict, list]:
    """Initial persistent state (from the model, plus a non-zero momentum) and the batch."""
    g = torch.Generator().manual_seed(seed)
    state = persistent_state(model, program, g)
    n_out = int(getattr(model, "n_outputs", 2))
    x_shape = program.states["x"].shape
    batches = [(torch.randn(x_shape, generator=g), torch.randint(0, n_out, x_shape[:1], generator=g))
               for _ in range(program.accum)]
    return state, batches


def eager_step(model: nn.Module, program: StepProgram, state: dict, batches: list) -> dict:
    """The same step in plain eager PyTorch with ``torch.optim.SGD``."""
    m, trainable = model_at_state(model, program.strategy, state, program.layers)
    tp = [p for n, p in m.named_parameters() if n in trainable]
    hp = program.hparams
    opt = torch.optim.SGD(tp, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    names = [n for n, _ in m.named_parameters() if n in trainable]
    for n, p in zip(names, tp):
        opt.state[p]["momentum_buffer"] = state[f"momentum:{n}"].clone()
    opt.zero_grad()
    for x, y in batches:
        loss = F.cross_entropy(m(x), y)
        if program.accum > 1:
            loss = loss * (1.0 / program.accum)
        loss.backward()
    opt.step()
    out = {f"param:{n}": p.detach().clone() for n, p in m.named_parameters()}
    out.update({f"buffer:{n}": b.detach().clone() for n, b in m.named_buffers()})
    out.update({f"momentum:{n}": opt.state[p]["momentum_buffer"].clone() for n, p in zip(names, tp)})
    return out


def execute_plan(graph: StepGraph, plan: MemoryPlan, state: dict, batches: list, validate: bool = True) -> dict:
    """Run the step with every tensor at its planned offset in one arena; return the final state."""
    if validate:
        bad = validate_plan(graph, plan)
        if bad:
            a, b = graph.storages[bad[0][0]], graph.storages[bad[0][1]]
            raise ValueError(f"invalid plan: {len(bad)} overlapping live pairs, e.g. {a.name} and {b.name}")
    program = graph.program
    l2 = [s for s in graph.storages if s.nbytes and s.level == "L2"]
    l3 = [s for s in graph.storages if s.nbytes and s.level == "L3"]
    arena = torch.zeros(max([plan.peak] + [plan.offsets[s.sid] + s.size for s in l2]), dtype=torch.uint8)
    # external RAM: frozen-prefix activations streamed through L3 get their own arena
    l3_arena = torch.zeros(max([0] + [plan.offsets[s.sid] + s.size for s in l3]), dtype=torch.uint8)

    def view(sid: int, shape, dtype) -> torch.Tensor:
        o = plan.offsets[sid]
        nb = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        mem = l3_arena if graph.storages[sid].level == "L3" else arena
        return mem[o:o + nb].view(dtype).view(tuple(shape))

    def state_view(name: str) -> torch.Tensor:
        spec = program.states[name]
        return view(graph.state_storage[name], spec.shape, spec.dtype)

    for name, value in state.items():
        state_view(name).copy_(value)

    ops_by_phase: dict[int, list] = {}
    for rec in graph.ops:
        ops_by_phase.setdefault(rec.phase, []).append(rec)

    for pi, phase in enumerate(program.phases):
        recs = {rec.node.name: rec for rec in ops_by_phase.get(pi, [])}
        for rep in range(phase.repeat):
            if "x" in phase.inputs:
                x, y = batches[rep]
                state_view("x").copy_(x)
                state_view("y").copy_(y)
            env: dict = {}
            placeholders = [n for n in phase.gm.graph.nodes if n.op == "placeholder"]
            for n, st in zip(placeholders, phase.inputs):
                env[n] = state_view(st)
            fused = FusedValues(graph)
            stream = graph.stream if graph.stream is not None and graph.stream.phase == pi else None
            streamed = set(stream.nodes) if stream is not None else set()
            for node in phase.gm.graph.nodes:
                if node.op == "get_attr":
                    env[node] = getattr(phase.gm, node.target)
                    continue
                if node.op != "call_function":
                    continue
                rec = recs[node.name]
                if node.name in streamed:  # the frozen prefix, depth-first tile by tile
                    if node.name == stream.nodes[0]:
                        env[_node(phase, stream.out_node)] = run_stream(graph, plan, stream, phase, recs, env, view, arena)
                    continue
                fused.before(rec)
                if rec.t in graph.refetch:  # the micro-batch comes again from L3 into its second slot
                    x_ph = placeholders[phase.inputs.index("x")]
                    xv = view(graph.refetch[rec.t], program.states["x"].shape, program.states["x"].dtype)
                    xv.copy_(batches[rep][0])
                    env[x_ph] = xv
                args = torch.fx.node.map_arg(node.args, lambda a: env[a])
                kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: env[a])
                if _pure(node):  # strided arena views (padded interiors): read them as they are now
                    args, kwargs = _dense(args), _dense(kwargs)
                unread = shape_only_args(node)
                if unread:  # taken for its shape alone: the plan keeps no bytes for it, so give it NaN
                    args = tuple(torch.full_like(a, float("nan")) if i in unread else a for i, a in enumerate(args))
                for sid in rec.scratch:  # the kernel's scratch: garbage while it runs
                    s = graph.storages[sid]
                    arena[plan.offsets[sid]:plan.offsets[sid] + s.nbytes].fill_(0xFF)
                out = node.target(*args, **kwargs)
                fused.after(rec)
                if rec.name == "getitem":
                    env[node] = out
                    continue
                single = isinstance(out, torch.Tensor)
                items = [out] if single else list(out) if isinstance(out, (tuple, list)) else None
                if items is not None:
                    for i, v in enumerate(items):
                        if not isinstance(v, torch.Tensor) or return_alias(node, i) is not None:
                            continue
                        sid = graph.value_storage.get((pi, node.name, i))
                        if sid is None:
                            continue
                        if graph.storages[sid].nbytes == 0:  # no arena slot: only a fused consumer may read it
                            fused.produced(sid, v, rec)
                            continue
                        padded = graph.value_interior.get((pi, node.name, i))
                        if padded is None:
                            dst = view(sid, v.shape, v.dtype)
                        else:  # written into the interior of a zero-bordered padded buffer
                            shape, pads = padded
                            full = view(sid, shape, v.dtype)
                            full.zero_()
                            dst = full
                            for d in range(len(pads) // 2):
                                dim = full.dim() - 1 - d
                                dst = dst.narrow(dim, pads[2 * d], v.shape[dim])
                        dst.copy_(v)
                        items[i] = dst
                    out = items[0] if single else tuple(items)
                env[node] = out
    return {name: state_view(name).clone() for name in state}


def _node(phase, name: str):
    return next(n for n in phase.gm.graph.nodes if n.name == name)


def run_stream(graph: StepGraph, plan: MemoryPlan, st, phase, recs: dict, env: dict, view, arena) -> torch.Tensor:
    """Run the streamed frozen prefix (``stream.FrozenStream``) tile by tile on the arena.

    Each tile: every halo-carrying buffer moves the columns it keeps (``carry_cols``) from where
    the previous tile left them to its front and is garbage-filled beyond them; every other tile
    buffer is garbage-filled when its producer runs; the micro-batch's new columns come from its
    (L3) slot into the x tile; each op reads the receptive field of the columns it computes from
    its input's buffer and writes only those columns. The assembled output is returned whole."""
    from .stream import _canon

    pi = st.phase
    x_sid = graph.state_storage.get("x")
    nodes = [_node(phase, n) for n in st.nodes]
    sid_of = {}
    for k in st.ranges:
        sid_of[k] = (st.x_tile if st.x_tile is not None else x_sid) if k == st.x_key else graph.value_storage[(pi, *k)]

    def buf(sid):
        s = graph.storages[sid]
        return view(sid, s.shape, s.dtype)

    def window(sid, i, lo, hi):
        b = st.buffers[sid]
        a, z = lo - b.base[i], hi - b.base[i]
        if a < 0 or z > b.cap or z < a:
            raise ValueError(f"invalid stream: columns [{lo}, {hi}) of {graph.storages[sid].name!r} are not in its "
                             f"tile buffer in tile {i} (it holds [{b.base[i]}, {b.base[i] + b.cap}))")
        return buf(sid)[..., a:z]

    def garbage(sid):
        s = graph.storages[sid]
        o = plan_offset[sid]
        arena[o:o + s.nbytes].fill_(0xFF)

    plan_offset = plan.offsets
    tiles = [b for b in st.buffers.values() if b.role == "tile" and graph.storages[b.sid].nbytes]
    starts: dict = {}
    for b in tiles:
        if not b.carry:
            starts.setdefault(b.start_in_tile, []).append(b.sid)
    x_src = view(x_sid, graph.storages[x_sid].shape, graph.storages[x_sid].dtype) if st.x_tile is not None else None
    for i in range(st.n_tiles):
        for b in tiles:
            if not b.carry:
                continue
            keep = b.carry_cols[i] if i else 0
            if keep:
                shift = b.base[i] - b.base[i - 1]
                data = buf(b.sid)
                kept = data[..., shift:shift + keep].clone()
                garbage(b.sid)
                data[..., :keep].copy_(kept)
            else:
                garbage(b.sid)
        if st.x_tile is not None:
            if st.x_tile in starts.get(st.buffers[st.x_tile].start_in_tile, []):
                garbage(st.x_tile)
            lo, c, hi = st.ranges[st.x_key][i]
            window(st.x_tile, i, c, hi).copy_(x_src[..., c:hi])
        fused = FusedValues(graph)
        local: dict = {}
        for node in nodes:
            rec = recs[node.name]
            if rec.name == "getitem":
                continue
            if not node.all_input_nodes:  # bookkeeping (empty statistics)
                node.target(*node.args, **node.kwargs)
                continue
            for sid in starts.get(rec.t, []):
                if sid != st.x_tile:
                    garbage(sid)
            fused.before(rec)
            lo, c, hi = st.ranges[(node.name, 0)][i]
            a0 = node.args[0]
            key = _canon(a0) if a0.name != (st.x_key or ("",))[0] else st.x_key
            rlo, rhi = _input_range(node, rec.name, c, hi)
            in_sid = sid_of[key]
            if graph.storages[in_sid].nbytes == 0:  # a fused value: exactly the columns its producer computed
                v, (plo, pc, phi) = local[key], st.ranges[key][i]
                if (rlo, rhi) != (pc, phi):
                    raise ValueError(f"invalid stream: fused value {graph.storages[in_sid].name!r} read over "
                                     f"[{rlo}, {rhi}) but computed over [{pc}, {phi})")
                xin = v
            else:
                xin = window(in_sid, i, rlo, rhi)
            args = (_dense(xin), *torch.fx.node.map_arg(node.args[1:], lambda a: env[a]))
            kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: env[a])
            out = node.target(*args, **kwargs)
            fused.after(rec)
            v = out[0] if isinstance(out, (tuple, list)) else out
            sid = graph.value_storage.get((pi, node.name, 0))
            if sid is None:
                continue
            if v.shape[-1] != hi - c:
                raise ValueError(f"invalid stream: {node.name} computed {v.shape[-1]} columns, not [{c}, {hi})")
            if graph.storages[sid].nbytes == 0:
                fused.produced(sid, v, rec)
                local[(node.name, 0)] = v
                continue
            window(sid, i, c, hi).copy_(v)
    out_sid = graph.value_storage[(pi, *_canon(_node(phase, st.out_node)))]
    return buf(out_sid)


def _input_range(node, name: str, c: int, hi: int) -> tuple[int, int]:
    from .stream import _rf

    return _rf(node, name)(c, hi)


class FusedValues:
    """Runs values without an arena slot as a fused kernel would, or refuses the plan.

    A storage with no bytes is legal only when the plan names the kernel that consumes it on the
    fly (``Storage.fused_into``) and that kernel is the very next one to run: producer and consumer
    then form one fused kernel. After it the value is poisoned with NaN, so any later reader
    corrupts the step and fails the comparison with eager PyTorch.
    """

    def __init__(self, graph: StepGraph):
        self.graph = graph
        self.pending: dict[int, tuple[torch.Tensor, int]] = {}

    def produced(self, sid: int, value: torch.Tensor, rec) -> None:
        st = self.graph.storages[sid]
        if st.fused_into is None:
            raise ValueError(f"invalid plan: {st.name!r} ({st.kind}) has no bytes in the plan and no fused kernel "
                             f"computes it (op {rec.t} {rec.name} writes it); every tensor needs an arena slot "
                             "unless its consumer is fused with its producer")
        self.pending[sid] = (value, st.fused_into)

    def before(self, rec) -> None:
        if rec.kernel.kind == "free":
            return
        for sid, (_, consumer) in self.pending.items():
            if consumer != rec.t:
                st = self.graph.storages[sid]
                raise ValueError(f"invalid plan: {st.name!r} is fused into op {consumer} but op {rec.t} "
                                 f"({rec.name}) runs in between; a fused value must be consumed by the next kernel")

    def after(self, rec) -> None:
        if rec.kernel.kind == "free":
            return
        for sid in [s for s, (_, c) in self.pending.items() if c == rec.t]:
            value, _ = self.pending.pop(sid)
            if value.dtype.is_floating_point:
                value.fill_(float("nan"))


def _pure(node) -> bool:
    t = node.target
    return isinstance(t, torch._ops.OpOverload) and not t._schema.is_mutable and not any(
        r.alias_info is not None for r in t._schema.returns)


def _dense(obj):
    if isinstance(obj, torch.Tensor):
        return obj if obj.is_contiguous() else obj.contiguous()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_dense(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _dense(v) for k, v in obj.items()}
    return obj


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    den = float(b.norm())
    err = float((a - b).norm())
    if den == 0.0:
        return err
    r = err / den
    return r if r == r else float("inf")  # NaN -> inf


def compare(result: dict, reference: dict, tol: float = 1e-5) -> CheckResult:
    """Relative error (L2 norm) of the updated state, per kind: all weights together, all momentum
    buffers together, all norm buffers together. The check passes when every kind is within
    ``tol``. Per-tensor errors are kept as a diagnostic (a 2-element bias can show a large relative
    error from float summation order alone)."""
    errors, groups = {}, {}
    for k, ref in reference.items():
        if k not in result:
            continue
        if ref.dtype.is_floating_point:
            errors[k] = rel_error(result[k], ref)
            groups.setdefault(k.partition(":")[0], []).append((result[k].flatten(), ref.flatten()))
        else:
            errors[k] = 0.0 if torch.equal(result[k], ref) else float("inf")
            groups.setdefault("integer", []).append((None, None))
            if errors[k]:
                groups["integer"].append((torch.ones(1), torch.zeros(1)))
    by_kind = {}
    for kind, pairs in groups.items():
        pairs = [(a, b) for a, b in pairs if a is not None]
        if pairs:
            by_kind[kind] = rel_error(torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs]))
    worst_kind = max(by_kind, key=by_kind.get) if by_kind else ""
    mx = by_kind.get(worst_kind, 0.0)
    worst = max(errors, key=errors.get) if errors else ""
    errors["by_kind"] = by_kind
    return CheckResult(bool(mx <= tol), mx, f"{worst_kind} (worst single tensor: {worst})", tol, errors)


def check_plan(model: nn.Module, graph: StepGraph, plan: MemoryPlan, tol: float = 1e-5, seed: int = 0,
               validate: bool = True) -> CheckResult:
    """Execute the planned step on the arena and compare it with eager PyTorch."""
    state, batches = initial_state(model, graph.program, seed)
    ref = eager_step(model, graph.program, state, batches)
    got = execute_plan(graph, plan, state, batches, validate=validate)
    return compare(got, ref, tol)
