"""Tracking: every flow run and task lands in MLflow."""

from .mlflow_runs import Tracker, default_tracking_uri

__all__ = ["Tracker", "default_tracking_uri"]
