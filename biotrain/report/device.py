"""The report's cost side: accuracy bought against memory and speed on the chip."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..adaptation.strategies import STRATEGIES  # noqa: E402
from .study import COLORS, _save  # noqa: E402

DEVICE_COLUMNS = ("device_fits_on_chip", "device_peak_l2_bytes", "device_samples_per_s")


def device_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per modality and strategy: day-1 accuracy, and the chip cost of one training step."""
    if not set(DEVICE_COLUMNS) <= set(df.columns):
        return pd.DataFrame()
    day1 = df[df["scenario"] == "day1"]
    agg = day1.groupby(["modality", "strategy"]).agg(
        acc=("acc_after", "mean"),
        fits=("device_fits_on_chip", "first"),
        peak_l2_bytes=("device_peak_l2_bytes", "first"),
        latency_ms=("device_latency_ms_per_step", "first"),
        samples_per_s=("device_samples_per_s", "first"),
        energy_mj_per_sample=("device_energy_mj_per_sample", "first"),
        calib_time_s=("device_calib_time_s", "mean"),
        calib_energy_mj=("device_calib_energy_mj", "mean"),
    ).reset_index()
    order = {s: i for i, s in enumerate(STRATEGIES)}
    return agg.sort_values(["modality", "strategy"], key=lambda c: c.map(order) if c.name == "strategy" else c)


def _fmt(value, spec: str, missing: str = "—") -> str:
    return missing if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, spec)


def device_markdown(table: pd.DataFrame, l2_budget: int) -> str:
    if table.empty:
        return "_No device figures in these results (device section missing from params)._\n"
    lines = [
        f"L2 budget: {l2_budget / 1e6:.2f} MB. A strategy whose plan exceeds it is marked as not fitting, "
        "and no throughput or energy is reported for it. `none` never trains on the chip.",
        "",
        "| modality | strategy | day-1 accuracy (%) | fits on chip | peak L2 (MB) | ms / step of 8 | samples/s | mJ / sample | calibration on chip (s) | calibration energy (mJ) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        trained = r["strategy"] != "none"
        fits = ("yes" if bool(r["fits"]) else "**no**") if trained else "—"
        peak = _fmt(r["peak_l2_bytes"] / 1e6 if trained and r["peak_l2_bytes"] == r["peak_l2_bytes"] else None, ".3f")
        lines.append(
            f"| {r['modality']} | {r['strategy']} | {100 * r['acc']:.1f} | {fits} | {peak} | {_fmt(r['latency_ms'], '.1f')} | "
            f"{_fmt(r['samples_per_s'], '.1f')} | {_fmt(r['energy_mj_per_sample'], '.3f')} | "
            f"{_fmt(r['calib_time_s'], '.1f')} | {_fmt(r['calib_energy_mj'], '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_cost(table: pd.DataFrame, path: Path, l2_budget: int, dpi: int) -> None:
    """Two panels per modality: accuracy against peak L2 memory, and against samples/s."""
    modalities = sorted(table["modality"].unique())
    fig, axes = plt.subplots(len(modalities), 2, figsize=(11, 3.8 * len(modalities)), squeeze=False)
    for row, modality in zip(axes, modalities):
        t = table[(table["modality"] == modality) & (table["strategy"] != "none")]
        none = table[(table["modality"] == modality) & (table["strategy"] == "none")]
        ax_mem, ax_speed = row
        for _, r in t.iterrows():
            color = COLORS.get(r["strategy"])
            marker = "o" if bool(r["fits"]) else "x"
            ax_mem.scatter(r["peak_l2_bytes"] / 1e6, 100 * r["acc"], color=color, marker=marker, s=80, label=r["strategy"])
            if bool(r["fits"]) and r["samples_per_s"] == r["samples_per_s"]:
                ax_speed.scatter(r["samples_per_s"], 100 * r["acc"], color=color, s=80, label=r["strategy"])
        ax_mem.axvline(l2_budget / 1e6, color="red", ls="--", lw=1, label="L2 budget")
        ax_mem.set_xscale("log")
        ax_mem.set_xlabel("peak L2 memory of one training step (MB, log)")
        ax_speed.set_xlabel("on-chip training throughput (samples/s; strategies that fit)")
        for ax in row:
            if not none.empty:
                ax.axhline(100 * none["acc"].iloc[0], color=COLORS["none"], ls=":", lw=1, label="none (no adaptation)")
            ax.set_ylabel("day-1 accuracy (%)")
            ax.set_title(f"{modality.upper()}: accuracy vs {'memory' if ax is ax_mem else 'speed'} (x = does not fit)")
            ax.legend(fontsize=8, loc="lower right")
    _save(fig, path, dpi)


def device_section(df: pd.DataFrame, out_dir: Path, l2_budget: int, dpi: int) -> str:
    table = device_table(df)
    parts = ["## On the chip: what each strategy costs", ""]
    parts.append(device_markdown(table, l2_budget))
    if not table.empty:
        plot_accuracy_vs_cost(table, Path(out_dir) / "figures" / "accuracy_vs_cost.png", l2_budget, dpi)
        parts += ["![accuracy against chip cost](figures/accuracy_vs_cost.png)", ""]
    return "\n".join(parts)
