"""MLflow runs for a flow: one parent run per flow run, one child run per task.

Uses :class:`mlflow.MlflowClient` with explicit run ids rather than the fluent API: the fluent
"active run" is per thread, and tasks run in worker threads (or processes), so each child run
names its parent through the ``mlflow.parentRunId`` tag, the same link ``parent_run_id`` sets.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from .views import ensure_study_view

_LOCK = threading.Lock()  # one writer at a time: SQLite stores dislike concurrent writers


def _artifact_root(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None


class Tracker:
    """Thin, thread-safe wrapper around one MLflow experiment."""

    def __init__(self, uri: str, experiment: str, experiment_id: str | None = None):
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        if experiment_id is not None:  # known already (a task of a flow that looked it up)
            self.experiment_id = experiment_id
            return
        with _LOCK:
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                exp.experiment_id if exp is not None
                else self.client.create_experiment(experiment, artifact_location=_artifact_root(uri))
            )
            ensure_study_view(self.client, self.experiment_id, exp.tags if exp is not None else {})

    def start_run(self, name: str, tags: dict | None = None, params: dict | None = None, parent_run_id: str | None = None) -> str:
        tags = {k: str(v) for k, v in (tags or {}).items()}
        tags[MLFLOW_RUN_NAME] = name
        if parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        with _LOCK:
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            if params:
                self.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return run.info.run_id

    def resume_or_start(self, key: str, name: str, tags: dict | None = None, params: dict | None = None) -> tuple[str, bool]:
        """The parent run for work identified by ``key``, and whether it was resumed.

        A run killed mid-way (SIGKILL leaves no chance to close it) stays RUNNING in the store.
        Resuming it marks its children still RUNNING as FAILED, sets it RUNNING again, and lets
        the rerun complete it; a finished run is never reopened.
        """
        with _LOCK:
            previous = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.resume_key = '{key}'",
                order_by=["attributes.start_time DESC"], max_results=1,
            )
        if previous and previous[0].info.status != "FINISHED":
            run_id = previous[0].info.run_id
            with _LOCK:
                stranded = self.client.search_runs(
                    [self.experiment_id],
                    filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}' and attributes.status = 'RUNNING'",
                )
                for child in stranded:
                    self.client.set_terminated(child.info.run_id, status="FAILED")
                self.client.update_run(run_id, status="RUNNING")
                self.client.set_tag(run_id, "resumed", "true")
            return run_id, True
        return self.start_run(name, {**(tags or {}), "resume_key": key}, params), False

    def log_metrics(self, run_id: str, metrics: dict, step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        with _LOCK:
            self.client.log_batch(run_id, metrics=batch)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        with _LOCK:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        with _LOCK:
            self.client.set_terminated(run_id, status=status)

    def stop_run(self, run_id: str, status: str = "KILLED") -> None:
        """End a parent run that did not finish, and its children still RUNNING, with ``status``."""
        with _LOCK:
            for child in self.client.search_runs(
                    [self.experiment_id],
                    filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}' and attributes.status = 'RUNNING'"):
                self.client.set_terminated(child.info.run_id, status=status)
            self.client.set_terminated(run_id, status=status)

    def record_run(self, name: str, parent_run_id: str, task_key: str, *, tags: dict, params: dict,
                   steps: list[dict], start_ms: int, status: str = "FINISHED", replace: bool = False) -> str:
        """A finished child run, written in three calls (create, one batch, terminate).

        Tasks record their run once their work is done rather than streaming into an open run:
        at cohort scale the per-call cost of the store is the tracking overhead, and a task
        killed mid-way then leaves no run behind at all. ``steps`` holds one metrics dict per
        step (per session for a longitudinal chain). With ``replace`` (the parent was resumed),
        a child an interrupted attempt already recorded for ``task_key`` is kept if it finished
        and deleted otherwise, so each task has exactly one child run.
        """
        tags = {**{k: str(v) for k, v in tags.items()}, MLFLOW_RUN_NAME: name, MLFLOW_PARENT_RUN_ID: parent_run_id,
                "task_key": task_key}
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for step, values in enumerate(steps)
                   for k, v in values.items() if v is not None]
        with _LOCK:
            if replace:
                for old in self.client.search_runs(
                        [self.experiment_id],
                        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and tags.task_key = '{task_key}'"):
                    if old.info.status == "FINISHED" and status == "FINISHED":
                        return old.info.run_id
                    self.client.delete_run(old.info.run_id)
            run_id = self.client.create_run(self.experiment_id, start_time=start_ms, tags=tags, run_name=name).info.run_id
            self.client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
            self.client.set_terminated(run_id, status=status, end_time=now)
        return run_id


@lru_cache(maxsize=8)
def tracker_for(uri: str, experiment: str, experiment_id: str) -> Tracker:
    """One tracker (one MLflow client) per process and experiment, shared by the tasks it runs."""
    return Tracker(uri, experiment, experiment_id)


def attach_report(uri: str, run_id: str, files: list[str | Path]) -> None:
    """Log the report and its plots as artifacts of ``run_id``, the study run whose results they show.

    The run id comes from the adapt stage's own output (``results/run.json``), restored with the
    results when DVC takes them from its cache, so the report never lands on another run.
    Raises :class:`TrackingError` if the store does not hold that run.
    """
    from mlflow.exceptions import MlflowException

    from ..errors import TrackingError

    client = MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
    except MlflowException as err:
        raise TrackingError(f"MLflow run {run_id} (results/run.json, written by the adapt stage) is not in the "
                            f"tracking store {uri}: {str(err).splitlines()[0]}") from None
    for path in files:
        path = Path(path)
        client.log_artifact(run_id, str(path), "report" if path.suffix == ".md" else "report/figures")
