"""``adapt_cohort``: every adaptation task of a study as a Prefect flow, tracked in MLflow.

One task per (modality, subject, scenario, strategy, seed). A subject's longitudinal task
depends on its day-1 task (it starts from the day-1 adapted model) and chains the later
sessions inside. The task runner comes from params (threads, Dask or Ray); with no Prefect
server configured, Prefect starts an ephemeral one. Tasks are cached on their inputs and source
with persisted results, and the MLflow parent run is resumed by key, so an interrupted run
picks up where it stopped (see ``adapt_cohort``).
"""

from __future__ import annotations

import json
import time
from functools import lru_cache

import torch
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from tqdm import tqdm

from biotrain.adaptation.scenarios import run_day1, run_longitudinal
from biotrain.adaptation.plan import resume_key
from biotrain.adaptation.strategies import FinetuneConfig
from biotrain.data.store import load_windows
from biotrain.device.study import device_row_fields, step_costs
from biotrain.models.checkpoint import load_checkpoint, model_from_bytes, state_to_bytes
from biotrain.tracking import Tracker


@lru_cache(maxsize=4)
def _cohort(windows_path: str, splits_path: str, digest: str = ""):
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


def _log_device(tracker: Tracker, run_id: str, costs: dict) -> None:
    if costs:
        tracker.set_tags(run_id, {"fits_on_chip": costs["fits_on_chip"], "device_message": costs.get("message", "")})
        tracker.log_metrics(run_id, {f"device_{k}": float(v) for k, v in costs.items()
                                     if k != "message" and v is not None and not isinstance(v, str)})


def _log(tracker: Tracker, run_id: str, rows: list[dict]) -> None:
    for step, row in enumerate(rows):
        tracker.log_metrics(run_id, {
            "acc_before": row["acc_before"], "acc_after": row["acc_after"],
            "gain": row["acc_after"] - row["acc_before"], "n_calib": row["n_calib"],
            "n_test": row["n_test"], "host_train_seconds": row["train_seconds"],
        }, step=step)


# Cached on inputs (the job, with a digest of its input files; settings; the parent run) and
# on the task's source, with results persisted: rerunning an interrupted flow redoes only the
# tasks that did not finish.
CACHE = INPUTS + TASK_SOURCE


@task(name="adapt-day1", cache_policy=CACHE, persist_result=True)
def adapt_day1(job: dict, settings: dict, parent_run_id: str) -> dict:
    start = time.perf_counter()
    torch.set_num_threads(settings["torch_threads"])
    w, folds = _cohort(job["windows"], job["splits"], job.get("inputs_digest", ""))
    fold = _limit(folds[job["subject"]], job)
    base, spec = load_checkpoint(job["pretrained"])
    tracker = Tracker(settings["tracking_uri"], settings["experiment"])
    name = f"{job['modality']}-s{job['subject']}-day1-{job['strategy']}-seed{job['seed']}"
    with tracker.run(name, _tags(job, "day1", [fold["day1"]["session"]]), _params(job, settings), parent_run_id,
                     task_key=resume_key([job], {"scenario": "day1"})) as run_id:
        work = time.perf_counter()
        row, model = run_day1(base, w.X, w.y, fold, job["strategy"], FinetuneConfig(**_finetune(job, settings)),
                              job["seed"], _context(job))
        row["work_seconds"] = time.perf_counter() - work
        _log(tracker, run_id, [row])
        costs = _device(job, spec, settings)
        _log_device(tracker, run_id, costs)
    row["task_seconds"] = time.perf_counter() - start
    return {"rows": _with_device([row], costs, job, settings), "model": state_to_bytes(spec, model.state_dict()), "spec": spec}


@task(name="adapt-longitudinal", cache_policy=CACHE, persist_result=True)
def adapt_longitudinal(job: dict, day1: dict, settings: dict, parent_run_id: str) -> dict:
    start = time.perf_counter()
    torch.set_num_threads(settings["torch_threads"])
    w, folds = _cohort(job["windows"], job["splits"], job.get("inputs_digest", ""))
    fold = _limit(folds[job["subject"]], job)
    tracker = Tracker(settings["tracking_uri"], settings["experiment"])
    sessions = [s["session"] for s in fold["longitudinal"]]
    name = f"{job['modality']}-s{job['subject']}-longitudinal-{job['strategy']}-seed{job['seed']}"
    with tracker.run(name, _tags(job, "longitudinal", sessions), _params(job, settings), parent_run_id,
                     task_key=resume_key([job], {"scenario": "longitudinal"})) as run_id:
        work = time.perf_counter()
        rows = run_longitudinal(model_from_bytes(day1["model"]), w.X, w.y, fold, job["strategy"],
                                FinetuneConfig(**_finetune(job, settings)), job["seed"], _context(job))
        for row in rows:  # the task's time is shared evenly by its sessions
            row["work_seconds"] = (time.perf_counter() - work) / max(len(rows), 1)
        _log(tracker, run_id, rows)
        costs = _device(job, day1["spec"], settings)
        _log_device(tracker, run_id, costs)
    for row in rows:
        row["task_seconds"] = (time.perf_counter() - start) / max(len(rows), 1)
    return {"rows": _with_device(rows, costs, job, settings)}


def make_task_runner(name: str, workers: int):
    """The task runner named in params: local threads, a local Dask cluster of processes, or Ray."""
    if name == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if name == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    if name == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as err:
            raise ValueError("adapt.runner.name='ray' needs prefect-ray: pip install -e '.[ray]'") from err
        return RayTaskRunner(init_kwargs={"num_cpus": workers, "include_dashboard": False})
    raise ValueError(f"adapt.runner.name={name!r} is not supported; use 'threads', 'dask' or 'ray'")


@flow(name="adapt_cohort", log_prints=True)
def adapt_cohort(jobs: list[dict], settings: dict, run_name: str = "adapt_cohort") -> list[dict]:
    """Run every job; return all result rows (one per subject, session, scenario, strategy, seed).

    The MLflow parent run is keyed by the jobs and settings: if a run with the same key was
    interrupted, it is resumed (its stranded RUNNING children are marked FAILED) and the
    tasks that had finished come back from Prefect's cache instead of running again.
    """
    torch.set_num_threads(settings["torch_threads"])
    tracker = Tracker(settings["tracking_uri"], settings["experiment"])
    datasets = sorted({j["dataset"] for j in jobs})
    parent = tracker.resume_or_start(
        resume_key(jobs, settings), f"{run_name}-{len(jobs)}-jobs",
        tags={"dataset": ",".join(datasets), "modality": ",".join(sorted({j["modality"] for j in jobs})), "kind": "flow"},
        params={**settings["finetune"], "n_jobs": len(jobs), "strategies": ",".join(dict.fromkeys(j["strategy"] for j in jobs)),
                "seeds": ",".join(str(s) for s in dict.fromkeys(j["seed"] for j in jobs))},
    )
    day1_task = adapt_day1.with_options(retries=settings["retries"])
    long_task = adapt_longitudinal.with_options(retries=settings["retries"])
    try:
        futures = []
        for job in jobs:
            first = day1_task.submit(job, settings, parent)
            futures.append(first)
            if job["longitudinal"]:
                futures.append(long_task.submit(job, first, settings, parent))
        for fut in tqdm(as_completed(futures), total=len(futures), desc="adaptation tasks", unit="task"):
            fut.result()  # raise early if a task failed for good
        rows = [row for fut in futures for row in fut.result()["rows"]]
    except BaseException:
        tracker.end_run(parent, "FAILED")
        raise
    tracker.log_metrics(parent, {"n_tasks": len(futures), "n_rows": len(rows)})
    tracker.end_run(parent, "FINISHED")
    return rows


def run_adapt_cohort(jobs: list[dict], settings: dict, runner: str = "threads", workers: int = 2,
                     run_name: str = "adapt_cohort") -> list[dict]:
    """Entry point for stages and tests: the flow with the runner chosen in params."""
    return adapt_cohort.with_options(task_runner=make_task_runner(runner, workers))(jobs, settings, run_name)
