"""One adaptation task of the study: a scenario for one subject, strategy and seed.

Pure functions over arrays and models (no Prefect, no MLflow), so they can be tested on
in-memory data and wrapped by any orchestrator.
"""

from __future__ import annotations

import copy

import numpy as np

from .strategies import FinetuneConfig, adapt
from .training import accuracy


def _row(context: dict, session: str, scenario: str, n_calib: int, n_test: int, before: float, after: float, seconds: float) -> dict:
    return {
        **context, "session": session, "scenario": scenario, "n_calib": n_calib, "n_test": n_test,
        "acc_before": round(float(before), 6), "acc_after": round(float(after), 6),
        "train_seconds": round(float(seconds), 3),
    }


def run_day1(model, X: np.ndarray, y: np.ndarray, fold: dict, strategy: str, cfg: FinetuneConfig, seed: int, context: dict,
             adapt_fn=adapt):
    """Adapt a copy of the pretrained ``model`` on the first session's calibration part.

    Returns the result row and the adapted model (the start of the longitudinal chain).
    ``adapt_fn`` runs the fine-tuning (PyTorch by default; the device program with ``device.execute``).
    """
    model = copy.deepcopy(model)
    split = fold["day1"]
    calib, test = np.asarray(split["calib"]), np.asarray(split["test"])
    before = accuracy(model, X[test], y[test])
    info = adapt_fn(model, X[calib], y[calib], strategy, cfg, seed)
    after = accuracy(model, X[test], y[test])
    row = _row(context, split["session"], "day1", info.n_calib, len(test), before, after, info.train_seconds)
    return row, model


def run_longitudinal(model, X: np.ndarray, y: np.ndarray, fold: dict, strategy: str, cfg: FinetuneConfig, seed: int, context: dict,
                     adapt_fn=adapt) -> list[dict]:
    """Chain through the later sessions: each adapts the previous session's model."""
    model = copy.deepcopy(model)
    rows = []
    for k, split in enumerate(fold["longitudinal"], start=1):
        calib, test = np.asarray(split["calib"]), np.asarray(split["test"])
        before = accuracy(model, X[test], y[test])
        info = adapt_fn(model, X[calib], y[calib], strategy, cfg, seed + 1000 * k)
        after = accuracy(model, X[test], y[test])
        rows.append(_row(context, split["session"], "longitudinal", info.n_calib, len(test), before, after, info.train_seconds))
    return rows
