"""Sweep outputs: every row with its grid point, and a summary ranked by gain per unit of energy."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import write_text
from .summary import results_frame

TIMINGS = ("train_seconds", "work_seconds", "task_seconds")


def sweep_summary(df: pd.DataFrame, grid_keys: list[str]) -> pd.DataFrame:
    """Per modality, scenario and grid point: accuracy, gain over ``none`` and cost on the chip.

    The gain is over the non-adapted model of the same rows (``acc_before`` on day 1 is the
    pretrained model's accuracy). ``gain_per_joule`` divides it by the on-chip calibration
    energy; strategies that do not fit on the chip have no energy and rank last. A grid point's
    jobs may train different steps (``sparse`` picks layers per subject): it fits only if every
    row does, and its peak is their largest.
    """
    keys = ["modality", "scenario", *[k for k in grid_keys if k not in ("modality", "scenario")]]
    for k in keys:
        if k not in df.columns:
            df = df.assign(**{k: None})
    agg = {"acc_after": "mean", "acc_before": "mean", "n_calib": "mean"}
    if "device_calib_energy_mj" in df.columns:
        agg.update(device_calib_energy_mj="mean", device_fits_on_chip=_all_fit, device_peak_l2_bytes="max")
    out = df.groupby(keys, dropna=False).agg(agg).reset_index()
    out["gain"] = out["acc_after"] - out["acc_before"]
    if "device_calib_energy_mj" in out.columns:
        joules = out["device_calib_energy_mj"] / 1000.0
        out["gain_per_joule"] = np.where(joules > 0, out["gain"] / joules, np.nan)
        out = out.sort_values(["modality", "scenario", "gain_per_joule"], ascending=[True, True, False], na_position="last")
    return out.reset_index(drop=True)


def _all_fit(fits: pd.Series):
    """Every row's step fits (CSV booleans read as text too); None where no row was costed."""
    values = fits.dropna()
    if values.empty:
        return None
    return bool(values.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).all())


def _markdown(summary: pd.DataFrame) -> str:
    cols = [c for c in summary.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"{v:.4g}" if isinstance(v, float) and v == v else ("—" if v is None or v != v else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_sweep(rows: list[dict], grid: dict, csv_path: Path, report_path: Path) -> Path:
    df = results_frame(rows)
    buf = io.StringIO()
    df.drop(columns=[c for c in TIMINGS if c in df.columns]).to_csv(buf, index=False, float_format="%.6f")
    write_text(csv_path, buf.getvalue())
    summary = sweep_summary(df, list(grid))
    write_text(report_path, "\n".join([
        f"# Sweep `{Path(csv_path).stem}`", "",
        f"Grid: {grid}. Rows: {len(df)} (`{csv_path}`).", "",
        "Ranked by accuracy gain per joule of on-chip calibration energy (gain = accuracy after - before adaptation).", "",
        _markdown(summary),
    ]))
    return csv_path
