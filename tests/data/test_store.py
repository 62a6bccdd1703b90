"""Windows on disk: per-subject files, a manifest that vouches for them, and all-or-nothing swaps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from biotrain.data.store import MANIFEST, StagedFolder, file_sha256, load_windows, reusable_subjects, save_windows
from biotrain.data.validate import DataError
from biotrain.data.arrays import Windows
from tests.helpers import ROOT


def _windows(subject: int, n=4) -> Windows:
    meta = pd.DataFrame([{"subject": subject, "session": "0", "run": "0", "trial": t} for t in range(n)])
    X = np.full((n, 2, 8), float(subject), dtype=np.float32)
    return Windows(X=X, y=np.arange(n) % 2, meta=meta, ch_names=["a", "b"], class_names=["l", "r"], sfreq=8.0)


def _stage(folder, subjects=(1, 2), extra=None):
    staged = StagedFolder(folder)
    for s in subjects:
        staged.add(s, f"fp-{s}", _windows(s))
    staged.commit(extra)
    return staged


def test_a_committed_folder_holds_every_subject_and_nothing_staged_is_left(tmp_path):
    folder = tmp_path / "windows" / "eeg"
    _stage(folder, extra={"dataset": "synthetic"})
    assert sorted(p.name for p in (tmp_path / "windows").iterdir()) == ["eeg"]  # no staging or old folder
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["dataset"] == "synthetic"
    assert [(e["subject"], e["file"], e["fingerprint"]) for e in manifest["subjects"]] == [
        (1, "subject-1.npz", "fp-1"), (2, "subject-2.npz", "fp-2")]
    assert all(e["sha256"] == file_sha256(folder / e["file"]) for e in manifest["subjects"])
    w = load_windows(folder)
    assert w.meta["subject"].tolist() == [1] * 4 + [2] * 4 and w.X[4:].min() == 2.0


def test_until_commit_the_previous_folder_is_what_readers_see(tmp_path):
    folder = tmp_path / "eeg"
    _stage(folder, subjects=(1, 2))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    staged = StagedFolder(folder)
    staged.add(3, "fp-3", _windows(3))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    staged.discard()  # a failure: the stage is dropped, the old output stays whole
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eeg"]


def test_a_reused_subject_is_copied_and_a_replaced_folder_is_swapped_whole(tmp_path):
    folder = tmp_path / "eeg"
    _stage(folder, subjects=(1, 2))
    reuse, notes = reusable_subjects(folder, {1: "fp-1", 2: "changed"})
    assert reuse == {1: folder / "subject-1.npz"} and notes == []  # subject 2's inputs changed
    one = (folder / "subject-1.npz").read_bytes()
    staged = StagedFolder(folder)
    staged.add(1, "fp-1", reuse=reuse[1])
    staged.add(3, "fp-3", _windows(3))
    staged.commit()
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "subject-1.npz", "subject-3.npz"]
    assert (folder / "subject-1.npz").read_bytes() == one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eeg"]


def test_a_damaged_or_missing_file_is_not_reused(tmp_path):
    folder = tmp_path / "eeg"
    _stage(folder, subjects=(1, 2, 3))
    good = (folder / "subject-2.npz").read_bytes()
    (folder / "subject-2.npz").write_bytes(good[:-10])
    (folder / "subject-3.npz").unlink()
    reuse, notes = reusable_subjects(folder, {1: "fp-1", 2: "fp-2", 3: "fp-3"})
    assert list(reuse) == [1]
    assert notes == [f"subject 2: {folder / 'subject-2.npz'} is damaged (its content does not match the manifest); recomputed",
                     f"subject 3: {folder / 'subject-3.npz'} is missing; recomputed"]
    assert reusable_subjects(tmp_path / "absent", {1: "fp-1"}) == ({}, [])


def test_unreadable_windows_name_the_file_and_the_fix(tmp_path):
    path = tmp_path / "subject-1.npz"
    save_windows(path, _windows(1))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"subject-1.npz: unreadable windows file .*dvc repro data"):
        load_windows(path)
    with pytest.raises(DataError, match=r"absent is missing: run the data stage first"):
        load_windows(tmp_path / "absent")
    (tmp_path / "eeg").mkdir()
    with pytest.raises(DataError, match=r"manifest.json: missing or unreadable"):
        load_windows(tmp_path / "eeg")


def test_reading_windows_imports_neither_moabb_nor_mne(tmp_path):
    """Workers that only read windows back skip MOABB's and MNE's seconds-long import."""
    folder = tmp_path / "eeg"
    _stage(folder)
    code = ("import sys; from biotrain.data.store import load_windows; "
            f"w = load_windows({str(folder)!r}); assert len(w.X) == 8; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('moabb', 'mne')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
