"""Any MOABB dataset by class name runs the whole pipeline: FakeDataset with unusual shapes."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers import make_project, run_dvc, tiny_params

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]  # the session's Prefect server


def test_fake_dataset_with_unusual_channels_rate_and_sessions_runs_end_to_end(tmp_path):
    params = tiny_params()
    params["data"]["dataset"] = {"name": "FakeDataset", "kwargs": {
        "n_subjects": 3, "n_sessions": 3, "n_runs": 1, "channels": ["FC1", "Cz", "CP2", "Pz", "Oz"], "sfreq": 160,
        "event_list": ["left_hand", "right_hand"], "n_events": 40, "duration": 150, "seed": 7}}
    params["data"]["modalities"] = ["eeg"]
    params["data"]["eeg"].update(dataset_kwargs={}, channels=None, sfreq=80.0, tmin=0.0, n_times=160, fmax=30.0)
    params["pretrain"]["epochs"] = 2
    params["adapt"].update(epochs=2, strategies=["none", "edge"])  # one untrained, one trained: both norms
    project = make_project(tmp_path / "fake", params)
    run_dvc(project, "repro")
    df = pd.read_csv(project / "results/adaptation.csv", dtype={"session": str})
    assert set(df["dataset"]) == {"FakeDataset"} and set(df["subject"]) == {1, 2, 3}
    assert sorted(df["session"].unique()) == ["0", "1", "2"]  # day 1 + two longitudinal sessions
    assert len(df) == 3 * 3 * 2  # subjects x sessions x strategies (one seed)
    assert "FakeDataset" in (project / "reports/study.md").read_text()
