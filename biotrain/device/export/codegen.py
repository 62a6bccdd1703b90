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

import torch

from ..kernels import return_alias, tensor_outputs
from ..memory import MemoryPlan, StepGraph

KINDS = ("conv_fwd", "conv_bwd", "dw_fwd", "dw_bwd", "linear_fwd", "linear_bwd", "norm_fwd", "norm_bwd",
         "elementwise", "data")


def report_kind(kernel_kind: str) -> str:
    """The cost model's kernel kind folded into the program's counters: pointwise convolutions
    count as convolutions, and input- and weight-gradient halves as the backward pass."""
    fam, _, phase = kernel_kind.rpartition("_")
    fam = {"pw": "conv"}.get(fam, fam)
    phase = "bwd" if phase in ("ig", "wg", "bwd") else phase
    kind = f"{fam}_{phase}"
    return kind if kind in KINDS else "elementwise"


VIEW_OPS = {"view", "_unsafe_view", "t", "detach", "alias", "expand", "permute", "transpose", "unsqueeze",
            "squeeze", "slice", "select", "reshape"}
RED_MAX = 256  # kernels.h BT_RED_MAX: partial sums per core of a parallel norm reduction
EW = {"add": "EW_ADD", "sub": "EW_SUB", "mul": "EW_MUL", "div": "EW_DIV"}


class UnsupportedOp(NotImplementedError):
    pass


class Val:
    """A tensor of the step: index view into the arena (``idx``), plus how it is produced."""

    def __init__(self, idx, dtype=torch.float32, acc=False, relu_src=None):
        self.idx, self.dtype, self.acc, self.relu_src = idx, dtype, acc, relu_src


def _fmt(x: float) -> str:
    r = repr(float(x))
    if "inf" in r or "nan" in r:
        raise UnsupportedOp(f"non-finite constant {x!r} in the step")
    return (r if ("e" in r or "." in r) else r + ".0") + "f"


class StepCodegen:
    def __init__(self, graph: StepGraph, plan: MemoryPlan, prefix: str = ""):
        self.g, self.plan, self.prefix = graph, plan, prefix
        self.program = graph.program
        sizes = [plan.offsets[s.sid] + s.size for s in graph.storages if s.nbytes]
        self.arena_bytes = max([plan.peak, 8] + sizes)
        self.idx32 = torch.arange(self.arena_bytes // 4, dtype=torch.int64)
        self.idx64 = torch.arange(self.arena_bytes // 8, dtype=torch.int64)
        self.lines: list[str] = []
        self.ops_emitted: dict[str, int] = {}

    # ------------------------------------------------------------------ layout helpers
    def sview(self, sid: int, shape, dtype) -> torch.Tensor:
        o = self.plan.offsets[sid]
        n = torch.Size(shape).numel()
        if dtype == torch.float32:
            assert o % 4 == 0
            return self.idx32[o // 4:o // 4 + n].view(tuple(shape))
        if dtype == torch.int64:
            assert o % 8 == 0, f"int64 tensor at unaligned offset {o}"
            return self.idx64[o // 8:o // 8 + n].view(tuple(shape))
        raise UnsupportedOp(f"dtype {dtype} is not supported by the C export (fp32 and int64 only)")

    def state_val(self, name: str) -> Val:
        spec = self.program.states[name]
        return Val(self.sview(self.g.state_storage[name], spec.shape, spec.dtype), spec.dtype)

    def byte_off(self, v: Val) -> int:
        return v.idx.storage_offset() * (4 if v.dtype == torch.float32 else 8)

    def T(self, v) -> str:
        """C expression of a ten_t view."""
        t = v.idx if isinstance(v, Val) else v
        if t.dim() > 4:
            raise UnsupportedOp(f"tensor of {t.dim()} dimensions (the C kernels take at most 4)")
        d = [1] * (4 - t.dim()) + list(t.shape)
        s = [0] * (4 - t.dim()) + list(t.stride())
        off = t.storage_offset() * 4
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
                self.lines.append(f"    loss = *(const float *)(bt_arena + {self.byte_off(v)});")

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
        if name == "empty":
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
        call = self._call(name, node, A, out, kind)
        self.ops_emitted[name] = self.ops_emitted.get(name, 0) + 1
        self.emit(kind, call, f"{node.name}: {name}")
        for o in (out if isinstance(out, (list, tuple)) else [out]):
            if isinstance(o, Val) and hasattr(o, "full"):
                pads = list(o.pads) + [0] * (4 - len(o.pads))
                H, W = o.full.shape[-2], o.full.shape[-1]
                self.emit("elementwise", f"k_zero_border({self.T(o.full)}, {pads[2]}, {H - pads[3]}, "
                                         f"{pads[0]}, {W - pads[1]})", "zero border of the padded buffer")
        return out

    def _call(self, name, node, A, out, kind) -> str:
        T, P = self.T, self.P
        args = node.args
        if name == "convolution":
            x, w, b, stride, pad, dil, transposed, _op, groups = [A(i) for i in range(9)]
            if transposed or len(stride) != 2:
                raise UnsupportedOp(f"{node.name}: transposed or non-2-D convolution")
            return (f"k_conv2d({T(out)}, {T(x)}, {T(w)}, {P(b)}, {stride[0]}, {stride[1]}, {pad[0]}, {pad[1]}, "
                    f"{dil[0]}, {dil[1]}, {groups})")
        if name == "convolution_backward":
            dy, x, w = A(0), A(1), A(2)
            stride, pad, dil, transposed, groups, mask = A(4), A(5), A(6), A(7), A(9), A(10)
            if transposed:
                raise UnsupportedOp(f"{node.name}: transposed convolution")
            dx = out[0] if mask[0] else None
            dw = out[1] if mask[1] else None
            db = out[2] if mask[2] else None
            return (f"k_conv2d_bwd({T(dy)}, {T(x)}, {T(w)}, {P(dx)}, {P(dw)}, {int(bool(dw and dw.acc))}, "
                    f"{P(db)}, {int(bool(db and db.acc))}, {stride[0]}, {stride[1]}, {pad[0]}, {pad[1]}, "
                    f"{dil[0]}, {dil[1]}, {groups})")
        if name == "mm":
            return f"k_mm({T(out)}, {T(A(0))}, {T(A(1))}, {int(out.acc)})"
        if name == "addmm":
            if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
                raise UnsupportedOp(f"{node.name}: addmm with beta/alpha != 1")
            bias = torch.broadcast_to(A(0).idx, tuple(out.idx.shape))
            return f"k_addmm({T(out)}, {T(bias)}, {T(A(1))}, {T(A(2))})"
        if name in ("native_group_norm", "native_group_norm_backward"):
            xs = node.args[1 if name.endswith("backward") else 0].meta["val"].shape
            need = xs[0] * (2 * xs[1] if name.endswith("backward") else A(6))  # (n, channel) x 2 | (n, group)
            if need > RED_MAX:
                raise UnsupportedOp(f"{node.name}: GroupNorm of {tuple(xs)} needs {need} partial sums per core, "
                                    f"the kernels hold {RED_MAX} (kernels.h BT_RED_MAX)")
        if name == "native_group_norm":
            x, gm, bt = A(0), A(1), A(2)
            if gm is None or bt is None:
                raise UnsupportedOp(f"{node.name}: GroupNorm without affine parameters")
            return (f"k_group_norm({T(out[0])}, {T(x)}, {T(gm)}, {T(bt)}, {T(out[1])}, {T(out[2])}, {A(6)}, "
                    f"{_fmt(A(7))})")
        if name == "native_group_norm_backward":
            dy, x, mean, rstd, gm = A(0), A(1), A(2), A(3), A(4)
            mask = A(9)
            dx, dg, db = [out[i] if mask[i] else None for i in range(3)]
            return (f"k_group_norm_bwd({T(dy)}, {T(x)}, {T(mean)}, {T(rstd)}, {T(gm)}, {P(dx)}, {P(dg)}, "
                    f"{int(bool(dg and dg.acc))}, {P(db)}, {int(bool(db and db.acc))}, {A(8)})")
        if name == "native_batch_norm":
            x, gm, bt, rm, rv, training, mom, eps = [A(i) for i in range(8)]
            if gm is None or bt is None:
                raise UnsupportedOp(f"{node.name}: BatchNorm without affine parameters")
            if training:
                return (f"k_batch_norm_train({T(out[0])}, {T(x)}, {T(gm)}, {T(bt)}, {P(rm)}, {P(rv)}, "
                        f"{T(out[1])}, {T(out[2])}, {_fmt(mom)}, {_fmt(eps)})")
            return f"k_batch_norm_eval({T(out[0])}, {T(x)}, {T(gm)}, {T(bt)}, {T(rm)}, {T(rv)}, {_fmt(eps)})"
        if name == "native_batch_norm_backward":
            dy, x, gm, rm, rv, smean, sinv, train = [A(i) for i in range(8)]
            mask = A(9)
            dx, dg, db = [out[i] if mask[i] else None for i in range(3)]
            if not train:  # frozen statistics (bias, sparse, lora): x is read only for the scale's gradient
                return (f"k_batch_norm_eval_bwd({T(dy)}, {T(x)}, {T(gm)}, {T(rm)}, {T(rv)}, {P(dx)}, {P(dg)}, "
                        f"{int(bool(dg and dg.acc))}, {P(db)}, {int(bool(db and db.acc))}, {_fmt(A(8))})")
            return (f"k_batch_norm_bwd({T(dy)}, {T(x)}, {T(gm)}, {T(smean)}, {T(sinv)}, {P(dx)}, {P(dg)}, "
                    f"{int(bool(dg and dg.acc))}, {P(db)}, {int(bool(db and db.acc))})")
        if name == "relu":
            return f"k_relu({T(out)}, {T(A(0))})"
        if name == "threshold_backward":
            return f"k_threshold_bwd({T(out)}, {T(A(0))}, {T(A(1))}, {_fmt(A(2))})"
        if name in ("avg_pool2d", "avg_pool2d_backward"):
            bwd = name.endswith("backward")
            k = list(A(2 if bwd else 1))
            rest = [A(i) for i in range(3 if bwd else 2, len(args))]
            stride = list(rest[0]) if rest and rest[0] else k
            pad = list(rest[1]) if len(rest) > 1 else [0, 0]
            ceil = rest[2] if len(rest) > 2 else False
            div = rest[4] if len(rest) > 4 else None
            if any(pad) or ceil:
                raise UnsupportedOp(f"{node.name}: avg_pool2d with padding or ceil_mode")
            if len(k) == 1:
                k = k * 2
            if len(stride) == 1:
                stride = stride * 2
            divisor = float(div) if div else float(k[0] * k[1])
            if bwd:
                return f"k_avg_pool_bwd({T(out)}, {T(A(0))}, {k[0]}, {k[1]}, {stride[0]}, {stride[1]}, {_fmt(divisor)})"
            x = A(0)
            src, relu = (x.relu_src, 1) if x.relu_src is not None else (x, 0)
            return f"k_avg_pool({T(out)}, {T(src)}, {k[0]}, {k[1]}, {stride[0]}, {stride[1]}, {_fmt(divisor)}, {relu})"
        if name in ("mean", "sum"):
            x = A(0)
            src, relu = (x.relu_src, 1) if x.relu_src is not None else (x, 0)
            xs = tuple(node.args[0].meta["val"].shape)
            dims = sorted(d % len(xs) for d in (A(1) or range(len(xs))))
            keep = A(2) if len(args) > 2 else False
            ob = out.idx
            if not keep:
                for d in dims:
                    ob = ob.unsqueeze(d)
            ybc = ob.expand(xs)
            divisor = 1.0
            if name == "mean":
                for d in dims:
                    divisor *= xs[d]
            if out.acc and divisor != 1.0:
                raise UnsupportedOp(f"{node.name}: accumulated mean")
            return f"k_sum({T(out)}, {T(ybc)}, {T(src)}, {_fmt(divisor)}, {relu}, {int(out.acc)})"
        if name == "_log_softmax":
            if A(1) not in (1, -1) or node.args[0].meta["val"].dim() != 2:
                raise UnsupportedOp(f"{node.name}: log_softmax over dim {A(1)} of a non-2-D tensor")
            return f"k_log_softmax({T(out)}, {T(A(0))})"
        if name == "_log_softmax_backward_data":
            return f"k_log_softmax_bwd({T(out)}, {T(A(0))}, {T(A(1))})"
        if name == "nll_loss_forward":
            if A(2) is not None or A(3) != 1:
                raise UnsupportedOp(f"{node.name}: nll_loss with class weights or reduction != mean")
            return f"k_nll_loss({T(out[0])}, {T(out[1])}, {T(A(0))}, {self.I64(A(1))}, {A(4)})"
        if name == "nll_loss_backward":
            if A(3) is not None or A(4) != 1:
                raise UnsupportedOp(f"{node.name}: nll_loss with class weights or reduction != mean")
            return f"k_nll_loss_bwd({T(out)}, {T(A(0))}, {self.I64(A(2))}, {T(A(6))}, {A(5)})"
        if name == "ones_like":
            return f"k_fill({T(out)}, 1.0f)"
        if name == "zero_":
            return f"k_fill({T(out)}, 0.0f)"
        if name in ("copy_", "clone"):
            dst, src = (A(0), A(1)) if name == "copy_" else (out, A(0))
            return f"k_copy({T(dst)}, {T(src)})"
        if name == "constant_pad_nd":
            pads = list(A(1))
            value = A(2) if len(args) > 2 else 0.0
            if len(pads) > 4:
                raise UnsupportedOp(f"{node.name}: padding of more than the last two dimensions")
            pads += [0] * (4 - len(pads))
            return f"k_pad({T(out)}, {T(A(0))}, {pads[2]}, {pads[0]}, {_fmt(value)})"
        base = name.rstrip("_")
        if base in EW:
            a, b = A(0), A(1)
            alpha = node.kwargs.get("alpha", 1)
            y = out
            if y.dtype == torch.int64:
                if base != "add" or isinstance(b, Val):
                    raise UnsupportedOp(f"{node.name}: integer {name} with a tensor operand")
                return f"k_i64_add({self.I64(y)}, {y.idx.numel()}, {int(b) * int(alpha)})"
            if isinstance(b, Val):
                if b.relu_src is not None:
                    raise UnsupportedOp(f"{node.name}: reads a ReLU fused into pooling")
                bb = torch.broadcast_to(b.idx, tuple(y.idx.shape))
                aa = torch.broadcast_to(a.idx, tuple(y.idx.shape))
                al = _fmt(alpha)
                if node.name in self.lr_updates:
                    al = "-r->lr"  # the SGD update: the learning rate is the step's runtime input (its schedule)
                return f"k_binary({EW[base]}, {T(y)}, {T(aa)}, {T(bb)}, {al})"
            s = float(b) * (float(alpha) if base in ("add", "sub") else 1.0)
            sc = _fmt(s)
            if base == "mul" and self.program.accum > 1 and self.in_loss_phase and s == 1.0 / self.program.accum:
                sc = "r->scale"  # loss scale 1/(micro-batches in this step)
            aa = torch.broadcast_to(a.idx, tuple(y.idx.shape))
            return f"k_binary_scalar({EW[base]}, {T(y)}, {T(aa)}, {sc})"
        raise UnsupportedOp(
            f"aten op {name!r} ({node.name}) has no C kernel in the export; supported: convolution(+backward), "
            "mm, addmm, native_group_norm(+backward), native_batch_norm(+backward), relu, threshold_backward, "
            "avg_pool2d(+backward), mean, sum, _log_softmax(+backward), nll_loss(+backward), add/sub/mul/div, "
            "zero_, copy_, ones_like, constant_pad_nd and views")


def _weight_updates(placeholders, inputs) -> set[str]:
    """The SGD updates of a phase: the in-place ``add_`` into a trained weight (``p.add_(m, alpha=-lr)``
    in ``capture``), found by where it writes rather than by its traced value, so the program
    takes the learning rate from each step's schedule entry whatever rate was traced."""
    weights = {ph for ph, state in zip(placeholders, inputs) if state.startswith("param:")}
    return {user.name for ph in weights for user in ph.users
            if user.target is torch.ops.aten.add_.Tensor and user.args[0] is ph}
