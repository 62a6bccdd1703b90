"""Tracking: every flow run and task lands in MLflow.

Where the store is and whether it answers need no MLflow; the run records import it (~1 s) on
first use, so stages that only check the store start without it.
"""

import importlib

from .check import check_tracking, default_tracking_uri

_ON_FIRST_USE = {"Tracker": "mlflow_runs", "attach_report": "mlflow_runs", "tracker_for": "mlflow_runs"}

__all__ = ["check_tracking", "Tracker", "attach_report", "default_tracking_uri", "tracker_for"]


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(f".{_ON_FIRST_USE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
