"""Tracking: every flow run and task lands in MLflow."""

from .mlflow_runs import Tracker, attach_report, default_tracking_uri, tracker_for

__all__ = ["Tracker", "attach_report", "default_tracking_uri", "tracker_for"]
