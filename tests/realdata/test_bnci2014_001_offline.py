"""MOABB's real BNCI2014_001 loader, offline: files in the real layout, placed where it looks.

Nothing is mocked: ``bnci_layout.write_bnci2014_001`` writes ``A01T.mat`` ... with the structure
of the BCI Competition IV 2a files under a temporary ``MNE_DATA``; MOABB resolves the download
URL to that path, pooch finds the file present (its hash is the one ``data_dl`` computed) and
nothing is downloaded. ``MOABB_DOWNLOAD_PROVIDER=upstream`` stops MOABB from first asking the
NEMAR mirror (offline that costs ~40 s of retries before it falls back to the same files).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from biotrain.data import windows as windows_mod
from biotrain.data.moabb_eog import (
    BNCI2014_001_EOG_BLOCKS,
    accepts_return_all_modalities,
    bnci2014_001_eog_calibration,
    calibration_windows,
    eog_channels,
    keep_eog,
)
from biotrain.data.windows import WindowSpec, extract_windows
from tests.helpers import make_project, run_dvc, tiny_params
from tests.realdata.bnci_layout import (
    EEG_CHANNELS,
    EOG_CHANNELS,
    bnci_path,
    mne_env,
    write_bnci2014_001,
)

CHANNELS = ["FC3", "FC4", "C5", "C3", "C1", "C2", "C4", "C6"]
RUNS, TRIALS_PER_CLASS = 2, 3  # per session: 2 runs x 12 trials (3 per class)


@pytest.fixture(scope="module")
def mne_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mne_data")
    write_bnci2014_001(root, subjects=(1, 2), runs=RUNS, trials_per_class=TRIALS_PER_CLASS)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in mne_env(root).items():
            mp.setenv(key, value)
        yield root


def _bnci(**kwargs):
    from moabb.datasets import BNCI2014_001

    return BNCI2014_001(**kwargs)


def test_files_sit_where_moabb_looks(mne_root):
    from moabb.datasets.download import data_dl

    url = "https://lampx.tugraz.at/~bci/database/001-2014/A01T.mat"
    assert data_dl(url, "BNCI") == str(bnci_path(mne_root, 1, "T"))
    assert _bnci().data_path(1) == [str(bnci_path(mne_root, 1, s)) for s in "TE"]


def test_moabb_reads_the_files_with_sessions_and_runs_as_it_names_them(mne_root):
    data = _bnci().get_data(subjects=[1])
    assert list(data) == [1]
    sessions = data[1]
    assert sorted(sessions) == ["0train", "1test"]
    for runs in sessions.values():
        # the three trial-less EOG calibration runs are skipped: MI runs are numbered from 0
        assert sorted(runs) == [str(r) for r in range(RUNS)]
        raw = runs["0"]
        assert raw.info["sfreq"] == 250
        assert raw.ch_names == [*EEG_CHANNELS, *EOG_CHANNELS, "STI"]
        events = raw.get_data(picks="STI")[0]
        codes, counts = np.unique(events[events > 0], return_counts=True)
        assert codes.tolist() == [1, 2, 3, 4] and counts.tolist() == [TRIALS_PER_CLASS] * 4


def test_extract_windows_two_classes_from_four(mne_root):
    spec = WindowSpec("eeg", sfreq=125.0, n_times=250, fmin=4.0, fmax=40.0, tmin=0.5,
                      channels=CHANNELS, events=["left_hand", "right_hand"])
    w = extract_windows(_bnci(), spec, [1])
    per_session = RUNS * 2 * TRIALS_PER_CLASS  # left + right trials
    assert w.X.shape == (2 * per_session, len(CHANNELS), 250) and w.X.dtype == np.float32
    assert w.ch_names == CHANNELS and w.class_names == ["left_hand", "right_hand"]
    assert sorted(np.bincount(w.y).tolist()) == [per_session, per_session]
    assert w.meta["session"].tolist() == ["0train"] * per_session + ["1test"] * per_session
    assert w.meta.groupby("session")["trial"].apply(list).tolist() == [list(range(per_session))] * 2
    assert set(w.meta["run"]) == {str(r) for r in range(RUNS)}
    # microvolt scale (the files are in uV; MOABB converts to V and back)
    assert 0.5 < float(np.std(w.X)) < 100


def test_class_signal_survives_the_loader(mne_root):
    """Left-hand imagery lowers mu power over the right hemisphere (C4), right hand over C3."""
    spec = WindowSpec("eeg", sfreq=125.0, n_times=250, fmin=8.0, fmax=14.0, tmin=0.5,
                      channels=["C3", "C4"], events=["left_hand", "right_hand"])
    w = extract_windows(_bnci(), spec, [1, 2])
    power = np.log((w.X ** 2).mean(axis=2))
    lateral = power[:, 0] - power[:, 1]  # C3 - C4: high for left hand, low for right hand
    assert lateral[w.y == 0].mean() > lateral[w.y == 1].mean() + 0.5


def test_missing_channel_named_clearly_by_extract_windows(mne_root):
    spec = WindowSpec("eeg", sfreq=125.0, n_times=250, fmin=4.0, fmax=40.0, tmin=0.5,
                      channels=[*CHANNELS[:7], "C9"], events=["left_hand", "right_hand"])
    with pytest.raises(ValueError, match=r"data\.eeg\.channels.*'C9'.*BNCI2014-001.*'FC3'"):
        extract_windows(_bnci(), spec, [1])


def test_missing_channel_named_clearly_by_check_channels(mne_root):
    check = windows_mod.check_channels
    spec = WindowSpec("eeg", sfreq=125.0, n_times=250, fmin=4.0, fmax=40.0, tmin=0.5,
                      channels=[*CHANNELS[:7], "C9"], events=["left_hand", "right_hand"])
    with pytest.raises(ValueError, match=r"data\.eeg\.channels.*'C9'.*BNCI2014-001.*'FC3'"):
        check(_bnci(), spec, 1)


# --- EOG channels and calibration runs -------------------------------------------------------

def test_eog_channels_dropped_by_default_and_kept_when_asked(mne_root):
    spec = WindowSpec("eeg", sfreq=125.0, n_times=250, fmin=4.0, fmax=40.0, tmin=0.5,
                      events=["left_hand", "right_hand"])
    default = extract_windows(_bnci(), spec, [1])
    assert default.ch_names == list(EEG_CHANNELS)
    assert accepts_return_all_modalities(type(_bnci()))
    for dataset in (_bnci(return_all_modalities={"eeg": True, "eog": True}), keep_eog(_bnci())):
        kept = extract_windows(dataset, spec, [1])
        assert kept.ch_names == [*EEG_CHANNELS, *EOG_CHANNELS]
        assert kept.X.shape[0] == default.X.shape[0]
        np.testing.assert_allclose(kept.X[:, :22], default.X, rtol=1e-5, atol=1e-4)
    assert eog_channels(_bnci(), 1) == list(EOG_CHANNELS)


def test_bnci2014_001_calibration_runs_become_an_eog_block_task(mne_root):
    runs = bnci2014_001_eog_calibration(_bnci(), 1)
    assert sorted(runs) == ["0train", "1test"]
    for blocks in runs.values():
        assert list(blocks) == list(BNCI2014_001_EOG_BLOCKS)
        assert blocks["eyes_open"].get_channel_types()[-3:] == ["eog"] * 3
    w = calibration_windows(runs, 1, sfreq=125.0, n_times=250)
    # 8 s blocks at 125 Hz -> 4 windows of 2 s each, 3 blocks, 2 sessions
    assert w.X.shape == (2 * 3 * 4, 3, 250)
    assert w.class_names == list(BNCI2014_001_EOG_BLOCKS)
    assert np.bincount(w.y).tolist() == [8, 8, 8]
    assert w.meta.groupby("session")["trial"].apply(list).tolist() == [list(range(12))] * 2
    assert np.abs(w.X).max() < 1e4  # microvolts, band-passed


# --- the whole pipeline on the offline files ---------------------------------------------------

def bnci_params() -> dict:
    params = tiny_params()
    data = params["data"]
    data["dataset"] = {"name": "BNCI2014_001", "kwargs": {"subjects": [1, 2]}}
    data["modalities"] = ["eeg"]
    data["eeg"] = {
        "dataset_kwargs": {}, "channels": list(CHANNELS), "events": ["left_hand", "right_hand"],
        "fmin": 4.0, "fmax": 40.0, "sfreq": 125.0, "tmin": 0.5, "n_times": 250,
    }
    data.pop("eog", None)
    params["models"] = {"eeg": params["models"]["eeg"]}
    # plumbing, not accuracy: few epochs; one untrained and one trained strategy (both norms pretrained)
    params["pretrain"]["epochs"] = 2
    params["adapt"].update(epochs=2, strategies=["none", "edge"])
    return params


@pytest.mark.slow
def test_pipeline_runs_on_bnci2014_001_layout_offline(tmp_path_factory, prefect_api_url):
    root = tmp_path_factory.mktemp("mne_pipeline")
    write_bnci2014_001(root, subjects=(1, 2), runs=3, trials_per_class=4)
    project = make_project(tmp_path_factory.mktemp("bnci_study"), bnci_params())
    env = {**mne_env(root), "HOME": str(tmp_path_factory.mktemp("home"))}  # no ~/.mne writes
    run_dvc(project, "repro", env=env)
    results = pd.read_csv(project / "results/adaptation.csv", dtype={"session": str})
    params = bnci_params()
    n = 2 * 2 * len(params["adapt"]["strategies"]) * len(params["adapt"]["seeds"])  # subjects x sessions
    assert len(results) == n
    assert set(results["modality"]) == {"eeg"} and set(results["subject"]) == {1, 2}
    assert set(results["session"]) == {"0train", "1test"}
    assert set(results["dataset"]) <= {"BNCI2014-001", "BNCI2014_001"}
    assert results["acc_after"].between(0, 1).all() and (results["n_calib"] > 0).all()
    assert (project / "reports/study.md").is_file()


# --- opt-in: the real download -----------------------------------------------------------------

@pytest.mark.network
def test_real_download_subject_1(tmp_path, monkeypatch):
    """The real files from the BNCI server (~80 MB for subject 1), read as the offline ones."""
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    monkeypatch.setenv("MNE_DATASETS_BNCI_PATH", str(tmp_path))
    monkeypatch.setenv("MOABB_DOWNLOAD_PROVIDER", os.environ.get("MOABB_DOWNLOAD_PROVIDER", "upstream"))
    data = _bnci(return_all_modalities=True).get_data(subjects=[1])[1]
    assert sorted(data) == ["0train", "1test"]
    for runs in data.values():
        assert sorted(runs) == [str(r) for r in range(6)]
        raw = runs["0"]
        assert raw.ch_names == [*EEG_CHANNELS, *EOG_CHANNELS, "STI"]
        assert raw.info["sfreq"] == 250
    calib = bnci2014_001_eog_calibration(_bnci(), 1)
    assert all(list(blocks) == list(BNCI2014_001_EOG_BLOCKS) for blocks in calib.values())
