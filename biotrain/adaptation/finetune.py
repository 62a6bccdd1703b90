"""The host fine-tuning loop: one strategy of ``biotrain.strategy_table`` (what trains, train mode,
batching) on a subject's calibration windows; the table is the one place strategies are defined."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..models.lora import add_adapters, merge_adapters
from ..strategy_table import NORM_OF, STRATEGY_NAMES, STRATEGY_TABLE, has_batchnorm, trainable_parameters
from .fast_conv import fast_temporal_convs
from .fast_loop import HOST_LOOPS, fast_gradients
from .lean_sgd import LeanSGD
from .precision import after_step, check_precision, emulated, round_tensors, scaled_loss, store_gradients
from .schedule import BatchSchedule, set_lr
from .training import as_tensor

__all__ = ["NORM_OF", "STRATEGY_NAMES", "AdaptInfo", "FinetuneConfig", "adapt", "schedule_of"]


@dataclass(frozen=True)
class FinetuneConfig:
    """BRIEF: SGD momentum 0.9, lr 5e-3, weight decay 1e-3, cosine annealing, 30 epochs, batch 8."""

    epochs: int = 30
    lr: float = 5e-3
    momentum: float = 0.9
    weight_decay: float = 1e-3
    batch_size: int = 8
    micro_batch: int = 1  # edge only: samples per forward/backward; batch_size must be a multiple
    host_loop: str = "fast"  # "reference": the plain loop, edge as micro-batches (fast_loop.py says what differs)
    sparse_budget_kb: float = 160.0  # sparse: peak L2 of the step the chosen layers must fit (kB = 1000 B)
    lora_rank: int = 4  # lora: the adapters' rank (per layer at most min(rows, columns) of its weight)
    sparse_layers: tuple[str, ...] | None = None  # sparse: the layers picked for this job under the budget
    precision: str = "fp32"  # fp32, or bf16/fp16 emulated as the device stores them (precision.py)


@dataclass
class AdaptInfo:
    n_calib: int
    optimizer_steps: int
    train_seconds: float


def _trainable(model: nn.Module, strategy: str, cfg: FinetuneConfig) -> dict[str, nn.Parameter]:
    """The table's trainable parameters of ``strategy``; only they keep ``requires_grad``."""
    trainable = trainable_parameters(model, strategy, cfg.sparse_layers)
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)
    return trainable


def schedule_of(n: int, strategy: str, cfg: FinetuneConfig, seed: int) -> BatchSchedule:
    """The batch schedule every fine-tuning loop of ``strategy`` follows (host, grouped, device), at
    the strategy's learning rate (``adapt.lr`` times its ``lr_scale``)."""
    s = STRATEGY_TABLE[strategy]
    return BatchSchedule(n, cfg.batch_size, cfg.epochs, cfg.lr * s.lr_scale, seed,
                         skip_single=s.batch_statistics)


def adapt(model: nn.Module, X: np.ndarray, y: np.ndarray, strategy: str, cfg: FinetuneConfig, seed: int) -> AdaptInfo:
    """Fine-tune ``model`` in place on the calibration windows ``X, y`` with ``strategy``."""
    if strategy not in STRATEGY_TABLE:
        raise ValueError(f"strategy {strategy!r} is not supported; use one of {list(STRATEGY_NAMES)}")
    s = STRATEGY_TABLE[strategy]
    if s.norm == "group" and has_batchnorm(model):
        raise ValueError(f"strategy {strategy!r} needs a GroupNorm model (micro-batch 1 breaks BatchNorm)")
    if s.host_micro_batch and cfg.batch_size % cfg.micro_batch:
        raise ValueError(f"adapt.batch_size={cfg.batch_size} must be a multiple of adapt.micro_batch={cfg.micro_batch}")
    if cfg.host_loop not in HOST_LOOPS:
        raise ValueError(f"host_loop={cfg.host_loop!r} is not supported; use one of {list(HOST_LOOPS)}")
    if s.trains == "nothing":
        return AdaptInfo(n_calib=len(y), optimizer_steps=0, train_seconds=0.0)
    if s.trains == "layers" and cfg.sparse_layers is None:
        raise ValueError(f"strategy {strategy!r} needs FinetuneConfig.sparse_layers (picked under adapt.sparse.budget_kb)")

    check_precision(cfg.precision)
    start = time.perf_counter()
    if s.trains == "adapters":
        add_adapters(model, cfg.lora_rank, seed)  # merged back into the weights below
    trainable = _trainable(model, strategy, cfg)
    fast = cfg.host_loop == "fast"
    sgd = LeanSGD if fast else torch.optim.SGD  # the same update, bit for bit (lean_sgd.py)
    opt = sgd(list(trainable.values()), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loss_fn, scale = scaled_loss(nn.CrossEntropyLoss(reduction="sum"), cfg.precision)
    xs, ys = as_tensor(X), torch.from_numpy(np.asarray(y, dtype=np.int64))
    micro = cfg.micro_batch if s.host_micro_batch else cfg.batch_size
    fast_step = fast_gradients(model, xs, ys, strategy, loss_fn, set(trainable)) if fast else None
    steps = 0
    # fast: long depthwise convolutions take their gradients as forward convolutions (fast_conv.py);
    # bf16/fp16: every stored value rounded (precision.py)
    with fast_temporal_convs(model) if fast else nullcontext(), emulated(model, cfg.precision):
        for epoch in schedule_of(len(ys), strategy, cfg, seed):
            # last_layer keeps the frozen backbone's BatchNorm statistics (eval mode);
            # full uses batch statistics; edge's GroupNorm has none.
            model.train(s.train_mode)
            set_lr(opt, epoch.lr)
            for batch in epoch.batches:
                opt.zero_grad(set_to_none=True)
                if fast_step is not None:
                    fast_step(batch)
                else:
                    for j in range(0, len(batch), micro):  # host_micro_batch: gradients accumulate
                        idx = batch[j:j + micro]
                        loss = loss_fn(model(xs[idx]), ys[idx]) / len(batch)
                        loss.backward()
                        store_gradients(trainable.values(), cfg.precision)  # the 16-bit accumulator
                store_gradients(trainable.values(), cfg.precision, scale)
                opt.step()
                after_step(model, opt, cfg.precision)
                steps += 1
    if s.trains == "adapters":
        merge_adapters(model)  # inference runs the plain model: nothing extra
        round_tensors(model.parameters(), cfg.precision)  # the merged weights, stored as the rest
    for p in model.parameters():
        p.requires_grad_(True)
    return AdaptInfo(n_calib=len(y), optimizer_steps=steps, train_seconds=time.perf_counter() - start)
