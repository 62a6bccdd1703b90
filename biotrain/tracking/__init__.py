"""Tracking: every flow run and task lands in MLflow."""

from .check import check_tracking
from .mlflow_runs import Tracker, attach_report, default_tracking_uri, tracker_for

__all__ = ["check_tracking", "Tracker", "attach_report", "default_tracking_uri", "tracker_for"]
