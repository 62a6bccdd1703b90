"""The ``data`` and ``split`` stages: incremental per-subject outputs and the schema checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from biotrain.data.arrays import Windows
from biotrain.data.split import make_splits
from biotrain.data.store import StagedFolder
from biotrain.data.validate import DataError, check_folds, check_windows
from tests.helpers import ROOT, run_stage, tiny_params


def _eeg_only(n_subjects: int) -> dict:
    params = tiny_params()
    params["data"]["modalities"] = ["eeg"]
    params["data"]["dataset"]["kwargs"].update(n_subjects=n_subjects, trials_per_class=20)
    return params


def test_adding_a_subject_computes_only_that_subject(tmp_path):
    first = run_stage(tmp_path, _eeg_only(2))
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "data/windows/eeg"
    before = {p.name: p.read_bytes() for p in folder.glob("subject-*.npz")}
    second = run_stage(tmp_path, _eeg_only(3))
    assert second.returncode == 0, second.stderr
    assert "eeg: 3 subjects (2 reused, 1 computed)" in second.stdout
    for name, content in before.items():
        assert (folder / name).read_bytes() == content
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [e["subject"] for e in manifest["subjects"]] == [1, 2, 3]
    # a change that alters every subject's windows recomputes them all
    changed = _eeg_only(3)
    changed["data"]["eeg"]["fmax"] = 30.0
    third = run_stage(tmp_path, changed)
    assert "eeg: 3 subjects (0 reused, 3 computed)" in third.stdout
    split = run_stage(tmp_path, changed, "split")
    assert split.returncode == 0 and "3 folds" in split.stdout, split.stderr


def test_missing_channel_is_named_before_any_output(tmp_path):
    params = _eeg_only(2)
    params["data"]["eeg"]["channels"] = ["C3", "C4", "Oz"]
    proc = run_stage(tmp_path, params)
    assert proc.returncode != 0
    assert "data.eeg.channels: ['Oz'] not in SyntheticMI" in proc.stderr and "'C3'" in proc.stderr
    assert not (tmp_path / "data/windows/eeg").exists()


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


def test_reading_windows_imports_neither_moabb_nor_mne(tmp_path):
    """Workers that only read windows back skip MOABB's and MNE's seconds-long import."""
    folder = tmp_path / "eeg"
    staged = StagedFolder(folder)
    staged.add(1, "fp", _windows())
    staged.commit()
    code = ("import sys; from biotrain.data.store import load_windows; "
            f"w = load_windows({str(folder)!r}); assert len(w.X) == 12; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('moabb', 'mne')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
