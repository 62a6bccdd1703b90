"""The stable output contract: ``results/adaptation.csv`` and ``metrics/adaptation.json``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import write_json, write_text

COLUMNS = [
    "dataset", "modality", "model", "subject", "session", "scenario", "strategy", "seed",
    "n_calib", "n_test", "acc_before", "acc_after", "train_seconds",
]
SCENARIOS = ("day1", "longitudinal")


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows in a fixed column and row order, so the CSV is identical run to run."""
    df = pd.DataFrame(rows)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    df = df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]
    return df.sort_values(["modality", "scenario", "strategy", "subject", "session", "seed"], kind="stable").reset_index(drop=True)


def summarize(df: pd.DataFrame) -> dict:
    """``{modality: {scenario: {strategy: {acc_mean, acc_std, n}}}}`` over ``acc_after``.

    ``acc_mean`` is the mean over every row (subjects, sessions, seeds); ``acc_std`` is the
    standard deviation across seeds of the per-seed mean, the "mean +- std over seeds" the
    reference paper reports; ``n`` is the number of rows.
    """
    out: dict = {}
    for (modality, scenario, strategy), g in df.groupby(["modality", "scenario", "strategy"], sort=True):
        per_seed = g.groupby("seed")["acc_after"].mean()
        out.setdefault(modality, {}).setdefault(scenario, {})[strategy] = {
            "acc_mean": round(float(g["acc_after"].mean()), 6),
            "acc_std": round(float(np.std(per_seed.to_numpy())), 6),
            "n": int(len(g)),
        }
    return out


def write_results(rows: list[dict], csv_path: str | Path, metrics_path: str | Path) -> pd.DataFrame:
    """Write the CSV (without host timings, which vary run to run) and the metrics, atomically.

    Host timings go to MLflow (and the returned frame), never to the deterministic outputs.
    """
    df = results_frame(rows)
    buf = io.StringIO()
    timings = [c for c in ("train_seconds", "work_seconds", "task_seconds") if c in df.columns]
    df.drop(columns=timings).to_csv(buf, index=False, float_format="%.6f")
    write_text(csv_path, buf.getvalue())
    write_json(metrics_path, summarize(df))
    return df
