"""Capture one on-device training step as aten-level graphs with PyTorch's own tracer.

The step is traced with ``make_fx`` over a function that runs the *real* PyTorch code: the
model's forward through :func:`torch.func.functional_call`, cross-entropy, the backward
pass of ``torch.autograd.grad`` and the SGD-with-momentum update written with in-place ops,
exactly as a device runtime would apply it. Nothing here knows the layers of a model: any
``nn.Module`` the pipeline trains can be captured.

A step is a short *program* of phases:

* ``accum == 1`` (``full``, ``last_layer``): one phase ``step`` = forward, loss, backward and
  update of the whole (micro-)batch.
* ``accum > 1`` (``edge``): phase ``micro_step`` (forward + backward of one micro-batch, the
  parameter gradients added into an accumulated-gradient buffer) repeated ``accum`` times,
  then phase ``update`` (weight decay, momentum, weight update, zeroing of the accumulator).

Persistent state (weights, frozen weights, norm buffers, momentum, accumulated gradients) is
shared by the phases; inputs ``x``/``y`` hold the current micro-batch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx
from torch.func import functional_call

STRATEGIES = ("last_layer", "full", "edge")

# SGD hyper-parameters of BRIEF section 2 (values do not change the cost, only the numerics).
SGD_DEFAULTS = {"lr": 5e-3, "momentum": 0.9, "weight_decay": 1e-3}


@dataclass
class StateSpec:
    """One persistent tensor of the step (lives in L2 for the whole step)."""

    name: str
    kind: str  # weights | frozen_weights | buffers | optimizer_state | accumulated_gradients | input
    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass
class Phase:
    name: str
    gm: torch.fx.GraphModule
    repeat: int
    # placeholder name -> state name, in placeholder order
    inputs: list[str]
    # fx node names of the parameter gradients (outputs of autograd.grad)
    grad_nodes: set[str] = field(default_factory=set)
    # index (in graph order, call_function nodes only) of the loss node; ops after it are backward
    loss_node: str | None = None


@dataclass
class StepProgram:
    strategy: str
    batch_size: int
    micro_batch: int
    accum: int
    states: dict[str, StateSpec]
    phases: list[Phase]
    trainable: list[str]  # parameter names that train
    frozen: list[str]
    buffers: list[str]
    hparams: dict
    rematerialized: list = field(default_factory=list)


def strategy_setup(model: nn.Module, strategy: str) -> tuple[list[str], bool]:
    """Trainable parameter names and training-mode flag for ``strategy``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; the device backend costs one of {list(STRATEGIES)}")
    names = [n for n, _ in model.named_parameters()]
    if strategy == "last_layer":
        if not hasattr(model, "classifier"):
            raise ValueError("strategy 'last_layer' needs a model with a `.classifier` last layer")
        cls_ids = {id(p) for p in model.classifier.parameters()}
        trainable = [n for n, p in model.named_parameters() if id(p) in cls_ids]
        return trainable, False  # backbone frozen, BatchNorm in eval mode
    return names, True


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def resolve_batching(model: nn.Module, strategy: str, batch_size: int, micro_batch: int | None, accum: int | None):
    """Defaults and validation of (micro_batch, accum) for a strategy."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if strategy in ("edge", "last_layer"):
        # edge: GroupNorm allows micro-batch 1. last_layer: the frozen backbone runs BatchNorm in
        # eval mode (running statistics), so per-sample forward passes are exact as well.
        micro_batch = 1 if micro_batch is None else micro_batch
        accum = (batch_size // micro_batch if micro_batch else None) if accum is None else accum
    else:
        micro_batch = batch_size if micro_batch is None else micro_batch
        accum = (batch_size // micro_batch if micro_batch else None) if accum is None else accum
    if micro_batch is None or micro_batch < 1 or accum is None or accum < 1:
        raise ValueError(f"micro_batch and accum must be >= 1 (got micro_batch={micro_batch}, accum={accum})")
    if micro_batch * accum != batch_size:
        raise ValueError(
            f"micro_batch * accum must equal batch_size: {micro_batch} * {accum} != {batch_size}; "
            "a step processes batch_size samples as accum micro-batches of micro_batch samples"
        )
    _, training = strategy_setup(model, strategy)
    if training and micro_batch < batch_size and has_batchnorm(model):
        raise ValueError(
            f"strategy {strategy!r} with micro_batch={micro_batch} < batch_size={batch_size}: BatchNorm in "
            "training mode normalises over the whole batch, so it cannot be split into micro-batches with "
            "exact gradients; build the model with norm='group' (GroupNorm allows micro-batch 1) or use "
            "micro_batch=batch_size"
        )
    return micro_batch, accum


def _param_dicts(model: nn.Module):
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    return params, buffers


def capture_step(
    model: nn.Module,
    strategy: str,
    batch_size: int = 8,
    micro_batch: int | None = None,
    accum: int | None = None,
    hparams: dict | None = None,
    tracing_mode: str = "fake",
    remat: bool = True,
) -> StepProgram:
    """Trace the training step of ``model`` under ``strategy`` into a :class:`StepProgram`."""
    hp = {**SGD_DEFAULTS, **(hparams or {})}
    micro_batch, accum = resolve_batching(model, strategy, batch_size, micro_batch, accum)
    trainable, training = strategy_setup(model, strategy)
    model = copy.deepcopy(model)
    model.train(training)
    params, buffers = _param_dicts(model)
    frozen = [n for n in params if n not in trainable]
    buf_names = list(buffers)
    n_chans, n_times = int(model.n_chans), int(model.n_times)
    x_shape = (micro_batch, int(getattr(model, "in_channels", 1)), n_chans, n_times)
    lr, mom, wd = hp["lr"], hp["momentum"], hp["weight_decay"]

    states: dict[str, StateSpec] = {}
    for n in trainable:
        states[f"param:{n}"] = StateSpec(f"param:{n}", "weights", tuple(params[n].shape), params[n].dtype)
    for n in frozen:
        states[f"param:{n}"] = StateSpec(f"param:{n}", "frozen_weights", tuple(params[n].shape), params[n].dtype)
    for n in buf_names:
        states[f"buffer:{n}"] = StateSpec(f"buffer:{n}", "buffers", tuple(buffers[n].shape), buffers[n].dtype)
    for n in trainable:
        states[f"momentum:{n}"] = StateSpec(f"momentum:{n}", "optimizer_state", tuple(params[n].shape), params[n].dtype)
    if accum > 1:
        for n in trainable:
            states[f"accum:{n}"] = StateSpec(
                f"accum:{n}", "accumulated_gradients", tuple(params[n].shape), params[n].dtype
            )
    states["x"] = StateSpec("x", "input", x_shape, torch.float32)
    states["y"] = StateSpec("y", "input", (micro_batch,), torch.int64)

    def forward_backward(tr, fr, bu, x, y, scale):
        out = functional_call(model, {**dict(zip(trainable, tr)), **dict(zip(frozen, fr)), **dict(zip(buf_names, bu))}, (x,))
        loss = F.cross_entropy(out, y)
        if scale != 1.0:
            loss = loss * scale
        grads = torch.autograd.grad(loss, tr)
        return loss, grads

    def sgd(tr, grads, moms):
        with torch.no_grad():
            for p, g, m in zip(tr, grads, moms):
                g.add_(p, alpha=wd)  # weight decay, in the gradient buffer
                m.mul_(mom).add_(g)  # momentum
                p.add_(m, alpha=-lr)  # update

    def _example(spec: StateSpec, requires_grad=False):
        if spec.dtype == torch.int64:
            return torch.zeros(spec.shape, dtype=spec.dtype)
        t = torch.zeros(spec.shape, dtype=spec.dtype)
        return t.requires_grad_(requires_grad)

    tr_ex = [_example(states[f"param:{n}"], True) for n in trainable]
    fr_ex = [_example(states[f"param:{n}"]) for n in frozen]
    bu_ex = [buffers[n].clone() for n in buf_names]
    mo_ex = [_example(states[f"momentum:{n}"]) for n in trainable]
    x_ex = torch.zeros(x_shape)
    y_ex = torch.zeros((micro_batch,), dtype=torch.int64)

    phases: list[Phase] = []
    in_tr = [f"param:{n}" for n in trainable]
    in_fr = [f"param:{n}" for n in frozen]
    in_bu = [f"buffer:{n}" for n in buf_names]
    in_mo = [f"momentum:{n}" for n in trainable]
    if accum == 1:

        def step(tr, fr, bu, mo, x, y):
            loss, grads = forward_backward(tr, fr, bu, x, y, 1.0)
            grads = list(grads)
            out = (loss, *grads)
            sgd(tr, grads, mo)
            return out

        gm = make_fx(step, tracing_mode=tracing_mode)(tr_ex, fr_ex, bu_ex, mo_ex, x_ex, y_ex)
        phases.append(_phase("step", gm, 1, in_tr + in_fr + in_bu + in_mo + ["x", "y"]))
    else:
        ac_ex = [_example(states[f"accum:{n}"]) for n in trainable]
        in_ac = [f"accum:{n}" for n in trainable]

        def micro_step(tr, fr, bu, ac, x, y):
            loss, grads = forward_backward(tr, fr, bu, x, y, 1.0 / accum)
            with torch.no_grad():
                for a, g in zip(ac, grads):
                    a.add_(g)
            return (loss, *grads)

        def update(tr, mo, ac):
            sgd(tr, ac, mo)
            with torch.no_grad():
                for a in ac:
                    a.zero_()
            return ()

        gm = make_fx(micro_step, tracing_mode=tracing_mode)(tr_ex, fr_ex, bu_ex, ac_ex, x_ex, y_ex)
        phases.append(_phase("micro_step", gm, accum, in_tr + in_fr + in_bu + in_ac + ["x", "y"]))
        tr_ex2 = [t.detach() for t in tr_ex]
        gm2 = make_fx(update, tracing_mode=tracing_mode)(tr_ex2, mo_ex, ac_ex)
        phases.append(_phase("update", gm2, 1, in_tr + in_mo + in_ac, has_loss=False))

    rematerialized = []
    if remat:
        from .passes import optimize_phase

        for ph in phases:
            rematerialized += optimize_phase(ph)

    return StepProgram(
        rematerialized=rematerialized,
        strategy=strategy,
        batch_size=batch_size,
        micro_batch=micro_batch,
        accum=accum,
        states=states,
        phases=phases,
        trainable=trainable,
        frozen=frozen,
        buffers=buf_names,
        hparams=hp,
    )


def capture_inference(model: nn.Module, micro_batch: int = 1, tracing_mode: str = "fake") -> StepProgram:
    """The forward pass alone (eval mode, no gradients): the working set a frozen backbone needs."""
    model = copy.deepcopy(model).eval()
    params, buffers = _param_dicts(model)
    names, buf_names = list(params), list(buffers)
    x_shape = (micro_batch, int(getattr(model, "in_channels", 1)), int(model.n_chans), int(model.n_times))
    states = {f"param:{n}": StateSpec(f"param:{n}", "frozen_weights", tuple(p.shape), p.dtype) for n, p in params.items()}
    states.update({f"buffer:{n}": StateSpec(f"buffer:{n}", "buffers", tuple(b.shape), b.dtype) for n, b in buffers.items()})
    states["x"] = StateSpec("x", "input", x_shape, torch.float32)

    def forward(pa, bu, x):
        with torch.no_grad():
            return functional_call(model, {**dict(zip(names, pa)), **dict(zip(buf_names, bu))}, (x,))

    gm = make_fx(forward, tracing_mode=tracing_mode)([torch.zeros(states[f"param:{n}"].shape) for n in names],
                                                    [b.clone() for b in buffers.values()], torch.zeros(x_shape))
    phase = _phase("forward", gm, 1, [f"param:{n}" for n in names] + [f"buffer:{n}" for n in buf_names] + ["x"],
                   has_loss=False)
    return StepProgram("inference", micro_batch, micro_batch, 1, states, [phase], [], names, buf_names, {})


def _phase(name: str, gm: torch.fx.GraphModule, repeat: int, inputs: list[str], has_loss: bool = True) -> Phase:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(inputs):
        raise RuntimeError(f"phase {name}: {len(placeholders)} placeholders for {len(inputs)} inputs")
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    outs = out_node.args[0]
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    loss_node = None
    grad_nodes: set[str] = set()
    if has_loss and outs:
        loss_node = outs[0].name if isinstance(outs[0], torch.fx.Node) else None
        grad_nodes = {o.name for o in outs[1:] if isinstance(o, torch.fx.Node)}
    return Phase(name, gm, repeat, inputs, grad_nodes=grad_nodes, loss_node=loss_node)
