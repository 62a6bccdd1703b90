"""The strategies side by side: what each trains, what it costs on the chip, what it gains, and
which are Pareto-optimal; then how ``bias``, ``sparse`` and ``lora`` compare with ``edge``.

The question it answers (issue 23): does a lightweight scheme get most of ``edge``'s gain at a
fraction of its memory and energy? Every number and sentence is computed from the results frame.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..strategy_table import label_order
from .device import all_fit, fits_cell

REFERENCE = "none"  # never trains: zero gain at zero cost, the point the others are measured from
EDGE = "edge"
LIGHTWEIGHT = ("bias", "sparse", "lora")  # compared with EDGE under each table
# differences below these (gain in points, peak L2 in kB, energy in mJ) are ties: accuracies are
# stored to 1e-6 (1e-4 points), so a mean of them can differ from an equal mean in its last digits
TOLERANCE = (1e-3, 1e-3, 1e-3)


def _mean(df: pd.DataFrame, column: str) -> float:
    return float(df[column].mean()) if column in df.columns and df[column].notna().any() else np.nan


def _gain_points(df: pd.DataFrame) -> float:
    """Mean of ``acc_after - acc_before`` over ``df``'s rows, in accuracy points (NaN if no rows)."""
    return float(100 * (df["acc_after"] - df["acc_before"]).mean()) if len(df) else np.nan


def most_common_layers(df: pd.DataFrame) -> tuple[str, int, int] | None:
    """The most frequent ``layers`` value of ``df``'s rows (ties: the first in sorted order), with
    how many rows picked it and how many name layers at all; None if no row does."""
    if "layers" not in df.columns:
        return None
    counts = df["layers"].dropna().astype(str).value_counts()
    if counts.empty:
        return None
    top = sorted(counts[counts == counts.max()].index)[0]
    return top, int(counts[top]), int(counts.sum())


def strategy_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per modality and strategy (in the table's order, 16-bit runs after their fp32 run) with the table's numbers.

    Costs are means over every row of the strategy (each row is one calibration session, day 1 or
    longitudinal): trained parameters, peak L2 of a step (kB), energy of a session (mJ); they vary
    by row only where the step does (``sparse`` picks its layers per base model). Gains are
    ``acc_after - acc_before`` (points), averaged over the day-1 rows (subjects x seeds) and over
    the longitudinal rows (subjects x later sessions x seeds).
    """
    rows = []
    for modality in sorted(df["modality"].unique()):
        m = df[df["modality"] == modality]
        for strategy in label_order(m["strategy"]):
            g = m[m["strategy"] == strategy]
            fits = all_fit(g["device_fits_on_chip"]) if "device_fits_on_chip" in g.columns else np.nan
            rows.append({
                "modality": modality, "strategy": strategy,
                "trained_params": _mean(g, "trained_params"),
                "peak_l2_kb": _mean(g, "device_peak_l2_bytes") / 1000,
                "energy_mj": _mean(g, "device_calib_energy_mj"),
                "fits": fits,
                "day1_gain": _gain_points(g[g["scenario"] == "day1"]),
                "long_gain": _gain_points(g[g["scenario"] == "longitudinal"]),
                "layers": most_common_layers(g[g["scenario"] == "day1"]),
            })
    return pd.DataFrame(rows)


def dominates(a: tuple[float, float, float], b: tuple[float, float, float], tol=TOLERANCE) -> bool:
    """Whether ``a`` = (gain, peak L2, energy) dominates ``b``: no worse on all three (gain higher,
    the costs lower) and strictly better on at least one; differences within ``tol`` are ties."""
    signs = (1, -1, -1)  # gain is better higher, the costs lower
    better = [s * (x - y) > t for s, x, y, t in zip(signs, a, b, tol)]
    worse = [s * (y - x) > t for s, x, y, t in zip(signs, a, b, tol)]
    return any(better) and not any(worse)


def dominated_by(points: Mapping[str, tuple[float, float, float]], tol=TOLERANCE) -> dict[str, list[str]]:
    """For each candidate, the candidates that dominate it: an empty list is Pareto-optimal.

    Two candidates equal on all three (within ``tol``) do not dominate each other: both stay."""
    return {name: [other for other, q in points.items() if other != name and dominates(q, p, tol)]
            for name, p in points.items()}


def pareto_candidates(summary: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """The strategies of one modality that compete: all but the reference ``none``, and only those
    that fit on the chip with a day-1 gain, a peak L2 and a session energy to compare."""
    out = {}
    for _, r in summary.iterrows():
        point = (r["day1_gain"], r["peak_l2_kb"], r["energy_mj"])
        if r["strategy"] != REFERENCE and fits_cell(r["fits"]) and not np.isnan(point).any():
            out[r["strategy"]] = point
    return out


def pareto_marks(summary: pd.DataFrame) -> dict[str, str]:
    """The table's Pareto cell per strategy of one modality."""
    beaten = dominated_by(pareto_candidates(summary))
    marks = {}
    for s, fits in zip(summary["strategy"], summary["fits"]):
        if s == REFERENCE:
            marks[s] = "reference"
        elif s not in beaten:
            marks[s] = "— (not costed)" if fits != fits or fits is None else "— (not on chip)"
        else:
            marks[s] = "**yes**" if not beaten[s] else "no (" + ", ".join(beaten[s]) + ")"
    return marks


def _fmt(value: float, spec: str) -> str:
    return "—" if value is None or value != value else format(value, spec)


def comparison_markdown(summary: pd.DataFrame) -> str:
    """One modality's table: a row per strategy, its Pareto mark in the last column."""
    marks = pareto_marks(summary)
    lines = ["| strategy | trained parameters | peak L2 (kB) | energy / calibration session (mJ) | "
             "day-1 gain (points) | longitudinal gain (points) | Pareto-optimal |",
             "|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        none = r["strategy"] == REFERENCE
        lines.append(
            f"| {r['strategy']} | {_fmt(r['trained_params'], ',.0f')} | {'—' if none else _fmt(r['peak_l2_kb'], ',.1f')} | "
            f"{'—' if none else _fmt(r['energy_mj'], ',.1f')} | {_fmt(r['day1_gain'], '+.1f')} | "
            f"{_fmt(r['long_gain'], '+.1f')} | {marks[r['strategy']]} |")
    return "\n".join(lines) + "\n"


def _share(part: float, whole: float) -> str | None:
    """``part`` as a percentage of ``whole``, or None where that means nothing (a missing value,
    or a whole of zero or less)."""
    if part != part or whole != whole or whole <= 0:
        return None
    return f"{100 * part / whole:.0f}%"


def edge_sentences(summary: pd.DataFrame) -> list[str]:
    """How each of ``bias``, ``sparse``, ``lora`` compares with ``edge`` in one modality: its share of
    edge's day-1 gain, and its peak L2 and session energy as a fraction of edge's."""
    by = {r["strategy"]: r for _, r in summary.iterrows()}
    if EDGE not in by:
        return ["`edge` is not in these results, so there is nothing to compare with it."]
    edge = by[EDGE]
    out = []
    for s in (s for s in LIGHTWEIGHT if s in by):
        r = by[s]
        gain = _share(r["day1_gain"], edge["day1_gain"])
        gain_text = (f"gets {gain} of `edge`'s day-1 gain ({r['day1_gain']:+.1f} vs {edge['day1_gain']:+.1f} points)"
                     if gain else f"gains {_fmt(r['day1_gain'], '+.1f')} points on day 1 against `edge`'s "
                     f"{_fmt(edge['day1_gain'], '+.1f')} (no share: `edge` does not gain on day 1)")
        peak, energy = _share(r["peak_l2_kb"], edge["peak_l2_kb"]), _share(r["energy_mj"], edge["energy_mj"])
        costs = []
        if peak:
            costs.append(f"{peak} of its peak L2 ({r['peak_l2_kb']:,.1f} vs {edge['peak_l2_kb']:,.1f} kB)")
        if energy:
            costs.append(f"{energy} of its energy per calibration session ({r['energy_mj']:,.1f} vs "
                         f"{edge['energy_mj']:,.1f} mJ)")
        cost_text = (" with " + " and ".join(costs)) if costs else \
            "; no chip cost to compare (one of the two does not fit in L2 or was not costed)"
        out.append(f"- `{s}` {gain_text}{cost_text}.{_layers_text(r['layers']) if s == 'sparse' else ''}")
    return out


def _layers_text(pick: tuple[str, int, int] | None) -> str:
    """``sparse``'s layers in a sentence: the most common pick, and how often it was made."""
    if not pick:
        return ""
    layers, n, total = pick
    return f" It trains {layers}" + (" (in every day-1 run)." if n == total else f" (in {n} of {total} day-1 runs; the most common pick).")


def comparison_section(df: pd.DataFrame) -> str:
    """The report section: a table per modality, and the sentences comparing the lightweight
    strategies with ``edge`` under each."""
    summary = strategy_summary(df)
    parts = [
        "## Strategies side by side: what each gains for what it costs", "",
        "Per modality: parameters trained; peak L2 of one training step and energy of one whole calibration "
        "session on the chip (means over every session, day 1 and longitudinal); and the gain of adapting, "
        "`acc_after - acc_before` in accuracy points, averaged over subjects and seeds on day 1, and over "
        "subjects, later sessions and seeds longitudinally. A gain is over the strategy's own starting "
        "model: the pretrained model on day 1 (`edge` starts from its GroupNorm one, the others from the "
        "BatchNorm one, so this differs from the gain over `none` in the panels above), the previous "
        "session's adapted model on a longitudinal session.",
        "",
        "**Pareto-optimal**: a strategy that fits on the chip and that no other such strategy of the "
        "modality dominates, where A dominates B if A's day-1 gain is at least B's, A's peak L2 and energy "
        "per session are at most B's, and A is strictly better on at least one of the three (differences "
        "below 0.001 in the table's units are ties, so two equal strategies are both optimal). `none` is "
        "excluded: it is the zero-cost reference every gain is measured from, and would be optimal by "
        "costing nothing. A strategy that does not fit in L2 has no session on the chip and is not a "
        "candidate. \"no (…)\" names the strategies that dominate it.",
        "",
    ]
    for modality in sorted(summary["modality"].unique()) if not summary.empty else []:
        s = summary[summary["modality"] == modality].reset_index(drop=True)
        parts += [f"### {modality.upper()}", "", comparison_markdown(s), *edge_sentences(s), ""]
    return "\n".join(parts)
