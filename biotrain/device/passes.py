"""Memory-saving rewrites of a captured step graph. Each one is exact (same gradients).

They work on the aten graph, not on a list of layers, and every one of them is verified by the
plan-execution check (the rewritten step must reproduce eager PyTorch):

* ``norm_from_output`` (InPlace-ABN style): a GroupNorm followed by ReLU keeps only its output
  ``y`` for the backward pass. The ReLU mask is ``y > 0`` and the norm's input is rebuilt from
  ``y`` right before the norm's backward (``x = (y - beta) / gamma / rstd + mean``), so neither
  the norm's input nor the ReLU output is held across the pass. Needs ``gamma != 0``.
* ``rematerialize``: a forward value that is cheap to recompute from the step inputs alone
  (small convolutions, GroupNorm, BatchNorm in training mode with its batch statistics but without
  updating the running statistics again, frozen BatchNorm with its running statistics, padding, ReLU on the micro-batch and the weights) is computed
  again right before its backward use instead of being kept alive.
* ``hoist_accumulation``: each parameter gradient is added into its accumulation buffer as soon
  as it is produced, so it does not wait for the end of the backward pass.
"""

from __future__ import annotations

import operator

import torch
from torch.fx import Node
from torch.fx.experimental.proxy_tensor import make_fx

from .kernels import read_inputs

aten = torch.ops.aten
DETACH = {aten.detach.default, aten.alias.default}
CHEAP_CONV_MACS_PER_OUTPUT = 16
CHEAP = {aten.relu.default, aten.constant_pad_nd.default, aten.native_group_norm.default, aten.view.default,
         aten._unsafe_view.default, aten.native_batch_norm.default}


def _base(n):
    while isinstance(n, Node) and n.op == "call_function" and n.target in DETACH:
        n = n.args[0]
    return n


def _loss_index(g, loss_node: str) -> tuple[dict, int]:
    order = {n: i for i, n in enumerate(g.nodes)}
    return order, next(i for n, i in order.items() if n.name == loss_node)


def recomputable(n, memo=None) -> bool:
    """Can ``n`` be recomputed from the phase's inputs with cheap ops only?"""
    memo = {} if memo is None else memo
    if not isinstance(n, Node):
        return True
    if n in memo:
        return memo[n]
    if n.op == "placeholder":
        ok = True
    elif n.op != "call_function":
        ok = False
    elif n.target is operator.getitem or n.target in DETACH or n.target in CHEAP:
        ok = all(recomputable(a, memo) for a in n.all_input_nodes)
    elif n.target is aten.convolution.default:
        w = n.args[1].meta.get("val")
        ok = (w is not None and w[0].numel() <= CHEAP_CONV_MACS_PER_OUTPUT
              and all(recomputable(a, memo) for a in n.all_input_nodes))
    else:
        ok = False
    memo[n] = ok
    return ok


def _backward_uses(v: Node, order: dict, loss_i: int) -> list[tuple[Node, Node]]:
    """(user, argument node) pairs through which the backward pass reads ``v`` (also via detach);
    an argument taken for its shape alone (``kernels.shape_only_args``) is not read."""
    out, stack = [], [v]
    while stack:
        cur = stack.pop()
        for u in cur.users:
            if u.op == "call_function" and u.target in DETACH:
                stack.append(u)
            elif order.get(u, 10**9) > loss_i and cur in read_inputs(u):
                out.append((u, cur))
    return out


def rematerialize(gm: torch.fx.GraphModule, loss_node: str, min_numel: int = 1024) -> list[str]:
    g = gm.graph
    order, loss_i = _loss_index(g, loss_node)
    done = []
    memo: dict = {}
    for v in [n for n in g.nodes if order[n] < loss_i]:
        if v.op != "call_function" or v.target in DETACH:
            continue
        val = v.meta.get("val")
        if not isinstance(val, torch.Tensor) or val.numel() < min_numel or not recomputable(v, memo):
            continue
        uses = _backward_uses(v, order, loss_i)
        if not uses:
            continue
        first = min((u for u, _ in uses), key=lambda u: order[u])
        clones: dict = {}

        def clone(n):
            if not isinstance(n, Node) or n.op == "placeholder":
                return n
            if n in clones:
                return clones[n]
            args = torch.fx.node.map_arg(n.args, clone)
            kwargs = torch.fx.node.map_arg(n.kwargs, clone)
            if n.target is aten.native_batch_norm.default and args[5]:
                # training mode: recompute with the same batch statistics but without updating the
                # running statistics a second time. In eval mode (frozen BatchNorm: last_layer, bias,
                # sparse, lora) the running statistics *are* the normalisation and are only read, so
                # they stay: without them aten's eval-mode kernel reads through a null pointer.
                args = (args[0], args[1], args[2], None, None, *args[5:])
            with g.inserting_before(first):
                c = g.call_function(n.target, args, kwargs)
            c.meta = dict(n.meta)
            c.meta["recomputed"] = True
            clones[n] = c
            return c

        cv = clone(v)
        for u, a in uses:
            u.replace_input_with(a, cv)
        done.append(f"rematerialize:{v.name}")
    return done


def _recon(group: int | None):
    """x = (y - beta) / gamma / rstd + mean, with GroupNorm (per sample, group) or BatchNorm
    (per channel) statistics."""

    def recon(y, gamma, beta, mean, rstd):
        n, c = y.shape[0], y.shape[1]
        bshape = (1, c) + (1,) * (y.dim() - 2)
        z = (y - beta.view(bshape)) / gamma.view(bshape)
        if group is None:
            z = z / rstd.view(bshape) + mean.view(bshape)
        else:
            z = z.reshape(n, group, -1) / rstd.view(n, group, 1) + mean.view(n, group, 1)
        return z.reshape(y.shape)

    return recon


def norm_from_output(gm: torch.fx.GraphModule, loss_node: str) -> list[str]:
    g = gm.graph
    order, loss_i = _loss_index(g, loss_node)
    done = []
    for b in [n for n in g.nodes if n.op == "call_function"
              and n.target in (aten.native_group_norm_backward.default, aten.native_batch_norm_backward.default)]:
        if b.target is aten.native_group_norm_backward.default:
            _grad, inp, mean, rstd, gamma = b.args[:5]
            group, fwd_target = int(b.args[8]), aten.native_group_norm.default
        else:  # BatchNorm: in training mode the saved batch statistics; frozen (eval) below
            _grad, inp, gamma, _rm, _rv, mean, rstd, train = b.args[:8]
            group, fwd_target = None, aten.native_batch_norm.default
            if not train:
                if _eval_scale_grad_from_output(g, b, order, loss_i):
                    done.append(f"norm_from_output:{b.name}")
                continue
        inp0 = _base(inp)
        if recomputable(inp0) or gamma is None or mean is None or rstd is None:
            continue  # rematerialisation handles cheap inputs better
        norms = [u for u in inp0.users if u.target is fwd_target and order[u] < loss_i]
        if len(norms) != 1 or norms[0].args[2] is None:
            continue
        nrm = norms[0]
        beta = nrm.args[2]
        ys = [u for u in nrm.users if u.target is operator.getitem and u.args[1] == 0]
        if len(ys) != 1:
            continue
        y = ys[0]
        relus = [u for u in y.users if u.target is aten.relu.default]
        if len(relus) != 1:
            continue
        uses = _backward_uses(relus[0], order, loss_i)
        ok = bool(uses) and all(
            (u.target is aten.threshold_backward.default and u.args[1] is a and u.args[2] == 0)
            or (u.target is aten.avg_pool2d_backward.default and u.args[1] is a)
            for u, a in uses
        )
        if not ok:
            continue
        for u, a in uses:
            u.replace_input_with(a, y)
        ex = [t.meta["val"] for t in (y, gamma, beta, mean, rstd)]
        sub = make_fx(_recon(group), tracing_mode="fake")(*[torch.empty(e.shape, dtype=e.dtype) for e in ex])
        phs = [n for n in sub.graph.nodes if n.op == "placeholder"]
        with g.inserting_before(b):
            out = g.graph_copy(sub.graph, dict(zip(phs, [y, gamma, beta, mean, rstd])))
        b.update_arg(1, out)
        for n in g.nodes:
            if n.op == "call_function" and n not in order:
                n.meta["recomputed"] = True
        done.append(f"norm_from_output:{nrm.name}")
    return done


def _relu_after(nrm, order: dict, loss_i: int):
    """``(y, relu, backward uses of the relu)`` when the norm ``nrm``'s output ``y`` feeds one ReLU
    whose backward readers only need ``y > 0`` (threshold) or its shape (average-pool backward)."""
    ys = [u for u in nrm.users if u.target is operator.getitem and u.args[1] == 0]
    if len(ys) != 1:
        return None
    relus = [u for u in ys[0].users if u.target is aten.relu.default]
    if len(relus) != 1:
        return None
    uses = _backward_uses(relus[0], order, loss_i)
    ok = bool(uses) and all(
        (u.target is aten.threshold_backward.default and u.args[1] is a and u.args[2] == 0)
        or (u.target is aten.avg_pool2d_backward.default and u.args[1] is a)
        for u, a in uses
    )
    return (ys[0], relus[0], uses) if ok else None


def _scale_grad(dy, y, beta, gamma):
    """d gamma of a frozen (eval-mode) BatchNorm from its output: sum(dy * (y - beta) / gamma)."""
    bshape = (1, y.shape[1]) + (1,) * (y.dim() - 2)
    xhat = (y - beta.view(bshape)) / gamma.view(bshape)
    dims = [0] + list(range(2, y.dim()))
    return (xhat * dy).sum(dims)  # xhat first: the product may overwrite it (it dies there), dy lives on


def _eval_scale_grad_from_output(g, b, order: dict, loss_i: int) -> bool:
    """A frozen BatchNorm whose scale trains (``bias``, ``sparse``) needs ``xhat = (x - mean) * rstd``
    for the scale's gradient, so autograd keeps its input ``x``; followed by a ReLU it keeps ``y`` too.
    ``xhat = (y - beta) / gamma`` from the output alone: the scale's gradient is computed from ``y``
    (kept for the ReLU mask anyway), the backward op keeps only the input gradient and the shift's
    gradient, which read no input, and ``x`` is not held across the pass. Needs ``gamma != 0``."""
    dy, inp, gamma = b.args[0], b.args[1], b.args[2]
    mask = list(b.args[9])
    inp0 = _base(inp)
    if not mask[1] or gamma is None or recomputable(inp0):
        return False
    norms = [u for u in inp0.users if u.target is aten.native_batch_norm.default and order[u] < loss_i]
    if len(norms) != 1 or norms[0].args[2] is None or norms[0].args[5]:
        return False
    found = _relu_after(norms[0], order, loss_i)
    if found is None:
        return False
    y, _relu, uses = found
    grads = [u for u in b.users if u.target is operator.getitem and u.args[1] == 1]
    for u, a in uses:
        u.replace_input_with(a, y)
    ex = [t.meta["val"] for t in (dy, y, norms[0].args[2], gamma)]
    sub = make_fx(_scale_grad, tracing_mode="fake")(*[torch.empty(e.shape, dtype=e.dtype) for e in ex])
    phs = [n for n in sub.graph.nodes if n.op == "placeholder"]
    with g.inserting_before(b):
        dgamma = g.graph_copy(sub.graph, dict(zip(phs, [dy, y, norms[0].args[2], gamma])))
    for gr in grads:
        gr.replace_all_uses_with(dgamma)
        g.erase_node(gr)
    b.update_arg(1, y)  # now read for its shape alone (kernels.shape_only_args)
    b.update_arg(9, [mask[0], False, mask[2]])
    if not mask[0] and not mask[2]:  # nothing left for the backward op to compute
        for u in list(b.users):
            if not u.users:
                g.erase_node(u)
        if not b.users:
            g.erase_node(b)
    for n in g.nodes:
        if n.op == "call_function" and n not in order:
            n.meta["recomputed"] = True
    return True


def hoist_accumulation(gm: torch.fx.GraphModule, inputs: list[str]) -> list[str]:
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    acc = {ph for ph, name in zip(phs, inputs) if name.startswith("accum:")}
    moved = 0
    for n in list(gm.graph.nodes):
        if n.op == "call_function" and n.target is aten.add_.Tensor and n.args[0] in acc:
            src = n.args[1]
            if isinstance(src, Node):
                src.append(n)
                moved += 1
    return [f"hoist_accumulation:{moved}"] if moved else []


def _drop_dead_views(gm: torch.fx.GraphModule) -> None:
    """Remove detach/view nodes left without users (they would keep a dead tensor 'in use')."""
    pure = DETACH | {aten.view.default, aten._unsafe_view.default, aten.t.default}
    changed = True
    while changed:
        changed = False
        for n in reversed(list(gm.graph.nodes)):
            if n.op == "call_function" and n.target in pure and not n.users:
                gm.graph.erase_node(n)
                changed = True


def _refresh_grad_nodes(phase) -> None:
    """The parameter gradients are the phase's outputs after the loss: a rewrite may have replaced them."""
    if phase.loss_node is None:
        return
    out = next(n for n in phase.gm.graph.nodes if n.op == "output")
    outs = out.args[0] if isinstance(out.args[0], (list, tuple)) else [out.args[0]]
    phase.grad_nodes = {o.name for o in outs[1:] if isinstance(o, Node)}


def optimize_phase(phase) -> list[str]:
    """Apply the rewrites to one phase of a captured step; returns what was applied."""
    gm = phase.gm
    applied: list[str] = []
    if phase.loss_node is not None:
        applied += norm_from_output(gm, phase.loss_node)
        applied += rematerialize(gm, phase.loss_node)
    if phase.name == "micro_step":
        applied += hoist_accumulation(gm, phase.inputs)
    if applied:
        _drop_dead_views(gm)
        _refresh_grad_nodes(phase)
        gm.graph.lint()
        gm.recompile()
    return applied
