"""``adapt_cohort``: every adaptation task of a study as a Prefect flow, tracked in MLflow.

One task per job, i.e. per (modality, subject, strategy, seed, grid point): the day-1
adaptation, then the longitudinal chain through the later sessions that starts from the day-1
model. Each scenario is an MLflow child run of the flow's parent run. The task runner comes
from params (threads, Dask or Ray; see ``flows.runners``); with no Prefect server configured,
Prefect starts an ephemeral one. Tasks are cached on their inputs and source
with persisted results, and the MLflow parent run is resumed by key, so an interrupted run
picks up where it stopped (see ``adapt_cohort``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from functools import lru_cache, partial

import torch
from prefect import flow, task
from prefect.context import TaskRunContext
from prefect.exceptions import ExternalSignal, TerminationSignal
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.futures import as_completed
from tqdm import tqdm

from biotrain.adaptation.scenarios import run_day1, run_longitudinal
from biotrain.adaptation.plan import resume_key
from biotrain.adaptation.strategies import FinetuneConfig, adapt
from biotrain.data.store import load_windows
from biotrain.device.study import device_row_fields, step_costs
from biotrain.models.checkpoint import load_checkpoint
from biotrain.tracking import Tracker, tracker_for
from flows.runners import make_task_runner, shared_prefect_api


@lru_cache(maxsize=4)
def _cohort(windows_path: str, splits_path: str, data_digest: str = ""):
    """Windows and folds of one modality, read once per worker process (and again if they change)."""
    w = load_windows(windows_path)
    with open(splits_path) as fh:
        folds = {f["subject"]: f for f in json.load(fh)["folds"]}
    return w, folds


FINETUNE_KEYS = ("epochs", "lr", "momentum", "weight_decay", "batch_size", "micro_batch")


def _context(job: dict) -> dict:
    context = {k: job[k] for k in ("dataset", "modality", "model", "subject", "strategy", "seed")}
    return {**context, **{k: v for k, v in job.get("grid", {}).items() if k not in context}}


def _tags(job: dict, scenario: str, sessions: list[str]) -> dict:
    return {**_context(job), "scenario": scenario, "session": ",".join(sessions)}


def _finetune(job: dict, settings: dict) -> dict:
    """The fine-tuning settings of this job: the study's, overridden by its sweep grid point."""
    return {**settings["finetune"], **{k: v for k, v in job.get("grid", {}).items() if k in FINETUNE_KEYS}}


def _params(job: dict, settings: dict) -> dict:
    return {**_finetune(job, settings), **{f"grid.{k}": v for k, v in job.get("grid", {}).items()}}


def _limit(fold: dict, job: dict) -> dict:
    """A sweep's ``calib_size``: only the first N calibration windows (in time order) adapt."""
    size = job.get("grid", {}).get("calib_size")
    if not size:
        return fold
    cut = lambda part: {**part, "calib": part["calib"][: int(size)]}  # noqa: E731
    return {**fold, "day1": cut(fold["day1"]), "longitudinal": [cut(p) for p in fold["longitudinal"]]}


def _device(job: dict, spec: dict, settings: dict) -> dict:
    """Chip cost of this task's training step (``{}`` for ``none``), from the configured backend."""
    device = settings.get("device")
    if not device:
        return {}
    finetune = _finetune(job, settings)
    micro = finetune["micro_batch"] if job["strategy"] == "edge" else None
    return step_costs(spec, job["strategy"], finetune["batch_size"], micro, device["backend"], device["constants"])


def _with_device(rows: list[dict], costs: dict, job: dict, settings: dict) -> list[dict]:
    if not settings.get("device"):
        return rows
    return [{**r, **device_row_fields(costs, r["n_calib"], _finetune(job, settings)["epochs"])} for r in rows]


def _executor(job: dict, settings: dict):
    """Where this job's fine-tuning runs: ("host", PyTorch) or the exported device program on
    ``device.execute`` (qemu, host C build, gap9-board) for the subjects in ``device.execute_subjects``."""
    device = settings.get("device") or {}
    where = device.get("execute", "host") or "host"
    subjects = device.get("execute_subjects")
    if where == "host" or job["strategy"] == "none" or (subjects is not None and job["subject"] not in subjects):
        return "host", adapt
    from biotrain.device.export.adapt import adapt_on_device  # only where a device executes

    return f"device-{where}", partial(adapt_on_device, target=where)


def _metrics(row: dict) -> dict:
    return {"acc_before": row["acc_before"], "acc_after": row["acc_after"], "gain": row["acc_after"] - row["acc_before"],
            "n_calib": row["n_calib"], "n_test": row["n_test"], "host_train_seconds": row["train_seconds"]}


def _device_tracking(costs: dict) -> tuple[dict, dict]:
    """Chip costs as (tags, metrics) of a child run."""
    if not costs:
        return {}, {}
    tags = {"fits_on_chip": costs["fits_on_chip"], "device_message": costs.get("message", "")}
    metrics = {f"device_{k}": float(v) for k, v in costs.items()
               if k != "message" and v is not None and not isinstance(v, str)}
    return tags, metrics


def _record(job: dict, settings: dict, parent: dict, scenario: str, sessions: list[str], rows: list[dict],
            costs: dict, start_ms: int, error: BaseException | None = None) -> None:
    """The MLflow child run of one scenario of a job: FINISHED with its metrics, or FAILED with the error."""
    tracker = tracker_for(settings["tracking_uri"], settings["experiment"], parent["experiment_id"])
    device_tags, device_metrics = _device_tracking(costs)
    steps = [_metrics(row) for row in rows]
    if steps:
        steps[0].update(device_metrics)
    tags = {**_tags(job, scenario, sessions), "executed_on": _executor(job, settings)[0], **device_tags, **({"error": f"{type(error).__name__}: {error}"[:500]} if error else {})}
    name = f"{job['modality']}-s{job['subject']}-{scenario}-{job['strategy']}-seed{job['seed']}"
    tracker.record_run(name, parent["run_id"], resume_key([job], {"scenario": scenario}), tags=tags,
                       params=_params(job, settings), steps=steps, start_ms=start_ms,
                       status="FAILED" if error else "FINISHED", replace=parent["earlier_attempts"])


@lru_cache(maxsize=32)
def _pretrained(path: str, digest: str = ""):
    """A base model read once per worker process (and again if its file changes); tasks adapt copies."""
    return load_checkpoint(path)


def _now_ms() -> int:
    return int(time.time() * 1000)


# Cached on inputs (the job, with a digest of its input files; settings; the parent run) and on
# the task's source, with results persisted: rerunning an interrupted flow redoes only the tasks
# that did not finish. Whether the parent run was resumed changes how the task records its
# MLflow runs, not its result, so it is left out of the key.
CACHE = (INPUTS - "parent_resumed") + TASK_SOURCE


@task(name="adapt", cache_policy=CACHE, persist_result=True)
def adapt_job(job: dict, settings: dict, parent: dict, parent_resumed: bool = False) -> dict:
    """One job: day-1 adaptation, then the longitudinal chain from the day-1 model.

    The chain needs the day-1 model, so both scenarios run in one task: the model never crosses
    processes, and the per-task cost of orchestration is paid once per subject, strategy and
    seed. Each scenario is its own MLflow child run, recorded when it is done.
    """
    start = time.perf_counter()
    # a resumed parent or a retry may find child runs an earlier attempt recorded: replace those
    attempt = TaskRunContext.get()
    retried = attempt is not None and attempt.task_run.run_count > 1
    parent = {**parent, "earlier_attempts": parent_resumed or retried}
    torch.set_num_threads(settings["torch_threads"])
    scenario, sessions, begun, costs = "day1", [], _now_ms(), {}
    try:
        w, folds = _cohort(job["windows"], job["splits"], job.get("data_digest", ""))
        fold = _limit(folds[job["subject"]], job)
        base, spec = _pretrained(job["pretrained"], job.get("inputs_digest", ""))
        costs = _device(job, spec, settings)
        cfg = FinetuneConfig(**_finetune(job, settings))
        executed_on, adapt_fn = _executor(job, settings)
        context = {**_context(job), "executed_on": executed_on}

        sessions, work = [fold["day1"]["session"]], time.perf_counter()
        row, model = run_day1(base, w.X, w.y, fold, job["strategy"], cfg, job["seed"], context, adapt_fn)
        row["work_seconds"] = time.perf_counter() - work
        _record(job, settings, parent, scenario, sessions, [row], costs, begun)
        rows = [row]

        if job["longitudinal"]:
            scenario, begun = "longitudinal", _now_ms()
            sessions, work = [s["session"] for s in fold["longitudinal"]], time.perf_counter()
            chain = run_longitudinal(model, w.X, w.y, fold, job["strategy"], cfg, job["seed"], context, adapt_fn)
            each = (time.perf_counter() - work) / len(chain)  # shared evenly by the chain's sessions
            for r in chain:
                r["work_seconds"] = each
            _record(job, settings, parent, scenario, sessions, chain, costs, begun)
            rows += chain
    except Exception as err:
        with contextlib.suppress(Exception):  # the task's own error matters more than a tracking one
            _record(job, settings, parent, scenario, sessions, [], costs, begun, error=err)
        raise
    each = (time.perf_counter() - start) / len(rows)
    for r in rows:
        r["task_seconds"] = each
    return {"rows": _with_device(rows, costs, job, settings)}


@flow(name="adapt_cohort", log_prints=True)
def adapt_cohort(jobs: list[dict], settings: dict, run_name: str = "adapt_cohort") -> dict:
    """Run every job; return all result rows (one per subject, session, scenario, strategy, seed)
    and the MLflow parent run's id (``{"rows": [...], "run_id": ...}``).

    The MLflow parent run is keyed by the jobs and settings: if a run with the same key was
    interrupted, it is resumed (its stranded RUNNING children are marked FAILED) and the
    tasks that had finished come back from Prefect's cache instead of running again.
    """
    torch.set_num_threads(settings["torch_threads"])
    tracker = Tracker(settings["tracking_uri"], settings["experiment"])
    datasets = sorted({j["dataset"] for j in jobs})
    run_id, resumed = tracker.resume_or_start(
        resume_key(jobs, settings), f"{run_name}-{len(jobs)}-jobs",
        tags={"dataset": ",".join(datasets), "modality": ",".join(sorted({j["modality"] for j in jobs})), "kind": "flow"},
        params={**settings["finetune"], "n_jobs": len(jobs), "strategies": ",".join(dict.fromkeys(j["strategy"] for j in jobs)),
                "seeds": ",".join(str(s) for s in dict.fromkeys(j["seed"] for j in jobs))},
    )
    parent = {"run_id": run_id, "experiment_id": tracker.experiment_id}
    job_task = adapt_job.with_options(retries=settings["retries"])
    try:
        futures = [job_task.submit(job, settings, parent, resumed) for job in jobs]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="adaptation tasks", unit="task"):
            fut.result()  # raise early if a task failed for good
        rows = [row for fut in futures for row in fut.result()["rows"]]
    except BaseException as err:
        # Ctrl-C or SIGTERM (stages turn it into KeyboardInterrupt): KILLED, as MLflow names it
        stopped = isinstance(err, (KeyboardInterrupt, SystemExit, ExternalSignal))  # Prefect's own for SIGTERM
        tracker.stop_run(run_id, "KILLED" if stopped else "FAILED")
        raise
    tracker.log_metrics(run_id, {"n_tasks": len(futures), "n_rows": len(rows)})
    tracker.end_run(run_id, "FINISHED")
    return {"rows": rows, "run_id": run_id}


def run_adapt_cohort(jobs: list[dict], settings: dict, runner: str = "threads", workers: int = 2,
                     run_name: str = "adapt_cohort", address: str | None = None, with_run_id: bool = False):
    """Entry point for stages and tests: the flow with the runner chosen in params.

    ``run_name`` names the Prefect flow run and the MLflow parent run (``<run_name>-<n>-jobs``).
    Returns the result rows, or ``(rows, mlflow parent run id)`` with ``with_run_id``.
    """
    with shared_prefect_api(runner) as api_url:
        task_runner = make_task_runner(runner, workers, address, api_url)
        try:
            out = adapt_cohort.with_options(task_runner=task_runner, flow_run_name=run_name)(jobs, settings, run_name)
        except TerminationSignal as err:  # Prefect's form of SIGTERM: callers see it as Ctrl-C
            raise KeyboardInterrupt(f"stopped by {signal.Signals(err.signal).name}") from None
    return (out["rows"], out["run_id"]) if with_run_id else out["rows"]
