"""A study run in MLflow: one parent run per flow run, one child run per scenario of a job.

Children are recorded when their scenario is done (see ``Tracker.record_run``), tagged with
the job's context and where it executed, with the fine-tuning settings as params, one metrics
step per session and the chip costs on the first step. A failed scenario is a FAILED child
carrying its error.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from .. import tracking as mlflow_records  # MLflow loads when the first run is opened
from .allocator import process_allocator
from .config import AdaptSettings, TrackingConfig
from .jobs import Job, resume_key


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ParentRun:
    """The flow run's MLflow run, as tasks see it (they may run in other processes)."""

    run_id: str
    experiment_id: str
    tracking: TrackingConfig


def open_parent_run(tracking: TrackingConfig, jobs: list[Job], settings: AdaptSettings, run_name: str
                    ) -> tuple[mlflow_records.Tracker, ParentRun, bool]:
    """Start the parent run, or resume the one an interrupted flow left for the same work.

    Returns the tracker, the parent as tasks see it, and whether it was resumed.
    """
    tracker = mlflow_records.Tracker(tracking.uri, tracking.experiment)
    run_id, resumed = tracker.resume_or_start(
        resume_key(jobs, settings), f"{run_name}-{len(jobs)}-jobs",
        tags={"dataset": ",".join(sorted({j.dataset for j in jobs})),
              "modality": ",".join(sorted({j.modality for j in jobs})), "kind": "flow"},
        params={**asdict(settings.finetune), "n_jobs": len(jobs),
                "strategies": ",".join(dict.fromkeys(j.label for j in jobs)),
                "seeds": ",".join(str(s) for s in dict.fromkeys(j.seed for j in jobs))},
    )
    return tracker, ParentRun(run_id, tracker.experiment_id, tracking), resumed


def _metrics(row: dict) -> dict:
    return {"acc_before": row["acc_before"], "acc_after": row["acc_after"], "gain": row["acc_after"] - row["acc_before"],
            "n_calib": row["n_calib"], "n_test": row["n_test"], "host_train_seconds": row["train_seconds"],
            "trained_params": row["trained_params"]}


def _device_tracking(costs: dict) -> tuple[dict, dict]:
    """Chip costs as (tags, metrics) of a child run."""
    if not costs:
        return {}, {}
    tags = {"fits_on_chip": costs["fits_on_chip"], "device_message": costs.get("message", "")}
    if costs.get("program"):
        tags["device_program"] = costs["program"]  # which costed program (gap9.yaml), docs/device.md
    metrics = {f"device_{k}": float(v) for k, v in costs.items()
               if k != "message" and v is not None and not isinstance(v, str)}
    return tags, metrics


@dataclass(frozen=True)
class ChildRuns:
    """Records the scenarios of one job attempt as children of ``parent``.

    ``replace``: an earlier attempt (a resumed parent, a retry) may have recorded children
    already; a finished one is kept, an unfinished one replaced.
    """

    parent: ParentRun
    settings: AdaptSettings
    replace: bool = False

    def record(self, job: Job, scenario: str, sessions: list[str], rows: list[dict], costs: dict,
               start_ms: int, executed_on: str, error: BaseException | None = None) -> None:
        tracking = self.parent.tracking
        tracker = mlflow_records.tracker_for(tracking.uri, tracking.experiment, self.parent.experiment_id)
        device_tags, device_metrics = _device_tracking(costs)
        steps = [_metrics(row) for row in rows]
        if steps:
            steps[0].update(device_metrics)
        tags = {**job.context(), "scenario": scenario, "session": ",".join(sessions), "executed_on": executed_on,
                "allocator": process_allocator(), **device_tags, **({"error": f"{type(error).__name__}: {error}"[:500]} if error else {})}
        params = {**asdict(job.finetune(self.settings.finetune)), **{f"grid.{k}": v for k, v in job.grid.items()}}
        tracker.record_run(job.run_name(scenario), self.parent.run_id, resume_key([job], {"scenario": scenario}),
                           tags=tags, params=params, steps=steps, start_ms=start_ms,
                           status="FAILED" if error else "FINISHED", replace=self.replace)
