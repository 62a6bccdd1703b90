"""16-bit runs beside their fp32 run: accuracy per scenario (mean and spread over seeds), chip cost
where the chip model has one, and one sentence per 16-bit run saying what 16 bits cost.

A 16-bit run is a results row whose ``strategy`` is ``<strategy>@bf16`` or ``@fp16``
(``strategy_table.parse_strategy``). Differences are judged against one test window: a 16-bit
accuracy within one window of fp32's is a tie (``100 / n_test`` points, the smallest step a
session's accuracy can take), since a smaller difference is below what the test set can resolve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..strategy_table import PRECISIONS, label_order, parse_strategy
from .summary import SCENARIOS


def _seed_stats(rows: pd.DataFrame) -> tuple[float, float]:
    """Mean accuracy (points) over rows, and the standard deviation across seeds of the per-seed mean."""
    per_seed = rows.groupby("seed")["acc_after"].mean() * 100
    return float(rows["acc_after"].mean() * 100), float(per_seed.std(ddof=0)) if len(per_seed) > 1 else 0.0


def _cost(rows: pd.DataFrame, column: str, scale: float = 1.0) -> float:
    return float(rows[column].mean() * scale) if column in rows.columns and rows[column].notna().any() else np.nan


def precision_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per modality, strategy and precision (only strategies with a 16-bit run)."""
    named = df.assign(base=[parse_strategy(s)[0] for s in df["strategy"]],
                      precision=[parse_strategy(s)[1] for s in df["strategy"]])
    out = []
    for modality in sorted(named["modality"].unique()):
        m = named[named["modality"] == modality]
        for base in dict.fromkeys(parse_strategy(s)[0] for s in label_order(m["strategy"])):
            b = m[m["base"] == base]
            if set(b["precision"]) <= {"fp32"}:
                continue
            for precision in (p for p in PRECISIONS if p in set(b["precision"])):
                rows = b[b["precision"] == precision]
                row = {"modality": modality, "strategy": base, "precision": precision,
                       "n_test": float(rows["n_test"].mean()),
                       "peak_l2_kb": _cost(rows, "device_peak_l2_bytes", 1e-3),
                       "samples_per_s": _cost(rows, "device_samples_per_s")}
                for scenario in SCENARIOS:
                    s = rows[rows["scenario"] == scenario]
                    row[f"{scenario}_acc"], row[f"{scenario}_std"] = _seed_stats(s) if len(s) else (np.nan, np.nan)
                out.append(row)
    return pd.DataFrame(out)


def verdict(table: pd.DataFrame, modality: str, strategy: str, precision: str) -> str:
    """One sentence: what ``precision`` costs ``strategy`` in ``modality`` against its fp32 run."""
    t = table[(table["modality"] == modality) & (table["strategy"] == strategy)]
    ref, run = t[t["precision"] == "fp32"], t[t["precision"] == precision]
    if ref.empty:
        return f"`{strategy}@{precision}` ({modality}): no fp32 run of `{strategy}` to compare with."
    ref, run = ref.iloc[0], run.iloc[0]
    window = 100.0 / run["n_test"]
    parts = []
    for scenario in SCENARIOS:
        a, b = run[f"{scenario}_acc"], ref[f"{scenario}_acc"]
        if a != a or b != b:
            continue
        d = a - b
        what = ("within one test window of fp32" if abs(d) <= window else
                f"{-d:.1f} points ({-d / window:.1f} test windows) below fp32" if d < 0 else
                f"{d:.1f} points above fp32")
        parts.append(f"{scenario} {a:.1f}% vs {b:.1f}%, {what}")
    lost = any(run[f"{s}_acc"] < ref[f"{s}_acc"] - window for s in SCENARIOS
               if run[f"{s}_acc"] == run[f"{s}_acc"] and ref[f"{s}_acc"] == ref[f"{s}_acc"])
    head = "costs accuracy" if lost else "costs nothing the test set can resolve"
    return f"`{strategy}@{precision}` ({modality}) {head}: " + "; ".join(parts) + "."


def precision_section(df: pd.DataFrame) -> str:
    """The report section, or '' when no strategy ran in 16 bits."""
    table = precision_table(df)
    if table.empty:
        return ""
    lines = ["## 16-bit training beside fp32", "",
             "Accuracy after adaptation (mean over subjects, sessions and seeds; ± the spread of the per-seed "
             "means), one row per precision of each strategy that ran in 16 bits (docs/adaptation.md says what is "
             "16-bit). Peak L2 and samples/s come from the chip model; empty where it has no cost for the run.", "",
             "| modality | strategy | precision | day-1 accuracy (%) | longitudinal accuracy (%) | peak L2 (kB) | "
             "samples/s |", "|---|---|---|---|---|---|---|"]

    def cell(v, spec):
        return "—" if v != v else format(v, spec)
    for _, r in table.iterrows():
        acc = [f"{r[f'{s}_acc']:.1f} ± {r[f'{s}_std']:.1f}" if r[f"{s}_acc"] == r[f"{s}_acc"] else "—"
               for s in SCENARIOS]
        lines.append(f"| {r['modality']} | {r['strategy']} | {r['precision']} | {acc[0]} | {acc[1]} | "
                     f"{cell(r['peak_l2_kb'], ',.1f')} | {cell(r['samples_per_s'], '.1f')} |")
    lines += ["", "Verdicts (a difference within one test window, 100 / n_test points, is a tie):", ""]
    for _, r in table[table["precision"] != "fp32"].iterrows():
        lines.append("- " + verdict(table, r["modality"], r["strategy"], r["precision"]))
    return "\n".join(lines) + "\n"
