"""The schema checks on windows and folds (``biotrain.data.validate``), on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biotrain.data.split import make_splits
from biotrain.data.validate import DataError, check_folds, check_windows
from biotrain.data.arrays import Windows


def _windows(n_per=6, sessions=("0", "1"), classes=2):
    rows = [{"subject": 1, "session": s, "run": "0", "trial": t} for s in sessions for t in range(n_per)]
    y = np.array([t % classes for s in sessions for t in range(n_per)])
    X = np.random.default_rng(0).standard_normal((len(rows), 2, 16)).astype(np.float32)
    return Windows(X=X, y=y, meta=pd.DataFrame(rows), ch_names=["a", "b"], class_names=["l", "r"][:max(classes, 2)], sfreq=16.0)


def test_schema_accepts_good_windows():
    check_windows(_windows())


def test_nan_names_subject_and_session():
    w = _windows()
    w.X[8, 0, 3] = np.nan
    with pytest.raises(DataError, match=r"subject 1 session '1'.*NaN or Inf"):
        check_windows(w, "demo")


def test_one_class_session_is_refused():
    w = _windows()
    w.y[w.meta["session"].to_numpy() == "1"] = 0
    with pytest.raises(DataError, match=r"subject 1 session '1'.*only class \['l'\]"):
        check_windows(w)


def test_labels_out_of_range_and_wrong_dtype():
    w = _windows()
    w.y[0] = 5
    with pytest.raises(DataError, match="labels \\[5\\] outside 0..1"):
        check_windows(w)
    w = _windows()
    w.X = w.X.astype(np.float64)
    with pytest.raises(DataError, match="float32"):
        check_windows(w)


def test_single_class_test_split_is_named():
    meta = pd.DataFrame([{"subject": s, "session": "0", "run": "0", "trial": t} for s in (1, 2) for t in range(10)])
    y = np.array([0, 1] * 4 + [0, 0] + [0, 1] * 5)  # subject 1's last 20% (the test part) is all class 0
    with pytest.raises(DataError, match=r"subject 1 session '0': the test split has a single class"):
        check_folds(make_splits(meta, 0.8), y, "eeg")
