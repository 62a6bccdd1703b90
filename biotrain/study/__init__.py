"""A study: typed settings, its jobs and their groups, and the work of one job or group (Prefect-free;
``flows/`` wires it)."""

from .allocator import worker_preload
from .config import (AdaptSettings, DataConfig, DeviceConfig, FINETUNE_KEYS, ModalityConfig, ModelConfig,
                     RUNNERS, RunnerConfig, StudyConfig, SweepConfig, TrackingConfig)
from .groups import group_jobs, rows_in_job_order
from .jobs import GRID_KEYS, Job, expand_grid, plan_study, resume_key
from .paths import StudyPaths
from .records import ChildRuns, ParentRun, open_parent_run
from .run_group import run_group
from .run_job import run_job

__all__ = ["AdaptSettings", "ChildRuns", "DataConfig", "DeviceConfig", "FINETUNE_KEYS", "GRID_KEYS", "Job",
           "ModalityConfig", "ModelConfig", "ParentRun", "RUNNERS", "RunnerConfig", "StudyConfig", "StudyPaths", "SweepConfig",
           "TrackingConfig", "expand_grid", "group_jobs", "open_parent_run", "plan_study", "resume_key",
           "rows_in_job_order", "run_group", "run_job", "worker_preload"]
