"""The report's tables and figures, on a small hand-made results frame (no pipeline run)."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest

from biotrain.report import device as device_report
from biotrain.report.compare import comparison_section
from biotrain.report.device import device_section
from biotrain.report.study import COLORS, MARKERS, session_labels, write_report
from biotrain.report.summary import summarize
from biotrain.report.tables import accuracy_table
from biotrain.strategy_table import STRATEGY_NAMES


PAPER = (("none", 0.5), ("last_layer", 0.75), ("full", 0.9), ("edge", 1.0))
SEVEN = PAPER + (("bias", 0.8), ("sparse", 0.85), ("lora", 0.8))


def _results(seeds=(0, 1), sessions=("0", "1"), strategies=PAPER, modalities=("eeg",)) -> pd.DataFrame:
    rows = []
    for modality in modalities:
        for subject in (1, 2):
            for k, session in enumerate(sessions):
                scenario = "day1" if k == 0 else "longitudinal"
                for strategy, acc in strategies:
                    for seed in seeds:
                        rows.append({"dataset": "synthetic", "modality": modality, "model": "mi_bminet", "subject": subject,
                                     "session": session, "scenario": scenario, "strategy": strategy, "seed": seed,
                                     "n_calib": 48, "n_test": 12, "acc_before": 0.5,
                                     # the gain of last_layer over none is exactly 0 for subject 1
                                     "acc_after": 0.5 if (strategy == "last_layer" and subject == 1) else acc + 0.01 * seed})
    return pd.DataFrame(rows)


def _with_device(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the device columns and ``trained_params`` the study writes: a cost that grows
    with the strategy's place in ``STRATEGY_NAMES``; ``full`` does not fit, ``none`` is not costed."""
    rank = df["strategy"].map({s: i for i, s in enumerate(STRATEGY_NAMES)}).astype(float)
    costed = df["strategy"] != "none"
    fits = df["strategy"] != "full"
    return df.assign(
        trained_params=(100 * rank).astype(int),
        layers=np.where(df["strategy"] == "sparse", "pointwise+classifier", None),
        device_fits_on_chip=np.where(costed, fits, None),
        device_peak_l2_bytes=np.where(costed, 50_000 * rank + 3e6 * (~fits), np.nan),
        device_latency_ms_per_step=np.where(costed, 10.0 * rank, np.nan),
        device_samples_per_s=np.where(costed & fits, 100.0 / np.maximum(rank, 1), np.nan),
        device_energy_mj_per_sample=np.where(costed, 0.1 * rank, np.nan),
        device_calib_time_s=np.where(costed & fits, rank, np.nan),
        device_calib_energy_mj=np.where(costed & fits, 48 * 0.1 * rank, np.nan),
    )


def test_the_accuracy_table_is_one_row_per_scenario_and_a_column_per_strategy():
    table = accuracy_table(_results())
    lines = table.splitlines()
    assert lines[0] == "| modality | scenario | none | last_layer | full | edge |"
    day1 = next(line for line in lines if "| day 1 |" in line)
    cells = [c.strip() for c in day1.strip("|").split("|")]
    assert cells[:2] == ["EEG (mi_bminet)", "day 1"]
    assert "±" not in cells[2]            # none is never trained: no spread across seeds
    assert cells[4] == "90.5 ± 0.5"       # full: per-seed means 90 and 91


def test_one_seed_shows_no_spread_at_all():
    table = accuracy_table(_results(seeds=(0,)))
    assert "±" not in table.split("\n\n")[0] and "one seed" in table


def test_sessions_are_labelled_as_the_csv_names_them():
    labels = session_labels(_results(sessions=("0", "1", "2")))
    assert labels["eeg"] == {1: "session 0\n(day 1)", 2: "session 1", 3: "session 2"}


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_the_report_and_its_figures_are_ordinary_readable_files(tmp_path, seeds):
    df = _results(seeds=seeds)
    old = os.umask(0o022)
    try:
        path = write_report(df, summarize(df), tmp_path, dpi=40)
    finally:
        os.umask(old)
    figures = sorted((tmp_path / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["accuracy.png", "gain_per_subject.png", "sessions.png", "subjects_sessions.png"]
    for f in [path, *figures]:
        assert f.stat().st_mode & 0o777 == 0o644, (f, oct(f.stat().st_mode))
    text = path.read_text()
    assert "Test windows per session: EEG 12 (one window = 8.3 points)" in text


def test_biotrain_results_prints_the_table(tmp_path, capsys):
    from biotrain.cli import main

    _results().to_csv(tmp_path / "adaptation.csv", index=False)
    assert main(["results", "--csv", str(tmp_path / "adaptation.csv")]) == 0
    assert "| EEG (mi_bminet) | longitudinal |" in capsys.readouterr().out
    assert main(["results", "--csv", str(tmp_path / "missing.csv")]) == 2
    assert "run the study first" in capsys.readouterr().err


def test_every_strategy_has_a_colour_and_a_marker_of_its_own():
    assert set(COLORS) == set(MARKERS) == set(STRATEGY_NAMES)
    assert len(set(COLORS.values())) == len(set(MARKERS.values())) == len(STRATEGY_NAMES)


def test_the_report_shows_all_seven_strategies(tmp_path, monkeypatch):
    df = pd.read_csv(io.StringIO(_with_device(_results(strategies=SEVEN, modalities=("eeg", "eog"))).to_csv(index=False)),
                     dtype={"session": str})  # as the stage reads it back from the CSV
    legends = []
    save = device_report._save

    def keep_legend(fig, path, dpi):
        legends.append([t.get_text() for t in fig.legends[0].get_texts()])
        save(fig, path, dpi)

    monkeypatch.setattr(device_report, "_save", keep_legend)
    sections = [device_section(df, tmp_path, 1_400_000, 40), comparison_section(df)]
    path = write_report(df, summarize(df), tmp_path, dpi=40, extra_sections=sections)
    text = path.read_text()
    assert "| modality | scenario | none | last_layer | full | edge | bias | sparse | lora |" in text
    assert legends[0][:6] == list(STRATEGY_NAMES[1:])  # both Pareto panels: every trained strategy
    for modality in ("eeg", "eog"):
        for strategy in STRATEGY_NAMES:
            assert f"| {modality} | {strategy} |" in text  # the device table
    comparison = text.split("## Strategies side by side")[1]
    assert comparison.count("| strategy | trained parameters |") == 2
    assert [line.split("|")[1].strip() for line in comparison.splitlines() if line.startswith("| ")][1:8] == \
        ["none", "last_layer", "full", "edge", "bias", "sparse", "lora"]
    assert comparison.count("- `sparse` gets") == 2 and "It trains pointwise+classifier (in every day-1 run)." in comparison
    assert (tmp_path / "figures" / "pareto.png").stat().st_size > 0


def test_biotrain_results_prints_seven_strategy_columns_in_table_order(tmp_path, capsys):
    from biotrain.cli import main

    shuffled = _results(strategies=SEVEN).sample(frac=1, random_state=0)
    shuffled.to_csv(tmp_path / "adaptation.csv", index=False)
    assert main(["results", "--csv", str(tmp_path / "adaptation.csv")]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "| modality | scenario | " + " | ".join(STRATEGY_NAMES) + " |"


def test_a_profile_runs_in_a_project_of_its_own(tmp_path):
    import shutil

    from biotrain.profiles import prepare_profile_run
    from tests.helpers import ROOT

    for name in ("biotrain", "stages", "flows", "profiles"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    from biotrain.errors import UserError

    with pytest.raises(UserError, match="no profile 'tinny'.*available: tiny"):
        prepare_profile_run(tmp_path, "tinny")
    dest = prepare_profile_run(tmp_path, "tiny")
    assert dest == tmp_path / "runs" / "tiny" and (dest / ".dvc").is_dir()
    assert (dest / "params.yaml").read_text() == (tmp_path / "profiles/tiny.yaml").read_text()
    assert (dest / "stages" / "adapt.py").is_file() and not (tmp_path / "params.yaml").exists()
