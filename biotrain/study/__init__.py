"""A study: typed settings, its jobs, and the work of one job (Prefect-free; ``flows/`` wires it)."""

from .config import (AdaptSettings, DataConfig, DeviceConfig, FINETUNE_KEYS, ModalityConfig, ModelConfig,
                     RunnerConfig, StudyConfig, SweepConfig, TrackingConfig)
from .jobs import GRID_KEYS, Job, expand_grid, plan_study, resume_key
from .paths import StudyPaths
from .records import ChildRuns, ParentRun, open_parent_run
from .run_job import run_job

__all__ = ["AdaptSettings", "ChildRuns", "DataConfig", "DeviceConfig", "FINETUNE_KEYS", "GRID_KEYS", "Job",
           "ModalityConfig", "ModelConfig", "ParentRun", "RunnerConfig", "StudyConfig", "StudyPaths", "SweepConfig",
           "TrackingConfig", "expand_grid", "open_parent_run", "plan_study", "resume_key", "run_job"]
