"""Capture one on-device training step as aten-level graphs with PyTorch's own tracer.

The step is traced with ``make_fx`` over a function that runs the *real* PyTorch code: the
model's forward through :func:`torch.func.functional_call`, cross-entropy, the backward
pass of ``torch.autograd.grad`` and the SGD-with-momentum update written with in-place ops,
exactly as a device runtime would apply it. Nothing here knows the layers of a model: any
``nn.Module`` the pipeline trains can be captured.

A step is a short *program* of phases:

* ``accum == 1`` (``full`` by default): one phase ``step`` = forward, loss, backward and
  update of the whole batch.
* ``accum > 1`` (``edge`` and ``last_layer`` by default): phase ``micro_step`` (forward +
  backward of one micro-batch, the parameter gradients added into an accumulated-gradient
  buffer) repeated ``accum`` times, then phase ``update`` (weight decay, momentum, weight
  update, zeroing of the accumulator).

What trains, in which mode and with which default micro-batch comes from
``biotrain.strategy_table`` (the table the host training reads too).

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

from ..adaptation.finetune import FinetuneConfig
from ..strategy_table import COSTED_STRATEGIES, STRATEGY_TABLE
from ..models.layers import max_rank, weight_layers
from ..models.lora import add_adapters, has_adapters
from ..strategy_table import has_batchnorm, trainable_parameters

__all__ = ["SGD_DEFAULTS", "Phase", "StateSpec", "StepProgram", "capture_inference", "capture_step", "check_strategy_args",
           "has_batchnorm", "resolve_batching", "strategy_setup"]

# SGD hyper-parameters of BRIEF section 2, FinetuneConfig's defaults (they change the numerics, not the cost).
SGD_DEFAULTS = {k: getattr(FinetuneConfig, k) for k in ("lr", "momentum", "weight_decay")}


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
    layers: tuple[str, ...] | None = None  # what ``sparse`` trains (``models.layers`` names)


def strategy_setup(model: nn.Module, strategy: str, layers: tuple[str, ...] | None = None) -> tuple[list[str], bool]:
    """Trainable parameter names and training-mode flag for ``strategy``, from the strategy table."""
    if strategy not in COSTED_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; the device backend costs one of {list(COSTED_STRATEGIES)}")
    return list(trainable_parameters(model, strategy, layers)), STRATEGY_TABLE[strategy].train_mode


def check_strategy_args(model: nn.Module, strategy: str, layers: tuple[str, ...] | None = None,
                        rank: int | None = None, layers_key: str = "layers", rank_key: str = "rank") -> None:
    """Refuse ``layers``/``rank`` that make no sense for ``strategy`` and ``model``, naming the
    option (``layers_key``, ``rank_key``: how the caller calls them) and what is allowed."""
    trains = STRATEGY_TABLE[strategy].trains if strategy in STRATEGY_TABLE else None
    if layers is not None:
        if trains != "layers":
            raise ValueError(f"{layers_key} is for strategy 'sparse' (the layers it trains), not {strategy!r}")
        known = list(weight_layers(model))
        bad = [n for n in layers if n not in known]
        if bad:
            raise ValueError(f"{layers_key}: {', '.join(map(repr, bad))} "
                             f"{'is not a layer' if len(bad) == 1 else 'are not layers'} of "
                             f"{type(model).__name__}; allowed: {', '.join(known)}")
    if rank is not None:
        if trains != "adapters":
            raise ValueError(f"{rank_key} is for strategy 'lora' (the adapters' rank), not {strategy!r}")
        top = max_rank(model) if not has_adapters(model) else None
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1 or (top is not None and rank > top):
            why = (f"{rank_key}={rank!r} is above min(rows, columns) of every adapted weight of "
                   f"{type(model).__name__} (largest: {top})" if isinstance(rank, int) and top is not None
                   and rank > top else f"{rank_key}={rank!r}: an adapter needs a whole rank of at least 1")
            raise ValueError(f"{why}; allowed: 1..{top}" if top else why)


def with_strategy_layers(model: nn.Module, strategy: str, rank: int | None = None) -> nn.Module:
    """``model`` as ``strategy`` trains it: for ``lora``, a copy with adapters of ``rank`` (default:
    ``FinetuneConfig``'s) unless it has them already; otherwise ``model`` itself."""
    if STRATEGY_TABLE[strategy].trains != "adapters" or has_adapters(model):
        return model
    model = copy.deepcopy(model)
    add_adapters(model, FinetuneConfig.lora_rank if rank is None else rank, seed=0)
    return model


def resolve_batching(model: nn.Module, strategy: str, batch_size: int, micro_batch: int | None, accum: int | None):
    """Defaults and validation of (micro_batch, accum) for a strategy.

    The default micro-batch is the table's ``device_micro_batch`` (``edge`` and ``last_layer``: 1,
    exact because their norm layers do not normalise over the batch; ``full``: the whole batch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if strategy not in COSTED_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; the device backend costs one of {list(COSTED_STRATEGIES)}")
    training = STRATEGY_TABLE[strategy].train_mode
    if micro_batch is None:
        micro_batch = STRATEGY_TABLE[strategy].device_micro_batch or batch_size
    accum = (batch_size // micro_batch if micro_batch else None) if accum is None else accum
    if micro_batch < 1 or accum is None or accum < 1:
        raise ValueError(f"micro_batch and accum must be >= 1 (got micro_batch={micro_batch}, accum={accum})")
    if micro_batch * accum != batch_size:
        raise ValueError(
            f"micro_batch * accum must equal batch_size: {micro_batch} * {accum} != {batch_size}; "
            "a step processes batch_size samples as accum micro-batches of micro_batch samples"
        )
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
    layers: tuple[str, ...] | None = None,
    rank: int | None = None,
) -> StepProgram:
    """Trace the training step of ``model`` under ``strategy`` into a :class:`StepProgram`.

    Three steps: resolve the batching and the step's state, trace its phases, then (``remat``)
    apply the exact memory-saving rewrites of ``passes.py`` to every phase. ``layers``: what
    ``sparse`` trains; ``rank``: ``lora``'s adapter rank (a model without adapters gets them)."""
    hp = {**SGD_DEFAULTS, **(hparams or {})}
    if strategy in COSTED_STRATEGIES:
        check_strategy_args(model, strategy, layers, rank)
    model = with_strategy_layers(model, strategy, rank)
    micro_batch, accum = resolve_batching(model, strategy, batch_size, micro_batch, accum)
    trainable, training = strategy_setup(model, strategy, layers)
    model = copy.deepcopy(model)
    model.train(training)
    params, buffers = _param_dicts(model)
    frozen = [n for n in params if n not in trainable]
    x_shape = (micro_batch, int(getattr(model, "in_channels", 1)), int(model.n_chans), int(model.n_times))
    states = _step_states(params, buffers, trainable, frozen, accum, x_shape)
    tracer = _StepTracer(model, trainable, frozen, list(buffers), hp, tracing_mode)
    phases = tracer.phases(states, buffers, accum)
    rematerialized = _optimize(phases) if remat else []
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
        buffers=list(buffers),
        hparams=hp,
        layers=None if layers is None else tuple(layers),
    )


def _step_states(params: dict, buffers: dict, trainable: list[str], frozen: list[str], accum: int,
                 x_shape: tuple) -> dict[str, StateSpec]:
    """Every tensor the phases share, in storage order: weights, frozen weights, norm buffers,
    momentum, accumulated gradients (only when a step has several micro-batches), then the inputs."""
    groups = [("param", "weights", trainable, params), ("param", "frozen_weights", frozen, params),
              ("buffer", "buffers", list(buffers), buffers), ("momentum", "optimizer_state", trainable, params)]
    if accum > 1:
        groups.append(("accum", "accumulated_gradients", trainable, params))
    states: dict[str, StateSpec] = {}
    for prefix, kind, names, tensors in groups:
        for n in names:
            states[f"{prefix}:{n}"] = StateSpec(f"{prefix}:{n}", kind, tuple(tensors[n].shape), tensors[n].dtype)
    states["x"] = StateSpec("x", "input", x_shape, torch.float32)
    states["y"] = StateSpec("y", "input", (x_shape[0],), torch.int64)
    return states


def _example(spec: StateSpec, requires_grad: bool = False) -> torch.Tensor:
    """A zero tensor of ``spec`` to trace with (floating weights may require gradients)."""
    t = torch.zeros(spec.shape, dtype=spec.dtype)
    return t if spec.dtype == torch.int64 else t.requires_grad_(requires_grad)


@dataclass
class _StepTracer:
    """The step's maths over flat lists of tensors (the real model through ``functional_call``,
    cross-entropy, ``autograd.grad``, in-place SGD), traced phase by phase with ``make_fx``."""

    model: nn.Module
    trainable: list[str]
    frozen: list[str]
    buffers: list[str]
    hp: dict
    tracing_mode: str

    def forward_backward(self, tr, fr, bu, x, y, scale):
        """Loss of one micro-batch (times ``scale``) and its gradients w.r.t. the trainable weights."""
        weights = {**dict(zip(self.trainable, tr)), **dict(zip(self.frozen, fr)), **dict(zip(self.buffers, bu))}
        out = functional_call(self.model, weights, (x,))
        loss = F.cross_entropy(out, y)
        if scale != 1.0:
            loss = loss * scale
        grads = torch.autograd.grad(loss, tr)
        return loss, grads

    def sgd(self, tr, grads, moms):
        """SGD with momentum and weight decay written in place, as a device runtime applies it."""
        lr, mom, wd = self.hp["lr"], self.hp["momentum"], self.hp["weight_decay"]
        with torch.no_grad():
            for p, g, m in zip(tr, grads, moms):
                g.add_(p, alpha=wd)  # weight decay, in the gradient buffer
                m.mul_(mom).add_(g)  # momentum
                p.add_(m, alpha=-lr)  # update

    def phases(self, states: dict[str, StateSpec], buffers: dict, accum: int) -> list[Phase]:
        """``step`` alone, or ``micro_step`` repeated ``accum`` times then ``update``."""
        ins = {"tr": [f"param:{n}" for n in self.trainable], "fr": [f"param:{n}" for n in self.frozen],
               "bu": [f"buffer:{n}" for n in self.buffers], "mo": [f"momentum:{n}" for n in self.trainable],
               "ac": [f"accum:{n}" for n in self.trainable] if accum > 1 else []}
        ex = {k: [_example(states[name], k == "tr") for name in names] for k, names in ins.items()}
        ex["bu"] = [buffers[n].clone() for n in self.buffers]
        xy = [_example(states["x"]), _example(states["y"])]
        if accum == 1:
            return [self._whole_step(ins, ex, xy)]
        return self._accumulated_step(ins, ex, xy, accum)

    def _whole_step(self, ins: dict, ex: dict, xy: list) -> Phase:
        """Forward, loss, backward and update of the whole batch in one phase."""

        def step(tr, fr, bu, mo, x, y):
            loss, grads = self.forward_backward(tr, fr, bu, x, y, 1.0)
            grads = list(grads)
            out = (loss, *grads)
            self.sgd(tr, grads, mo)
            return out

        gm = make_fx(step, tracing_mode=self.tracing_mode)(ex["tr"], ex["fr"], ex["bu"], ex["mo"], *xy)
        return _phase("step", gm, 1, ins["tr"] + ins["fr"] + ins["bu"] + ins["mo"] + ["x", "y"])

    def _accumulated_step(self, ins: dict, ex: dict, xy: list, accum: int) -> list[Phase]:
        """Gradients of ``accum`` micro-batches added into a buffer, then one update that zeroes it."""

        def micro_step(tr, fr, bu, ac, x, y):
            loss, grads = self.forward_backward(tr, fr, bu, x, y, 1.0 / accum)
            with torch.no_grad():
                for a, g in zip(ac, grads):
                    a.add_(g)
            return (loss, *grads)

        def update(tr, mo, ac):
            self.sgd(tr, ac, mo)
            with torch.no_grad():
                for a in ac:
                    a.zero_()
            return ()

        gm = make_fx(micro_step, tracing_mode=self.tracing_mode)(ex["tr"], ex["fr"], ex["bu"], ex["ac"], *xy)
        micro = _phase("micro_step", gm, accum, ins["tr"] + ins["fr"] + ins["bu"] + ins["ac"] + ["x", "y"])
        gm2 = make_fx(update, tracing_mode=self.tracing_mode)([t.detach() for t in ex["tr"]], ex["mo"], ex["ac"])
        return [micro, _phase("update", gm2, 1, ins["tr"] + ins["mo"] + ins["ac"], has_loss=False)]


def _optimize(phases: list[Phase]) -> list[str]:
    """The exact memory-saving rewrites of ``passes.py`` on every phase; what was applied."""
    from .passes import optimize_phase

    return [done for ph in phases for done in optimize_phase(ph)]


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
