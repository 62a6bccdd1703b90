"""``adapt_cohort``: a study's (or a sweep's) adaptation jobs as one Prefect flow.

Wiring only: which jobs train together is :func:`biotrain.study.group_jobs`, the work of a group
:func:`biotrain.study.run_group` (a group of one is :func:`~biotrain.study.run_job`), their MLflow
records :mod:`biotrain.study.records`; this module makes each group a Prefect task (cached on its
inputs and source, results persisted, retried) and runs them on the configured task runner. An
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

from biotrain.study import (AdaptSettings, ChildRuns, Job, ParentRun, RunnerConfig, TrackingConfig, group_jobs,
                            open_parent_run, rows_in_job_order, run_group)
from flows.runners import make_task_runner, shared_prefect_api

# Cached on the group's jobs (with digests of its input files), the settings and the parent run, and on
# the task's source. Whether the parent was resumed changes how the task records its MLflow
# runs, not its result, so it is left out of the key.
CACHE = (INPUTS - "parent_resumed") + TASK_SOURCE


@task(name="adapt_group", cache_policy=CACHE, persist_result=True)
def adapt_group(jobs: list[Job], settings: AdaptSettings, parent: ParentRun, parent_resumed: bool = False,
                force: bool = False) -> list[list[dict]]:
    """Runs one group (rows per job), its child runs replacing those of an earlier attempt (resumed parent or retry)."""
    attempt = TaskRunContext.get()
    retried = attempt is not None and attempt.task_run.run_count > 1
    return run_group(jobs, settings, ChildRuns(parent, settings, replace=parent_resumed or retried), force)


@flow(name="adapt_cohort", log_prints=True)
def adapt_cohort(jobs: list[Job], settings: AdaptSettings, tracking: TrackingConfig, retries: int = 1,
                 run_name: str = "adapt_cohort", max_group: int = 16, force_batching: bool = False
                 ) -> tuple[list[dict], str]:
    """Submits every group under one MLflow parent run; returns all rows (in the jobs' order) and the parent's id.

    ``force_batching``: groups from two jobs, batched even where it does not pay (tests, measurements).
    """
    tracker, parent, resumed = open_parent_run(tracking, jobs, settings, run_name)
    group_task = adapt_group.with_options(retries=retries)
    groups = group_jobs(jobs, settings, max_group, force_batching)
    try:
        futures = [group_task.submit(group, settings, parent, resumed, force_batching) for group in groups]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="adaptation groups", unit="group"):
            fut.result()  # raise early if a task failed for good
        rows = rows_in_job_order(jobs, groups, [fut.result() for fut in futures])
    except BaseException as err:
        # Ctrl-C or SIGTERM (stages turn it into KeyboardInterrupt, Prefect into ExternalSignal): KILLED
        stopped = isinstance(err, (KeyboardInterrupt, SystemExit, ExternalSignal))
        tracker.stop_run(parent.run_id, "KILLED" if stopped else "FAILED")
        raise
    tracker.log_metrics(parent.run_id, {"n_tasks": len(jobs), "n_groups": len(groups), "n_rows": len(rows)})
    tracker.end_run(parent.run_id, "FINISHED")
    return rows, parent.run_id


def run_adapt_cohort(jobs: list[Job], settings: AdaptSettings, tracking: TrackingConfig, runner: RunnerConfig,
                     run_name: str = "adapt_cohort", max_group: int = 16, force_batching: bool = False
                     ) -> tuple[list[dict], str]:
    """Runs the flow on ``runner``'s task runner, sharing one Prefect API with its workers."""
    with shared_prefect_api(runner.name) as api_url:
        task_runner = make_task_runner(runner.name, runner.workers, runner.address, api_url, runner.allocator)
        try:
            return adapt_cohort.with_options(task_runner=task_runner, flow_run_name=run_name)(
                jobs, settings, tracking, runner.retries, run_name, max_group, force_batching)
        except TerminationSignal as err:  # Prefect's form of SIGTERM: callers see it as Ctrl-C
            raise KeyboardInterrupt(f"stopped by {signal.Signals(err.signal).name}") from None
