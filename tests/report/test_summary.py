"""The output contract (``results/adaptation.csv``, ``metrics/adaptation.json``) on hand-made rows."""

from __future__ import annotations

import io
import json
import random

import pandas as pd
import pytest

from biotrain.report.summary import COLUMNS, results_frame, summarize, write_results


def _rows() -> list[dict]:
    """Two subjects, two sessions, two strategies, two seeds; host timings that differ every row."""
    rows = []
    for subject in (1, 2):
        for session, scenario in (("0", "day1"), ("1", "longitudinal")):
            for strategy in ("none", "edge"):
                for seed in (0, 1):
                    acc = 0.5 if strategy == "none" else 0.6 + 0.1 * seed + 0.01 * subject
                    rows.append({"dataset": "synthetic", "modality": "eeg", "model": "mi_bminet", "subject": subject,
                                 "session": session, "scenario": scenario, "strategy": strategy, "seed": seed,
                                 "n_calib": 8, "n_test": 2, "acc_before": 0.5, "acc_after": acc,
                                 "train_seconds": random.random(), "work_seconds": random.random(),
                                 "task_seconds": random.random(), "device_fits_on_chip": strategy == "edge"})
    return rows


def test_summary_is_mean_over_rows_and_spread_over_seed_means():
    metrics = summarize(pd.DataFrame(_rows()))
    assert list(metrics) == ["eeg"] and list(metrics["eeg"]) == ["day1", "longitudinal"]
    assert list(metrics["eeg"]["day1"]) == ["edge", "none"]  # sorted, whatever the row order
    edge = metrics["eeg"]["day1"]["edge"]
    # per-seed means over the two subjects: 0.615 (seed 0) and 0.715 (seed 1)
    assert edge == {"acc_mean": 0.665, "acc_std": 0.05, "n": 4}
    assert metrics["eeg"]["longitudinal"]["none"] == {"acc_mean": 0.5, "acc_std": 0.0, "n": 4}


def test_one_seed_has_no_spread_even_across_subjects():
    df = pd.DataFrame([r for r in _rows() if r["seed"] == 0])
    edge = summarize(df)["eeg"]["day1"]["edge"]
    assert edge["acc_std"] == 0.0 and edge["acc_mean"] == pytest.approx(0.615) and edge["n"] == 2


def test_written_results_do_not_depend_on_row_order_or_host_timings(tmp_path):
    rows = _rows()
    df = write_results(rows, tmp_path / "a.csv", tmp_path / "a.json")
    shuffled = [dict(r, train_seconds=random.random()) for r in random.Random(1).sample(rows, len(rows))]
    write_results(shuffled, tmp_path / "b.csv", tmp_path / "b.json")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()

    csv = pd.read_csv(io.StringIO((tmp_path / "a.csv").read_text()), dtype={"session": str})
    assert list(csv.columns) == [c for c in COLUMNS if c != "train_seconds"] + ["device_fits_on_chip"]
    assert "train_seconds" in df.columns and "work_seconds" in df.columns  # timings stay in the returned frame
    assert csv[["modality", "scenario", "strategy", "subject", "session", "seed"]].equals(
        csv.sort_values(["modality", "scenario", "strategy", "subject", "session", "seed"])[
            ["modality", "scenario", "strategy", "subject", "session", "seed"]].reset_index(drop=True))
    assert json.loads((tmp_path / "a.json").read_text()) == summarize(df)


def test_rows_lacking_a_contract_column_are_refused(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "n_test"} for r in _rows()]
    with pytest.raises(ValueError, match=r"lack columns \['n_test'\]"):
        write_results(rows, tmp_path / "a.csv", tmp_path / "a.json")
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "a.json").exists()
    assert results_frame(_rows()).columns[: len(COLUMNS)].tolist() == COLUMNS
