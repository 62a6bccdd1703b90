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

from ..adaptation.strategies import STRATEGIES  # noqa: E402
from ..data.order import natural_key  # noqa: E402
from ..io import atomic_path, write_text  # noqa: E402
from .summary import SCENARIOS  # noqa: E402

COLORS = {"none": "#9e9e9e", "last_layer": "#4c72b0", "full": "#dd8452", "edge": "#55a868"}


def _strategies(df: pd.DataFrame) -> list[str]:
    return [s for s in STRATEGIES if s in set(df["strategy"])]


def _save(fig, path: Path, dpi: int) -> None:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def plot_accuracy(df: pd.DataFrame, metrics: dict, path: Path, dpi: int) -> None:
    modalities = sorted(metrics)
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.5 * len(modalities), 4), squeeze=False)
    for ax, modality in zip(axes[0], modalities):
        strategies = _strategies(df[df["modality"] == modality])
        width = 0.8 / max(len(strategies), 1)
        for k, strategy in enumerate(strategies):
            means, stds = [], []
            for scenario in SCENARIOS:
                m = metrics[modality].get(scenario, {}).get(strategy)
                means.append(100 * m["acc_mean"] if m else np.nan)
                stds.append(100 * m["acc_std"] if m else 0)
            x = np.arange(len(SCENARIOS)) + (k - (len(strategies) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, capsize=3, label=strategy, color=COLORS.get(strategy))
        ax.set_xticks(range(len(SCENARIOS)), ["day 1 (new subject)", "longitudinal"])
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{modality.upper()}: accuracy after adaptation (mean ± std over seeds)")
        ax.legend(loc="lower right", fontsize=8)
    _save(fig, path, dpi)


def gain_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per modality and subject, day-1 accuracy gain of each strategy over ``none`` (points)."""
    day1 = df[df["scenario"] == "day1"]
    acc = day1.groupby(["modality", "subject", "strategy"])["acc_after"].mean().unstack("strategy")
    if "none" not in acc:
        return pd.DataFrame()
    gains = acc.sub(acc["none"], axis=0).drop(columns="none") * 100
    return gains[[s for s in STRATEGIES if s in gains.columns]]


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
            ax.bar(x, g[strategy], width, label=strategy, color=COLORS.get(strategy))
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(g)), [str(s) for s in g.index])
        ax.set_xlabel("held-out subject")
        ax.set_ylabel("gain over none (accuracy points)")
        ax.set_title(f"{modality.upper()}: day-1 gain per subject")
        ax.legend(fontsize=8)
    _save(fig, path, dpi)


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
    modalities = sorted(df["modality"].unique())
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.5 * len(modalities), 4), squeeze=False)
    for ax, modality in zip(axes[0], modalities):
        for strategy in _strategies(df[df["modality"] == modality]):
            c = curve[(curve["modality"] == modality) & (curve["strategy"] == strategy)]
            ax.errorbar(c["session_index"], 100 * c["mean"], yerr=100 * c["std"].fillna(0), marker="o",
                        capsize=3, label=strategy, color=COLORS.get(strategy))
        ax.set_xlabel("session (1 = day 1, then longitudinal)")
        ax.set_ylabel("test accuracy after adaptation (%)")
        ax.set_ylim(0, 100)
        ax.set_xticks(sorted(curve[curve["modality"] == modality]["session_index"].unique()))
        ax.set_title(f"{modality.upper()}: accuracy across sessions")
        ax.legend(fontsize=8)
    _save(fig, path, dpi)


def plot_subject_curves(df: pd.DataFrame, path: Path, dpi: int) -> None:
    """Per model and strategy, each subject's accuracy across sessions (one line per subject)."""
    modalities = sorted(df["modality"].unique())
    strategies = _strategies(df)
    fig, axes = plt.subplots(len(modalities), len(strategies), figsize=(3.2 * len(strategies), 3 * len(modalities)),
                             squeeze=False, sharey=True)
    for row, modality in zip(axes, modalities):
        for ax, strategy in zip(row, strategies):
            g = df[(df["modality"] == modality) & (df["strategy"] == strategy)]
            for subject, s in g.groupby("subject"):
                order = sorted(s["session"].unique(), key=natural_key)
                means = s.groupby("session")["acc_after"].mean().reindex(order)
                ax.plot(range(1, len(order) + 1), 100 * means.to_numpy(), marker=".", lw=1, label=f"s{subject}")
            ax.set_title(f"{modality.upper()} {strategy}", fontsize=9)
            ax.set_ylim(0, 100)
            ax.set_xticks(range(1, 1 + (g.groupby("subject")["session"].nunique().max() if len(g) else 1)))
            ax.set_xlabel("session")
        row[0].set_ylabel("accuracy after adaptation (%)")
        row[-1].legend(fontsize=6, ncol=2, loc="lower right")
    _save(fig, path, dpi)


def _metrics_table(metrics: dict) -> str:
    lines = []
    for modality in sorted(metrics):
        lines += [f"### {modality.upper()}", "", "| scenario | strategy | accuracy (%) | n |", "|---|---|---|---|"]
        for scenario in SCENARIOS:
            for strategy in STRATEGIES:
                m = metrics[modality].get(scenario, {}).get(strategy)
                if m:
                    lines.append(f"| {scenario} | {strategy} | {100 * m['acc_mean']:.1f} ± {100 * m['acc_std']:.1f} | {m['n']} |")
        lines.append("")
    return "\n".join(lines)


def _gain_markdown(df: pd.DataFrame) -> str:
    gains = gain_table(df)
    if gains.empty:
        return "_No `none` baseline in this run._\n"
    lines = ["| modality | subject | " + " | ".join(gains.columns) + " |", "|---|---|" + "---|" * len(gains.columns)]
    for (modality, subject), row in gains.iterrows():
        lines.append(f"| {modality} | {subject} | " + " | ".join(f"{v:+.1f}" for v in row) + " |")
    return "\n".join(lines) + "\n"


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
        "## Accuracy after adaptation",
        "",
        "Mean over subjects, sessions and seeds; ± is the standard deviation across seeds of the per-seed mean.",
        "",
        _metrics_table(metrics),
        "![accuracy per strategy](figures/accuracy.png)",
        "",
        "## Day-1 gain over the non-adapted model, per subject (accuracy points, mean over seeds)",
        "",
        _gain_markdown(df),
        "![gain per subject](figures/gain_per_subject.png)",
        "",
        "## Across sessions",
        "",
        "Session 1 is the day-1 calibration; later sessions chain from the previous session's adapted model.",
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
