"""The report's cost side: accuracy bought against memory and speed on the chip."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..strategy_table import label_order  # noqa: E402
from .study import COLORS, _legend_above, _save, color_of, hatch_of, marker_of  # noqa: E402

DEVICE_COLUMNS = ("device_fits_on_chip", "device_peak_l2_bytes", "device_samples_per_s")


def all_fit(values: pd.Series):
    """Whether every costed row fits on the chip; NaN where nothing was costed (``none``).

    A strategy whose step differs by job (``sparse`` picks layers per base model) fits only if
    every one of its steps does."""
    costed = values.dropna()
    return np.nan if costed.empty else bool(costed.map(_truth).all())


def _truth(value) -> bool:
    """A CSV cell read back as a boolean (``True``, ``"True"``, ``1``)."""
    return str(value).strip().lower() in ("true", "1", "1.0")


def device_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per modality and strategy: day-1 accuracy, and the chip cost of one training step.

    Costs are means over the day-1 rows: equal on every row for most strategies, and the
    average step where it varies by job (``sparse``'s layers are picked per base model)."""
    if not set(DEVICE_COLUMNS) <= set(df.columns):
        return pd.DataFrame()
    day1 = df[df["scenario"] == "day1"]
    agg = day1.groupby(["modality", "strategy"]).agg(
        acc=("acc_after", "mean"),
        fits=("device_fits_on_chip", all_fit),
        peak_l2_bytes=("device_peak_l2_bytes", "mean"),
        latency_ms=("device_latency_ms_per_step", "mean"),
        samples_per_s=("device_samples_per_s", "mean"),
        energy_mj_per_sample=("device_energy_mj_per_sample", "mean"),
        calib_time_s=("device_calib_time_s", "mean"),
        calib_energy_mj=("device_calib_energy_mj", "mean"),
    ).reset_index()
    order = {s: i for i, s in enumerate(label_order(agg["strategy"]))}
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
        fits = ("yes" if fits_cell(r["fits"]) else "**no**") if trained else "—"
        peak = _fmt(r["peak_l2_bytes"] / 1e6 if trained and r["peak_l2_bytes"] == r["peak_l2_bytes"] else None, ".3f")
        lines.append(
            f"| {r['modality']} | {r['strategy']} | {100 * r['acc']:.1f} | {fits} | {peak} | {_fmt(r['latency_ms'], '.1f')} | "
            f"{_fmt(r['samples_per_s'], '.1f')} | {_fmt(r['energy_mj_per_sample'], '.3f')} | "
            f"{_fmt(r['calib_time_s'], '.1f')} | {_fmt(r['calib_energy_mj'], '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def _pareto(points: list[tuple[float, float]], minimize_x: bool) -> list[tuple[float, float]]:
    """The non-dominated points: more gain for less memory (or for more speed)."""
    key = (lambda p: (p[0], -p[1])) if minimize_x else (lambda p: (-p[0], -p[1]))
    front, best = [], -np.inf
    for x, g in sorted(points, key=key):
        if g > best:
            front.append((x, g))
            best = g
    return front


def plot_pareto(table: pd.DataFrame, path: Path, l2_budget: int, dpi: int) -> None:
    """Per model: day-1 gain over ``none`` against peak L2 memory and against on-chip samples/s.

    One point per strategy (its own colour and marker, named in the legend rather than beside the
    point: seven labels overlap where strategies cost alike); the Pareto front joins the points no
    other beats on both axes; hollow markers do not fit in L2, and the budget is the red line.
    """
    modalities = sorted(table["modality"].unique())
    fig, axes = plt.subplots(len(modalities), 2, figsize=(11, 3.8 * len(modalities)), squeeze=False)
    for row, modality in zip(axes, modalities):
        t = table[table["modality"] == modality]
        none = t[t["strategy"] == "none"]
        base = none["acc"].iloc[0] if not none.empty else np.nan
        t = t[t["strategy"] != "none"].assign(gain=lambda d: 100 * (d["acc"] - base))
        ax_mem, ax_speed = row
        for _, r in t.iterrows():
            strategy, fits = r["strategy"], fits_cell(r["fits"])
            style = _point_style(strategy, fits)
            for ax in row:  # the legend shows each strategy filled, whether or not it fits here
                ax.scatter([], [], **_point_style(strategy, True), label=strategy)
            ax_mem.scatter(r["peak_l2_bytes"] / 1e6, r["gain"], **style)
            if fits and r["samples_per_s"] == r["samples_per_s"]:
                ax_speed.scatter(r["samples_per_s"], r["gain"], **style)
        fit = t[t["fits"].map(fits_cell)]
        front = _pareto(list(zip(fit["peak_l2_bytes"] / 1e6, fit["gain"])), minimize_x=True)
        if front:
            ax_mem.step(*zip(*front), where="post", color="black", lw=0.8, alpha=0.6, label="Pareto front")
        front = _pareto([(x, g) for x, g in zip(fit["samples_per_s"], fit["gain"]) if x == x], minimize_x=False)
        if front:
            ax_speed.plot(*zip(*sorted(front)), color="black", lw=0.8, alpha=0.6, label="Pareto front")
        ax_mem.axvline(l2_budget / 1e6, color="red", ls="--", lw=1, label="L2 budget")
        ax_mem.set_xscale("log")
        ax_mem.set_xlabel("peak L2 memory of one training step (MB, log)")
        ax_speed.set_xlabel("on-chip training throughput (samples/s; strategies that fit)")
        for ax, what in ((ax_mem, "memory"), (ax_speed, "speed")):
            ax.margins(x=0.12, y=0.15)
            ax.axhline(0, color=COLORS["none"], ls=":", lw=1, label="none (no adaptation)")
            if base == base:  # the same points read as accuracy on the right-hand axis
                acc_axis = ax.secondary_yaxis("right", functions=(lambda g, b=base: g + 100 * b, lambda a, b=base: a - 100 * b))
                acc_axis.set_ylabel(f"same points as day-1 accuracy (%; none = {100 * base:.1f})", fontsize=8)
            ax.set_ylabel("day-1 gain over none (accuracy points)")
            ax.set_title(f"{modality.upper()}: gain vs {what}" + (" (hollow = does not fit in L2)" if what == "memory" else ""),
                         fontsize=10)
    _legend_above(fig, axes)
    _save(fig, path, dpi)


def _point_style(strategy: str, fits: bool) -> dict:
    """A strategy's marker in the Pareto panels: its colour and shape, hollow when it does not fit;
    a 16-bit run has a black outline and its precision's hatch (the bars' too), beside its fp32 twin."""
    color = color_of(strategy)
    style = {"marker": marker_of(strategy), "s": 70, "zorder": 3, "linewidths": 1.2,
             "facecolors": color if fits else "none", "edgecolors": color}
    if hatch_of(strategy):
        style.update(edgecolors="black", hatch=hatch_of(strategy) * 2, s=90)
    return style


def fits_cell(value) -> bool:
    """A ``fits`` cell of :func:`device_table` as a boolean (NaN, for ``none``, is False)."""
    return value == value and bool(value)


def device_section(df: pd.DataFrame, out_dir: Path, l2_budget: int, dpi: int) -> str:
    table = device_table(df)
    parts = ["## On the chip: what each strategy costs", ""]
    parts.append(device_markdown(table, l2_budget))
    if not table.empty:
        plot_pareto(table, Path(out_dir) / "figures" / "pareto.png", l2_budget, dpi)
        parts += ["![accuracy gain against chip cost, Pareto front](figures/pareto.png)", ""]
    return "\n".join(parts)
