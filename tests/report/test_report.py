"""The report's tables and figures, on a small hand-made results frame (no pipeline run)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from biotrain.report.study import session_labels, write_report
from biotrain.report.summary import summarize
from biotrain.report.tables import accuracy_table


def _results(seeds=(0, 1), sessions=("0", "1")) -> pd.DataFrame:
    rows = []
    for subject in (1, 2):
        for k, session in enumerate(sessions):
            scenario = "day1" if k == 0 else "longitudinal"
            for strategy, acc in (("none", 0.5), ("last_layer", 0.75), ("full", 0.9), ("edge", 1.0)):
                for seed in seeds:
                    rows.append({"dataset": "synthetic", "modality": "eeg", "model": "mi_bminet", "subject": subject,
                                 "session": session, "scenario": scenario, "strategy": strategy, "seed": seed,
                                 "n_calib": 48, "n_test": 12, "acc_before": 0.5,
                                 # the gain of last_layer over none is exactly 0 for subject 1
                                 "acc_after": 0.5 if (strategy == "last_layer" and subject == 1) else acc + 0.01 * seed})
    return pd.DataFrame(rows)


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
