"""Fine-tuning of one subject executed by the exported device program instead of PyTorch.

Same calibration windows, same batch schedule as the host loop (``adaptation.schedule``: seeded
order, batches, cosine learning rate per epoch, given to the program as a runtime input), SGD with momentum and weight decay; the program's
final weights and norm buffers are loaded back into the model, whose test accuracy the caller
then measures on the host.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...adaptation.finetune import AdaptInfo, FinetuneConfig, schedule_of
from ...adaptation.precision import round_tensors
from ...models.lora import add_adapters, merge_adapters
from ...strategy_table import STRATEGY_NAMES, STRATEGY_TABLE
from .project import export_project, read_state
from .runner import build, execute

EXECUTE_TARGETS = ("host", "qemu", "gap9-board")
PROGRAM_TARGETS = {"host": "host", "qemu": "qemu", "gap9-board": "gap9-board"}


def adapt_on_device(model: nn.Module, X: np.ndarray, y: np.ndarray, strategy: str, cfg: FinetuneConfig, seed: int,
                    target: str = "qemu", workdir: str | Path | None = None) -> AdaptInfo:
    """Fine-tune ``model`` in place by running the exported program on ``target``.

    ``sparse`` trains ``cfg.sparse_layers``; ``lora`` gets adapters of ``cfg.lora_rank`` seeded with
    ``seed`` (as ``adaptation.finetune.adapt`` does), the program trains them, and they are merged
    into the weights afterwards. ``cfg.precision`` bf16/fp16: the 16-bit program (``store16.h``), whose
    weights are the host emulation's up to the rounding points the two do not share."""
    if strategy not in STRATEGY_NAMES:
        raise ValueError(f"strategy {strategy!r} is not supported; use one of {list(STRATEGY_NAMES)}")
    if target not in EXECUTE_TARGETS:
        raise ValueError(f"device.execute={target!r}; use one of {list(EXECUTE_TARGETS)}")
    if strategy == "none":
        return AdaptInfo(n_calib=len(y), optimizer_steps=0, train_seconds=0.0)
    s = STRATEGY_TABLE[strategy]
    if s.trains == "layers" and cfg.sparse_layers is None:
        raise ValueError(f"strategy {strategy!r} needs FinetuneConfig.sparse_layers (picked under adapt.sparse.budget_kb)")
    start = time.perf_counter()
    schedule = schedule_of(len(y), strategy, cfg, seed).steps()
    micro = cfg.micro_batch if s.host_micro_batch else None  # None: the device's default (the table's)
    if s.host_micro_batch and any(len(b) % cfg.micro_batch for _, b in schedule):
        raise ValueError(f"adapt.micro_batch={cfg.micro_batch}: a partial batch of the calibration set is not a "
                         "multiple of it; the device program needs whole micro-batches")
    extra = sorted({len(b) for _, b in schedule} - {cfg.batch_size}) if s.batch_statistics else None
    hp = {"lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay}
    if s.trains == "adapters":  # seeded as the host loop seeds them; merged into the weights below
        add_adapters(model, cfg.lora_rank, seed)
    layers = cfg.sparse_layers if s.trains == "layers" else None
    zeros = {f"momentum:{n}": torch.zeros_like(p) for n, p in model.named_parameters()}
    with tempfile.TemporaryDirectory(prefix="biotrain-device-", dir=workdir) as tmp:
        out = Path(tmp) / "project"
        meta = export_project(out, model, strategy, batch_size=cfg.batch_size, micro_batch=micro, hparams=hp,
                              state=zeros, samples=(np.asarray(X, np.float32), np.asarray(y, np.int64)),
                              schedule=schedule, extra_batch_sizes=extra, layers=layers, precision=cfg.precision)
        build(out, PROGRAM_TARGETS[target])
        execute(out, PROGRAM_TARGETS[target])
        final = read_state(out / "final_state.bin", meta["states"])
        losses = np.fromfile(out / "losses.bin", dtype=np.float32)
    if not np.all(np.isfinite(losses)):
        raise RuntimeError(f"the device program's loss is not finite on {target}")
    params, bufs = dict(model.named_parameters()), dict(model.named_buffers())
    with torch.no_grad():
        for name, value in final.items():
            kind, _, key = name.partition(":")
            if kind == "param":
                params[key].copy_(value)
            elif kind == "buffer":
                bufs[key].copy_(value)
    if s.trains == "adapters":
        merge_adapters(model)  # W + B @ A folded in: inference runs the plain model
        round_tensors(model.parameters(), cfg.precision)  # the merged weights, stored as the rest
    return AdaptInfo(n_calib=len(y), optimizer_steps=len(schedule), train_seconds=time.perf_counter() - start)
