"""Fine-tune K same-architecture models as one computation.

At batch 8 the host's fine-tuning step is small enough to be bound by per-op dispatch, so K tasks
(subjects or seeds) of one model architecture and strategy train together, two ways:

- ``last_layer`` (:func:`_adapt_classifiers`): the classifiers' parameters are stacked along a leading
  task axis, ``vmap(grad(loss))`` over ``functional_call`` computes every task's gradient in one
  call on its cached backbone features. Bit-exact with K sequential fast-loop calls.
- ``full``, ``edge``, ``bias``, ``sparse`` and ``lora`` (:func:`_adapt_stacked`): the K models become
  one wide model (:mod:`.stacked`: grouped convolutions, per-channel norms, a batched classifier,
  adapters with a task axis), which keeps PyTorch's kernels, the fast temporal convolution and
  BatchNorm's batch statistics per task. A frozen eval-mode prefix of the chain (the layers before
  the first trained one) is computed once per task, as alone, and only the rest runs wide.
  Within 1e-5 relative per tensor of K sequential fast-loop calls after 3 epochs, BatchNorm's
  running statistics included (tests/adaptation/test_adapt_batched.py). Over longer runs
  BatchNorm's batch statistics amplify the float rounding in some tasks, so a few test
  predictions can differ from a task trained alone (how much, on random windows and on the
  default study: ``benchmarks/README.md``, "Batched and stacked groups").

Either way one optimizer updates the stacked tensors; SGD's update is elementwise, so each task
keeps its own momentum and the same cosine learning rate as alone, and each task draws its batch
order from its own seeded generator, exactly as :func:`~biotrain.adaptation.adapt` does. Only the
gradient's float rounding differs from a task trained alone.

Ragged cohorts: tasks are grouped by their number of calibration windows (same count -> the same
steps and batch sizes), each group is one computation, and a group too small to pay (fewer than
8 tasks, 3 for the strategies with a frozen backbone: :func:`min_batched_tasks`) runs the
sequential fast loop. No padding or masking: a padded task would need masked gradients *and*
masked weight decay and momentum on the steps it does not have, for no gain on real cohorts where
most subjects share a session length.

Where it runs: only where :func:`batching_pays` (:data:`BATCHED`), the (model, strategy) pairs
where one computation was measured faster than K sequential fast-loop calls. MI-BMINet's ``full``
and ``edge`` run one model at a time: their step is mostly arithmetic (the 64-tap temporal
convolution), so stacking gains little there; its ``bias`` and ``lora`` skip that convolution's
weight gradient, and stacking them pays (1.4-2x at K=9 and 12), as it does ``sparse`` (1.4-2.7x;
only tasks with the same pick of layers share a group, ``study.groups``). Everything else falls back to one :func:`adapt`
call per task, so callers can always use :func:`adapt_many`. The measured speed-ups per model and
strategy, and why each pair is in or out: ``benchmarks/README.md``, "Batched and stacked groups".
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..models.lora import add_adapters, merge_adapters
from ..strategy_table import STRATEGY_TABLE, trainable_parameters
from .fast_conv import fast_temporal_convs
from .fast_loop import CachedFeatures, frozen_prefix, per_sample_model
from .finetune import AdaptInfo, FinetuneConfig, adapt, schedule_of
from .lean_sgd import LeanSGD
from .precision import after_step, emulated, round_tensors, scaled_loss, store_gradients
from .schedule import set_lr
from .stacked import stack_models, stackable, unstack_into
from .training import as_tensor

# (model class name, strategy) pairs where batching K tasks measured faster than K sequential
# fast-loop calls (benchmarks/results/adapt_batched.md); everything else runs sequentially.
BATCHED = {("EpiDeNet", "last_layer"), ("EpiDeNet", "edge"), ("EpiDeNet", "full"), ("MIBMINet", "last_layer"),
           ("EpiDeNet", "bias"), ("EpiDeNet", "lora"), ("EpiDeNet", "sparse"),
           ("MIBMINet", "bias"), ("MIBMINet", "lora"), ("MIBMINet", "sparse")}
# what a strategy may train for its tasks to run as one wide model (adapters are not stacked)
STACKED_TRAINS = ("all", "affine", "layers", "adapters")
# Smallest group batched: measured to pay at K=8 and 16, not at K=2 (benchmarks/README.md) ...
MIN_BATCHED_TASKS = 8
# ... except where the backbone is frozen in eval mode (no weight gradient of MI-BMINet's temporal
# convolution, a cached frozen prefix): 1.25-1.6x already at K=3 (benchmarks/results/adapt_light.md)
MIN_BATCHED_LIGHT = {"bias": 3, "sparse": 3, "lora": 3}


def min_batched_tasks(strategy: str) -> int:
    """The smallest group of ``strategy``'s tasks that trains faster as one computation."""
    return MIN_BATCHED_LIGHT.get(strategy, MIN_BATCHED_TASKS)


def batching_pays(model: nn.Module | str, strategy: str) -> bool:
    """True where :func:`adapt_many` trains the tasks as one computation (measured to pay)."""
    name = model if isinstance(model, str) else type(model).__name__
    return (name, strategy) in BATCHED


def _check_same_architecture(models: list[nn.Module]) -> None:
    def signature(m):
        return type(m), [(n, tuple(t.shape)) for n, t in m.state_dict().items()]
    first = signature(models[0])
    for i, m in enumerate(models[1:], start=1):
        if signature(m) != first:
            raise ValueError(f"adapt_many needs models of one architecture; model {i} differs from model 0")


def adapt_many(models: list[nn.Module], Xs: list[np.ndarray], ys: list[np.ndarray], strategy: str,
               cfg: FinetuneConfig, seeds: list[int], force: bool = False) -> list[AdaptInfo]:
    """Fine-tune each ``models[k]`` in place on ``Xs[k], ys[k]`` with ``seeds[k]``, like
    ``adapt(models[k], Xs[k], ys[k], strategy, cfg, seeds[k])`` for every k, batching tasks where
    it pays (``force=True``: wherever it is supported, for tests and measurements).

    Groups smaller than :func:`min_batched_tasks` also run sequentially (unless ``force``).
    ``train_seconds`` of a batched task is its group's time divided by the group's size.
    """
    if not (len(models) == len(Xs) == len(ys) == len(seeds)):
        raise ValueError(f"adapt_many: {len(models)} models, {len(Xs)} X, {len(ys)} y, {len(seeds)} seeds")
    if not models:
        return []
    _check_same_architecture(models)
    s = STRATEGY_TABLE.get(strategy)  # unknown names fall through to adapt, which names the choices
    # full, edge, bias: one wide model; edge's micro-batches are one pass only where every layer is per sample
    stacked = (s is not None and s.trains in STACKED_TRAINS and stackable(models[0])
               and (not s.host_micro_batch or per_sample_model(models[0])))
    # last_layer (vmap: fp32 only) or stacked
    supported = s is not None and ((s.trains == "classifier" and not s.train_mode and cfg.precision == "fp32") or stacked)
    if not supported or cfg.host_loop != "fast" or not (force or batching_pays(models[0], strategy)):
        return [adapt(m, X, y, strategy, cfg, s) for m, X, y, s in zip(models, Xs, ys, seeds)]
    if s.host_micro_batch and cfg.batch_size % cfg.micro_batch:
        raise ValueError(f"adapt.batch_size={cfg.batch_size} must be a multiple of adapt.micro_batch={cfg.micro_batch}")
    infos: list[AdaptInfo | None] = [None] * len(models)
    groups = defaultdict(list)
    for k, y in enumerate(ys):
        groups[len(y)].append(k)
    for members in groups.values():
        if len(members) == 1 or (len(members) < min_batched_tasks(strategy) and not force):
            k = members[0]
            infos[k] = adapt(models[k], Xs[k], ys[k], strategy, cfg, seeds[k])
            continue
        train = _adapt_stacked if stacked else _adapt_classifiers
        out = train([models[k] for k in members], [Xs[k] for k in members], [ys[k] for k in members],
                    strategy, cfg, [seeds[k] for k in members])
        for k, info in zip(members, out):
            infos[k] = info
    return infos


def _adapt_stacked(models, Xs, ys, strategy, cfg, seeds) -> list[AdaptInfo]:
    """K tasks training every layer, as one wide model (:mod:`.stacked`): the steps of
    :func:`~biotrain.adaptation.adapt`'s fast loop, each task on its own seeded batch order."""
    start = time.perf_counter()
    K, n = len(models), len(ys[0])
    row = STRATEGY_TABLE[strategy]
    if row.trains == "adapters":  # each task's adapters seeded as adapt() seeds them, merged below
        for m, seed in zip(models, seeds):
            add_adapters(m, cfg.lora_rank, seed)
    wide = stack_models(models)
    trainable = trainable_parameters(wide, strategy, cfg.sparse_layers)  # the wide model keeps the layer names
    for name, p in wide.named_parameters():
        p.requires_grad_(name in trainable)
    opt = LeanSGD(list(trainable.values()), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedules = [schedule_of(n, strategy, cfg, s) for s in seeds]
    labels = torch.stack([torch.from_numpy(np.asarray(y, dtype=np.int64)) for y in ys], dim=1)  # (n, K)
    tasks = torch.arange(K)
    loss_fn, scale = scaled_loss(nn.CrossEntropyLoss(reduction="sum"), cfg.precision)
    steps = 0
    with ExitStack() as contexts:
        for m in [wide, *models]:  # the models compute their own frozen prefixes (below)
            contexts.enter_context(fast_temporal_convs(m))
            contexts.enter_context(emulated(m, cfg.precision))
        forward = _wide_forward(wide, models, Xs, set(trainable), row.train_mode)
        for epochs in zip(*schedules):  # the same n: every task's epoch has the same batch sizes
            wide.train(row.train_mode)
            set_lr(opt, epochs[0].lr)
            for task_batches in zip(*(e.batches for e in epochs)):
                batch = torch.stack(task_batches, dim=1)  # (b, K): task k's windows in column k
                opt.zero_grad(set_to_none=True)
                out = forward(batch)  # (b, K, classes)
                loss = loss_fn(out.reshape(-1, out.shape[-1]), labels[batch, tasks].reshape(-1)) / len(batch)
                loss.backward()  # the sum of the K tasks' losses: slice k of every gradient is task k's
                store_gradients(trainable.values(), cfg.precision, scale)
                opt.step()
                after_step(wide, opt, cfg.precision)
                steps += 1
    unstack_into(wide, models)
    for m in models:
        m.train(row.train_mode)
        if row.trains == "adapters":
            merge_adapters(m)
            round_tensors(m.parameters(), cfg.precision)
    seconds = (time.perf_counter() - start) / K
    return [AdaptInfo(n_calib=n, optimizer_steps=steps, train_seconds=seconds) for _ in models]


def _wide_forward(wide: nn.Module, models: list[nn.Module], Xs: list[np.ndarray], trainable: set[str],
                  train_mode: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The wide model's output for a ``(b, K)`` batch of window indices (task k's in column k).

    With a frozen backbone in eval mode, the layers of the chain before the first trained one are
    the same function all along: each task's model computes their output once per window
    (:class:`~.fast_loop.CachedFeatures`, as the sequential fast loop does) and only the wide
    model's remaining layers run per step, on the tasks' features side by side along the channel
    axis, the layout :mod:`.stacked` gives the wide layers."""
    chain = wide.chain() if hasattr(wide, "chain") else []
    k = 0 if train_mode else frozen_prefix(wide, trainable)
    if 0 < k < len(chain):
        first = chain[k][0]
        features = [CachedFeatures(m, as_tensor(X), m.get_submodule(first)) for m, X in zip(models, Xs)]
        rest = [layer for _, layer in chain[k:]]

        def cached(batch: torch.Tensor) -> torch.Tensor:
            out = torch.cat([f(batch[:, j]) for j, f in enumerate(features)], dim=1)
            for layer in rest:
                out = layer(out)
            return out
        return cached
    stacked = torch.stack([as_tensor(X)[:, 0] for X in Xs], dim=1)  # (n, K, C, T): window i of every task
    tasks = torch.arange(len(models))
    return lambda batch: wide(stacked[batch, tasks])


def _adapt_classifiers(models, Xs, ys, strategy, cfg, seeds) -> list[AdaptInfo]:
    """K ``last_layer`` tasks with the same number of windows: each task's classifier on its own
    frozen backbone's cached features, one vmapped gradient and one SGD step per batch."""
    start = time.perf_counter()
    K, n = len(models), len(ys[0])
    row = STRATEGY_TABLE[strategy]
    head = models[0].classifier  # the module vmap runs
    names = [name for name, _ in head.named_parameters()]
    owned = [dict(m.classifier.named_parameters()) for m in models]
    params = {name: torch.stack([o[name].detach() for o in owned]).requires_grad_(True) for name in names}
    buffers = {name: torch.stack([dict(m.classifier.named_buffers())[name] for m in models])
               for name, _ in head.named_buffers()}
    opt = LeanSGD(list(params.values()), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedules = [schedule_of(n, strategy, cfg, s) for s in seeds]
    labels = torch.stack([torch.from_numpy(np.asarray(y, dtype=np.int64)) for y in ys])  # (K, n)
    features = [CachedFeatures(m, as_tensor(X)) for m, X in zip(models, Xs)]

    def inputs(batches):  # (K, b, F): each task's own frozen backbone's classifier input
        return torch.stack([f(b) for f, b in zip(features, batches)])

    def loss(p, b, x, y):
        return nn.functional.cross_entropy(functional_call(head, (p, b), (x,)), y, reduction="sum") / len(y)

    task_grads = vmap(grad(loss))
    head.train(row.train_mode)
    steps = 0
    for epochs in zip(*schedules):
        set_lr(opt, epochs[0].lr)
        for task_batches in zip(*(e.batches for e in epochs)):
            batches = torch.stack(task_batches)  # (K, b)
            grads = task_grads(params, buffers, inputs(batches), labels.gather(1, batches))
            for name, p in params.items():
                p.grad = grads[name]
            opt.step()
            steps += 1
    with torch.no_grad():
        for k, (m, o) in enumerate(zip(models, owned)):
            for name in names:
                o[name].copy_(params[name][k])
            m.train(row.train_mode)
            for p in m.parameters():
                p.requires_grad_(True)
    seconds = (time.perf_counter() - start) / K
    return [AdaptInfo(n_calib=n, optimizer_steps=steps, train_seconds=seconds) for _ in models]
