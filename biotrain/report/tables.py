"""The study's accuracy as one compact table: a row per modality and scenario, a column per strategy.

``dvc metrics show`` prints every metric as one wide row; this is the view a reader wants, shared
by the report and ``biotrain results``.
"""

from __future__ import annotations

import pandas as pd

from ..strategy_table import label_order
from .summary import SCENARIOS, summarize

SCENARIO_NAMES = {"day1": "day 1", "longitudinal": "longitudinal"}


def _cell(m: dict | None, spread: bool) -> str:
    if not m:
        return "—"
    mean = f"{100 * m['acc_mean']:.1f}"
    return f"{mean} ± {100 * m['acc_std']:.1f}" if spread else mean


def accuracy_table(df: pd.DataFrame, metrics: dict | None = None) -> str:
    """Markdown: mean test accuracy (%) per modality x scenario (rows) and strategy (columns).

    ``±`` is the standard deviation across seeds of the per-seed mean; it is left out where it
    means nothing: for ``none`` (never trained) and for a strategy run with a single seed.
    """
    metrics = metrics if metrics is not None else summarize(df)
    seeds = df.groupby(["modality", "strategy"])["seed"].nunique().to_dict()
    strategies = label_order(df["strategy"])
    models = df.groupby("modality")["model"].first().to_dict() if "model" in df else {}
    lines = ["| modality | scenario | " + " | ".join(strategies) + " |", "|---|---|" + "---|" * len(strategies)]
    for modality in sorted(metrics):
        name = f"{modality.upper()} ({models[modality]})" if modality in models else modality.upper()
        for scenario in SCENARIOS:
            cells = metrics[modality].get(scenario)
            if not cells:
                continue
            row = [_cell(cells.get(s), s != "none" and seeds.get((modality, s), 0) > 1) for s in strategies]
            lines.append(f"| {name} | {SCENARIO_NAMES[scenario]} | " + " | ".join(row) + " |")
    n_seeds = df.loc[df["strategy"] != "none", "seed"].nunique()
    note = ("Mean test accuracy (%) over subjects, sessions and seeds; ± is the standard deviation across "
            f"the {n_seeds} seeds of the per-seed mean (`none` is not trained, so it has none)."
            if n_seeds > 1 else
            "Mean test accuracy (%) over subjects and sessions; one seed, so no spread across seeds is shown.")
    return "\n".join(lines) + "\n\n" + note + "\n"
