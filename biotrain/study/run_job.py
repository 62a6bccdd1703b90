"""One adaptation job, start to finish: its data and fold, base model, chip costs, the day-1
scenario, the longitudinal chain from the day-1 model, and their MLflow child runs.

Pure library code (no Prefect): the flow wraps :func:`run_job` in a task, and a test can call
it directly. Windows and base models are read once per worker process and shared by its jobs.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
import torch

from ..adaptation.scenarios import run_day1, run_longitudinal
from ..adaptation.finetune import adapt
from ..data.store import load_windows
from ..device.study import device_row_fields, step_costs
from ..models.checkpoint import load_checkpoint
from ..strategy_table import STRATEGY_TABLE
from .config import AdaptSettings, DeviceConfig
from .jobs import Job
from .records import ChildRuns, now_ms


@lru_cache(maxsize=4)
def _cohort(windows_path: str, splits_path: str, data_digest: str = ""):
    """Windows and folds of one modality, read once per worker process (and again if they change)."""
    w = load_windows(windows_path)
    with open(splits_path) as fh:
        folds = {f["subject"]: f for f in json.load(fh)["folds"]}
    return w, folds


@lru_cache(maxsize=32)
def _pretrained(path: str, digest: str = ""):
    """A base model read once per worker process (and again if its file changes); jobs adapt copies."""
    return load_checkpoint(path)


def limit_calibration(fold: dict, size: int | None) -> dict:
    """Only the first ``size`` calibration windows (in time order) of every session adapt."""
    if not size:
        return fold
    cut = lambda part: {**part, "calib": part["calib"][:size]}  # noqa: E731
    return {**fold, "day1": cut(fold["day1"]), "longitudinal": [cut(p) for p in fold["longitudinal"]]}


def chip_costs(spec: dict, strategy: str, finetune, device: DeviceConfig | None) -> dict:
    """Chip cost of this job's training step (``{}`` for ``none`` or without a device).

    ``adapt.micro_batch`` applies where the strategy micro-batches (``edge``); the others take
    the strategy table's device batching. ``sparse`` is costed with this job's layers
    (``finetune.sparse_layers``), ``lora`` with its rank, a 16-bit run in its precision."""
    if device is None:
        return {}
    s = STRATEGY_TABLE[strategy]
    micro = finetune.micro_batch if s.host_micro_batch else None
    layers = finetune.sparse_layers if s.trains == "layers" else None  # this job's pick (adapt.sparse)
    rank = finetune.lora_rank if s.trains == "adapters" else None
    return step_costs(spec, strategy, finetune.batch_size, micro, device.backend, device.constants, device.program,
                      layers=layers, rank=rank, precision=finetune.precision)


def executor(job: Job, device: DeviceConfig | None):
    """Where this job's fine-tuning runs: ``("host", PyTorch)`` or the exported device program."""
    target = device.target_for(job.subject, job.strategy) if device else "host"
    if target == "host":
        return "host", adapt
    from ..device.export.adapt import adapt_on_device  # only where a device executes

    return f"device-{target}", partial(adapt_on_device, target=target)


@dataclass(frozen=True)
class JobInputs:
    """What a job adapts: its windows, fold (calibration-limited), base model, chip costs and row context."""

    X: np.ndarray
    y: np.ndarray
    fold: dict
    base: torch.nn.Module
    costs: dict
    context: dict


def load_inputs(job: Job, settings: AdaptSettings, executed_on: str) -> JobInputs:
    """A job's inputs, read once per worker process and shared by its jobs (the base model is not copied)."""
    w, folds = _cohort(job.windows, job.splits, job.data_digest)
    base, spec = _pretrained(job.pretrained, job.inputs_digest)
    return JobInputs(w.X, w.y, limit_calibration(folds[job.subject], job.calib_size), base,
                     chip_costs(spec, job.strategy, job.finetune(settings.finetune), settings.device),
                     {**job.context(), "executed_on": executed_on})


def with_task_fields(rows: list[dict], task_seconds: float, costs: dict, finetune, settings: AdaptSettings) -> list[dict]:
    """The task's share of time on every row, and the device columns (empty for ``none``) with a device."""
    for r in rows:
        r["task_seconds"] = task_seconds
    if settings.device is None:
        return rows
    return [{**r, **device_row_fields(costs, r["n_calib"], finetune.epochs)} for r in rows]


def record_failure(runs: ChildRuns, job: Job, scenario: str, sessions: list[str], costs: dict, begun: int,
                   executed_on: str, err: BaseException) -> None:
    """A FAILED child run for the scenario ``err`` happened in; a tracking error does not hide ``err``."""
    with contextlib.suppress(Exception):
        runs.record(job, scenario, sessions, [], costs, begun, executed_on, error=err)


def run_job(job: Job, settings: AdaptSettings, runs: ChildRuns) -> list[dict]:
    """Day-1 adaptation, then the longitudinal chain from the day-1 model; one row per session.

    The chain needs the day-1 model, so both scenarios run here: the model never crosses
    processes. Each scenario is recorded as its own child run when it is done; a failure is
    recorded as a FAILED child of the scenario it happened in, then raised.
    """
    start = time.perf_counter()
    torch.set_num_threads(settings.torch_threads)
    finetune = job.finetune(settings.finetune)
    executed_on, adapt_fn = executor(job, settings.device)
    scenario, sessions, begun, costs = "day1", [], now_ms(), {}
    try:
        data = load_inputs(job, settings, executed_on)
        fold, costs = data.fold, data.costs

        sessions, work = [fold["day1"]["session"]], time.perf_counter()
        row, model = run_day1(data.base, data.X, data.y, fold, job.strategy, finetune, job.seed, data.context, adapt_fn)
        row["work_seconds"] = time.perf_counter() - work
        runs.record(job, scenario, sessions, [row], costs, begun, executed_on)
        rows = [row]

        if job.longitudinal:
            scenario, begun = "longitudinal", now_ms()
            sessions, work = [s["session"] for s in fold["longitudinal"]], time.perf_counter()
            chain = run_longitudinal(model, data.X, data.y, fold, job.strategy, finetune, job.seed, data.context,
                                     adapt_fn)
            each = (time.perf_counter() - work) / len(chain)  # shared evenly by the chain's sessions
            for r in chain:
                r["work_seconds"] = each
            runs.record(job, scenario, sessions, chain, costs, begun, executed_on)
            rows += chain
    except Exception as err:
        record_failure(runs, job, scenario, sessions, costs, begun, executed_on, err)
        raise
    return with_task_fields(rows, (time.perf_counter() - start) / len(rows), costs, finetune, settings)
