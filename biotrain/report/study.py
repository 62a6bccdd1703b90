"""``reports/study.md``: the study's answer in tables and plots.

Plots (PNG, beside the report): accuracy per strategy per scenario with error bars, the
per-subject gain over ``none`` on day 1, and accuracy across sessions per strategy.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..strategy_table import label_order  # noqa: E402
from ..data.order import natural_key  # noqa: E402
from ..io import atomic_path, write_text  # noqa: E402
from .summary import SCENARIOS  # noqa: E402
from .tables import accuracy_table  # noqa: E402

# one colour and one marker per strategy of ``STRATEGY_NAMES`` (a test checks every strategy has a
# distinct pair): seaborn's "deep" palette, which stays apart for seven series and in grey print
COLORS = {"none": "#9e9e9e", "last_layer": "#4c72b0", "full": "#dd8452", "edge": "#55a868",
          "bias": "#c44e52", "sparse": "#8172b3", "lora": "#937860"}
MARKERS = {"none": "o", "last_layer": "s", "full": "^", "edge": "h", "bias": "D", "sparse": "P", "lora": "v"}


# a 16-bit run (``edge@bf16``) wears its strategy's colour and marker, its bars hatched
HATCHES = {"fp32": None, "bf16": "//", "fp16": "xx"}


def color_of(label: str) -> str:
    return COLORS.get(label.partition("@")[0], "black")


def marker_of(label: str) -> str:
    return MARKERS.get(label.partition("@")[0], "o")


def hatch_of(label: str) -> str | None:
    return HATCHES.get(label.partition("@")[2] or "fp32")


def _strategies(df: pd.DataFrame) -> list[str]:
    return label_order(df["strategy"])


def _save(fig, path: Path, dpi: int) -> None:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def seeds_per_strategy(df: pd.DataFrame) -> dict[tuple[str, str], int]:
    """How many adaptation seeds each (modality, strategy) ran: a spread needs at least two."""
    return {k: int(v) for k, v in df.groupby(["modality", "strategy"])["seed"].nunique().items()}


def _has_spread(seeds: dict, modality: str, strategy: str) -> bool:
    """``none`` never trains (its seeds are copies), and one seed has no spread to show."""
    return strategy != "none" and seeds.get((modality, strategy), 0) > 1


def _legend_above(fig, axes) -> None:
    """One legend for the figure, above the panels, so it never covers data."""
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    fig.legend([handles[k] for k in labels], labels, loc="lower center", bbox_to_anchor=(0.5, 1.0),
               ncol=min(len(labels), 9), fontsize=8, frameon=False)


def plot_accuracy(df: pd.DataFrame, metrics: dict, path: Path, dpi: int) -> None:
    modalities = sorted(metrics)
    seeds = seeds_per_strategy(df)
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.5 * len(modalities), 4), squeeze=False)
    for ax, modality in zip(axes[0], modalities):
        strategies = _strategies(df[df["modality"] == modality])
        width = 0.8 / max(len(strategies), 1)
        for k, strategy in enumerate(strategies):
            means, stds = [], []
            for scenario in SCENARIOS:
                m = metrics[modality].get(scenario, {}).get(strategy)
                means.append(100 * m["acc_mean"] if m else np.nan)
                stds.append(100 * m["acc_std"] if m and _has_spread(seeds, modality, strategy) else np.nan)
            x = np.arange(len(SCENARIOS)) + (k - (len(strategies) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, capsize=3, label=strategy, color=color_of(strategy), hatch=hatch_of(strategy),
                   error_kw={"elinewidth": 1})
            for xi, mi in zip(x, means):
                if mi == mi:
                    ax.annotate(f"{mi:.0f}", (xi, mi), xytext=(0, 2), textcoords="offset points",
                                ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(SCENARIOS)), ["day 1 (new subject)", "longitudinal"])
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 110)
        ax.set_yticks(range(0, 101, 20))
        ax.set_title(f"{modality.upper()}: accuracy after adaptation", fontsize=10)
    n_seeds = df.loc[df["strategy"] != "none", "seed"].nunique()
    note = ("bars: mean over subjects, sessions and seeds; error bars: std across seeds of the per-seed mean"
            if n_seeds > 1 else "bars: mean over subjects and sessions (one seed: no spread across seeds to show)")
    fig.text(0.5, -0.02, note, ha="center", va="top", fontsize=8, color="#444444")
    _legend_above(fig, axes)
    _save(fig, path, dpi)


def gain_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per modality and subject, day-1 accuracy gain of each strategy over ``none`` (points)."""
    day1 = df[df["scenario"] == "day1"]
    acc = day1.groupby(["modality", "subject", "strategy"])["acc_after"].mean().unstack("strategy")
    if "none" not in acc:
        return pd.DataFrame()
    gains = acc.sub(acc["none"], axis=0).drop(columns="none") * 100
    return gains[label_order(gains.columns)]


def plot_gain(df: pd.DataFrame, path: Path, dpi: int) -> None:
    gains = gain_table(df)
    modalities = sorted(df["modality"].unique())
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.5 * len(modalities), 4), squeeze=False)
    for ax, modality in zip(axes[0], modalities):
        if gains.empty or modality not in gains.index.get_level_values(0):
            ax.text(0.5, 0.5, "no 'none' baseline in this run", ha="center", transform=ax.transAxes)
            continue
        g = gains.loc[modality]
        width = 0.8 / max(len(g.columns), 1)
        for k, strategy in enumerate(g.columns):
            x = np.arange(len(g)) + (k - (len(g.columns) - 1) / 2) * width
            values = g[strategy].to_numpy()
            ax.bar(x, values, width, label=strategy, color=color_of(strategy), hatch=hatch_of(strategy))
            zero = np.isclose(values, 0)  # a zero-height bar is invisible: mark it on the axis
            if zero.any():
                ax.scatter(x[zero], values[zero], marker="D", s=18, color=color_of(strategy),
                           edgecolors="black", linewidths=0.5, zorder=3)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(g)), [str(s) for s in g.index])
        ax.set_xlabel("held-out subject")
        ax.set_ylabel("gain over none (accuracy points)")
        ax.set_title(f"{modality.upper()}: day-1 gain per subject (mean over seeds)", fontsize=10)
        lo, hi = ax.get_ylim()  # bars stick to 0: leave room below it so the zero line and diamonds show
        ax.set_ylim(min(lo, -0.06 * (hi - lo)), hi + 0.04 * (hi - lo))
    fig.text(0.5, -0.02, "a diamond on the zero line marks a gain of exactly 0", ha="center", va="top",
             fontsize=8, color="#444444")
    _legend_above(fig, axes)
    _save(fig, path, dpi)


def session_labels(df: pd.DataFrame) -> dict[str, dict[int, str]]:
    """Per modality, the tick label of each session position: the dataset's own session name
    (as in the CSV and MLflow) when every subject has the same sessions, else the position."""
    labels = {}
    for modality, g in df.groupby("modality"):
        orders = {tuple(sorted(s["session"].astype(str).unique(), key=natural_key)) for _, s in g.groupby("subject")}
        longest = max(orders, key=len)
        same = len(orders) == 1
        labels[modality] = {i + 1: (f"session {name}" if same else f"#{i + 1}") + ("\n(day 1)" if i == 0 else "")
                            for i, name in enumerate(longest)}
    return labels


def session_curve(df: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy after adaptation per modality, strategy and session position (1 = day 1)."""
    rows = []
    for (modality, subject), g in df.groupby(["modality", "subject"]):
        order = sorted(g["session"].unique(), key=natural_key)
        position = {s: i + 1 for i, s in enumerate(order)}
        for _, r in g.iterrows():
            rows.append({"modality": modality, "strategy": r["strategy"], "session_index": position[r["session"]],
                         "acc_after": r["acc_after"]})
    out = pd.DataFrame(rows)
    return out.groupby(["modality", "strategy", "session_index"])["acc_after"].agg(["mean", "std"]).reset_index()


def plot_sessions(df: pd.DataFrame, path: Path, dpi: int) -> None:
    curve = session_curve(df)
    labels = session_labels(df)
    modalities = sorted(df["modality"].unique())
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.5 * len(modalities), 4), squeeze=False)
    for ax, modality in zip(axes[0], modalities):
        strategies = _strategies(df[df["modality"] == modality])
        for k, strategy in enumerate(strategies):
            c = curve[(curve["modality"] == modality) & (curve["strategy"] == strategy)]
            dodge = (k - (len(strategies) - 1) / 2) * 0.06  # error bars side by side, not on one x
            sixteen = hatch_of(strategy) is not None  # a 16-bit run: dashed, hollow markers beside its fp32 twin
            ax.errorbar(c["session_index"] + dodge, 100 * c["mean"], yerr=100 * c["std"].fillna(0), marker=marker_of(strategy),
                        capsize=3, label=strategy, color=color_of(strategy), clip_on=False,
                        linestyle="--" if sixteen else "-", markerfacecolor="white" if sixteen else None)
        ax.set_xlabel("session (day 1, then longitudinal: each starts from the previous one's model)", fontsize=8)
        ax.set_ylabel("test accuracy after adaptation (%)")
        ax.set_ylim(0, 105)
        ax.set_yticks(range(0, 101, 20))
        ticks = sorted(curve[curve["modality"] == modality]["session_index"].unique())
        ax.set_xticks(ticks, [labels[modality].get(t, str(t)) for t in ticks], fontsize=8)
        ax.set_xlim(ticks[0] - 0.4, ticks[-1] + 0.4)
        ax.set_title(f"{modality.upper()}: accuracy across sessions", fontsize=10)
    fig.text(0.5, -0.04, "points: mean over subjects and seeds; error bars: one standard deviation across "
             "subjects and seeds", ha="center", va="top", fontsize=8, color="#444444")
    _legend_above(fig, axes)
    _save(fig, path, dpi)


def plot_subject_curves(df: pd.DataFrame, path: Path, dpi: int) -> None:
    """Per model and strategy, each subject's accuracy across sessions (one line per subject)."""
    modalities = sorted(df["modality"].unique())
    strategies = _strategies(df)
    labels = session_labels(df)
    fig, axes = plt.subplots(len(modalities), len(strategies), figsize=(3.2 * len(strategies), 3 * len(modalities)),
                             squeeze=False, sharey=True)
    for row, modality in zip(axes, modalities):
        for ax, strategy in zip(row, strategies):
            g = df[(df["modality"] == modality) & (df["strategy"] == strategy)]
            for subject, s in g.groupby("subject"):
                order = sorted(s["session"].unique(), key=natural_key)
                means = s.groupby("session")["acc_after"].mean().reindex(order)
                ax.plot(range(1, len(order) + 1), 100 * means.to_numpy(), marker=".", lw=1, label=f"subject {subject}",
                        clip_on=False)
            ax.set_title(f"{modality.upper()} {strategy}", fontsize=9)
            ax.set_ylim(0, 105)
            ax.set_yticks(range(0, 101, 20))
            n = int(g.groupby("subject")["session"].nunique().max()) if len(g) else 1
            ax.set_xticks(range(1, n + 1), [labels[modality].get(t, str(t)).split("\n")[0].replace("session ", "")
                                            for t in range(1, n + 1)], fontsize=8)
            ax.set_xlim(0.7, n + 0.3)
            ax.set_xlabel("session (first = day 1)", fontsize=8)
        row[0].set_ylabel("accuracy after adaptation (%)")
    _legend_above(fig, axes)
    _save(fig, path, dpi)


def _gain_markdown(df: pd.DataFrame) -> str:
    gains = gain_table(df)
    if gains.empty:
        return "_No `none` baseline in this run._\n"
    lines = ["| modality | subject | " + " | ".join(gains.columns) + " |", "|---|---|" + "---|" * len(gains.columns)]
    for (modality, subject), row in gains.iterrows():
        lines.append(f"| {modality} | {subject} | " + " | ".join(f"{v:+.1f}" for v in row) + " |")
    return "\n".join(lines) + "\n"


def _resolution_line(df: pd.DataFrame) -> str:
    """How much one test window moves an accuracy: the smallest difference the tables can show."""
    parts = []
    for modality, g in df.groupby("modality"):
        n = g["n_test"]
        parts.append(f"{modality.upper()} {int(n.min())}-{int(n.max())} (one window = {100 / n.min():.1f} points at most)"
                     if n.min() != n.max() else f"{modality.upper()} {int(n.min())} (one window = {100 / n.min():.1f} points)")
    return "Test windows per session: " + "; ".join(parts) + "."


def write_report(df: pd.DataFrame, metrics: dict, out_dir: str | Path, dpi: int = 120, extra_sections: list[str] | None = None) -> Path:
    """Write ``study.md`` and its figures into ``out_dir``; returns the report's path."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    plot_accuracy(df, metrics, fig_dir / "accuracy.png", dpi)
    plot_gain(df, fig_dir / "gain_per_subject.png", dpi)
    plot_sessions(df, fig_dir / "sessions.png", dpi)
    plot_subject_curves(df, fig_dir / "subjects_sessions.png", dpi)
    datasets = ", ".join(sorted(df["dataset"].unique()))
    text = "\n".join([
        "# Study report",
        "",
        f"Dataset(s): {datasets}. Subjects: {df['subject'].nunique()}. Seeds: {df['seed'].nunique()}. "
        f"Result rows: {len(df)} (`results/adaptation.csv`).",
        "",
        _resolution_line(df),
        "",
        "## Accuracy after adaptation",
        "",
        accuracy_table(df, metrics),
        "![accuracy per strategy](figures/accuracy.png)",
        "",
        "## Day-1 gain over the non-adapted model, per subject (accuracy points, mean over seeds)",
        "",
        _gain_markdown(df),
        "![gain per subject](figures/gain_per_subject.png)",
        "",
        "## Across sessions",
        "",
        "Sessions are named as in `results/adaptation.csv` and MLflow (the dataset's own session names). "
        "The first session is the day-1 calibration; each later session starts from the previous one's adapted model.",
        "",
        "![accuracy across sessions](figures/sessions.png)",
        "",
        "Per subject (one line each):",
        "",
        "![per-subject accuracy across sessions](figures/subjects_sessions.png)",
        "",
        *(extra_sections or []),
    ])
    path = out_dir / "study.md"
    write_text(path, text)
    return path
