import numpy as np
import pytest
from moabb.datasets.base import BaseDataset

from biotrain.data.datasets import make_dataset
from biotrain.data.signals import derive_glasses_channels
from biotrain.data.synthetic import SyntheticEOG, SyntheticMI, erd_time_course
from biotrain.data.windows import WindowSpec, extract_windows

EEG = WindowSpec("eeg", sfreq=125.0, n_times=250, fmin=4.0, fmax=40.0, tmin=0.5)
EOG = WindowSpec("eog", sfreq=250.0, n_times=500, fmin=0.5, fmax=40.0)
SMALL = dict(n_subjects=3, n_sessions=2, trials_per_class=6)


@pytest.mark.parametrize("modality,cls,spec,n_classes", [("eeg", SyntheticMI, EEG, 2), ("eog", SyntheticEOG, EOG, 11)])
def test_flows_through_moabb_paradigm(modality, cls, spec, n_classes):
    ds = make_dataset("synthetic", SMALL, modality)
    assert isinstance(ds, cls) and isinstance(ds, BaseDataset)
    w = extract_windows(ds, spec, [1, 2])
    assert w.X.dtype == np.float32 and w.X.shape[1:] == ((8 if modality == "eeg" else 2), spec.n_times)
    assert np.isfinite(w.X).all()
    assert sorted(w.meta["subject"].unique()) == [1, 2]
    assert sorted(w.meta["session"].unique()) == ["0", "1"]
    assert list(w.meta.columns) == ["subject", "session", "run", "trial"]
    counts = np.bincount(w.y, minlength=n_classes)
    assert (counts == 2 * 2 * SMALL["trials_per_class"]).all()  # balanced: 2 subjects x 2 sessions
    # time order inside each session
    for _, g in w.meta.groupby(["subject", "session"]):
        assert g["trial"].tolist() == list(range(len(g)))


@pytest.mark.parametrize("modality,spec", [("eeg", EEG), ("eog", EOG)])
def test_deterministic_from_seed(modality, spec):
    a = extract_windows(make_dataset("synthetic", {**SMALL, "seed": 3}, modality), spec, [2])
    b = extract_windows(make_dataset("synthetic", {**SMALL, "seed": 3}, modality), spec, [2])
    c = extract_windows(make_dataset("synthetic", {**SMALL, "seed": 4}, modality), spec, [2])
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.allclose(a.X, c.X)


def test_subjects_differ_and_sessions_drift():
    ds = SyntheticMI(**SMALL)
    t1, t2 = ds.subject_traits(1), ds.subject_traits(2)
    assert t1["freq"] != t2["freq"]
    assert np.abs(t1["pattern_left"] - t2["pattern_left"]).max() > 0.1
    # identical subjects when the shift is switched off
    same = SyntheticMI(**SMALL, subject_shift=0.0)
    np.testing.assert_allclose(same.subject_traits(1)["pattern_left"], same.subject_traits(2)["pattern_left"])
    # the class signal lives in the sensorimotor rhythm: band power differs between classes
    w = extract_windows(ds, EEG, [1])
    power = (w.X ** 2).mean(axis=2)
    assert np.abs(power[w.y == 0].mean(0) - power[w.y == 1].mean(0)).max() > 0.05 * power.mean()


def test_erd_builds_up_peaks_and_fades_to_its_tail():
    shape = erd_time_course(4.0, 100.0, tail=0.3)
    assert shape.size == 400 and shape[0] == 0.0
    t = np.arange(400) / 100.0
    assert np.all(np.diff(shape[t <= 0.5]) > 0)                       # builds up after the cue
    np.testing.assert_allclose(shape[(t >= 0.5) & (t <= 2.5)], 1.0)   # deepest where the windows are
    assert np.all(np.diff(shape[t >= 2.5]) < 0) and shape[-1] == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match=r"erd_tail .* \[0, 1\], got 1.5"):
        SyntheticMI(**SMALL, erd_tail=1.5)


def test_glasses_derived_channels_follow_brief():
    X = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    d = derive_glasses_channels(X)
    np.testing.assert_allclose(d[:, 0], X[:, 1] - (X[:, 0] + X[:, 2]) / 2)
    np.testing.assert_allclose(d[:, 1], X[:, 0] - X[:, 2])


def test_bad_sizes_and_kwargs_are_named():
    with pytest.raises(ValueError, match="n_subjects"):
        SyntheticMI(n_subjects=1)
    with pytest.raises(ValueError, match=r"data.dataset.kwargs \['n_subject'\]"):
        make_dataset("synthetic", {"n_subject": 3}, "eeg")
    with pytest.raises(ValueError, match="BNCI2014_001"):
        make_dataset("BNCI2014_01", {}, "eeg")


def test_window_longer_than_trial_fails_before_loading():
    ds = make_dataset("synthetic", SMALL, "eeg")
    with pytest.raises(ValueError, match=r"data.eeg.n_times=1000 .* longer than the 4 s trial"):
        extract_windows(ds, WindowSpec("eeg", sfreq=250.0, n_times=1000, fmin=4, fmax=40, tmin=0.5), [1])


def test_any_moabb_dataset_by_name_fake_dataset():
    ds = make_dataset("FakeDataset", {"n_subjects": 2, "n_sessions": 2, "event_list": ["left_hand", "right_hand"],
                                      "channels": ["C3", "Cz", "C4"], "sfreq": 128, "seed": 1}, "eeg")
    w = extract_windows(ds, WindowSpec("eeg", sfreq=64.0, n_times=128, fmin=4, fmax=30, events=["left_hand", "right_hand"]))
    assert w.X.shape[1:] == (3, 128) and w.ch_names == ["C3", "Cz", "C4"]
    assert set(w.meta["subject"]) == {1, 2}
