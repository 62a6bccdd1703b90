"""``adapt_cohort``: a study's (or a sweep's) adaptation jobs as one Prefect flow.

Wiring only: the work of a job is :func:`biotrain.study.run_job`, its MLflow records are
:mod:`biotrain.study.records`; this module makes each job a Prefect task (cached on its inputs
and source, results persisted, retried) and runs them on the configured task runner. An
interrupted flow, run again, finds its MLflow parent run by key and its finished tasks in
Prefect's cache.
"""

from __future__ import annotations

import signal

from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.context import TaskRunContext
from prefect.exceptions import ExternalSignal, TerminationSignal
from prefect.futures import as_completed
from tqdm import tqdm

from biotrain.study import AdaptSettings, ChildRuns, Job, ParentRun, RunnerConfig, TrackingConfig, open_parent_run, run_job
from flows.runners import make_task_runner, shared_prefect_api

# Cached on the job (with digests of its input files), the settings and the parent run, and on
# the task's source. Whether the parent was resumed changes how the task records its MLflow
# runs, not its result, so it is left out of the key.
CACHE = (INPUTS - "parent_resumed") + TASK_SOURCE


@task(name="adapt", cache_policy=CACHE, persist_result=True)
def adapt_job(job: Job, settings: AdaptSettings, parent: ParentRun, parent_resumed: bool = False) -> list[dict]:
    """Runs one job, its child runs replacing those of an earlier attempt (resumed parent or retry)."""
    attempt = TaskRunContext.get()
    retried = attempt is not None and attempt.task_run.run_count > 1
    return run_job(job, settings, ChildRuns(parent, settings, replace=parent_resumed or retried))


@flow(name="adapt_cohort", log_prints=True)
def adapt_cohort(jobs: list[Job], settings: AdaptSettings, tracking: TrackingConfig, retries: int = 1,
                 run_name: str = "adapt_cohort") -> tuple[list[dict], str]:
    """Submits every job under one MLflow parent run; returns all rows and the parent's id."""
    tracker, parent, resumed = open_parent_run(tracking, jobs, settings, run_name)
    job_task = adapt_job.with_options(retries=retries)
    try:
        futures = [job_task.submit(job, settings, parent, resumed) for job in jobs]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="adaptation tasks", unit="task"):
            fut.result()  # raise early if a task failed for good
        rows = [row for fut in futures for row in fut.result()]
    except BaseException as err:
        # Ctrl-C or SIGTERM (stages turn it into KeyboardInterrupt, Prefect into ExternalSignal): KILLED
        stopped = isinstance(err, (KeyboardInterrupt, SystemExit, ExternalSignal))
        tracker.stop_run(parent.run_id, "KILLED" if stopped else "FAILED")
        raise
    tracker.log_metrics(parent.run_id, {"n_tasks": len(futures), "n_rows": len(rows)})
    tracker.end_run(parent.run_id, "FINISHED")
    return rows, parent.run_id


def run_adapt_cohort(jobs: list[Job], settings: AdaptSettings, tracking: TrackingConfig, runner: RunnerConfig,
                     run_name: str = "adapt_cohort") -> tuple[list[dict], str]:
    """Runs the flow on ``runner``'s task runner, sharing one Prefect API with its workers."""
    with shared_prefect_api(runner.name) as api_url:
        task_runner = make_task_runner(runner.name, runner.workers, runner.address, api_url)
        try:
            return adapt_cohort.with_options(task_runner=task_runner, flow_run_name=run_name)(
                jobs, settings, tracking, runner.retries, run_name)
        except TerminationSignal as err:  # Prefect's form of SIGTERM: callers see it as Ctrl-C
            raise KeyboardInterrupt(f"stopped by {signal.Signals(err.signal).name}") from None
