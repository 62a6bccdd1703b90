"""The ``data`` and ``split`` stages: incremental per-subject outputs, and a missing channel named."""

from __future__ import annotations

import json

import pytest

from biotrain.errors import UserError
from tests.helpers import run_stage_in_process, tiny_params


def _eeg_only(n_subjects: int) -> dict:
    params = tiny_params()
    params["data"]["modalities"] = ["eeg"]
    params["data"]["dataset"]["kwargs"].update(n_subjects=n_subjects, trials_per_class=20)
    return params


def test_adding_a_subject_computes_only_that_subject(tmp_path, monkeypatch, capsys):
    """Stages run in this process (no interpreter start-up each); the next test runs one as a script."""
    run_stage_in_process(tmp_path, _eeg_only(2), "data", monkeypatch)
    folder = tmp_path / "data/windows/eeg"
    before = {p.name: p.read_bytes() for p in folder.glob("subject-*.npz")}
    capsys.readouterr()
    run_stage_in_process(tmp_path, _eeg_only(3), "data", monkeypatch)
    assert "eeg: 3 subjects (2 reused, 1 computed)" in capsys.readouterr().out
    for name, content in before.items():
        assert (folder / name).read_bytes() == content
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [e["subject"] for e in manifest["subjects"]] == [1, 2, 3]
    # a change that alters every subject's windows recomputes them all
    changed = _eeg_only(3)
    changed["data"]["eeg"]["fmax"] = 30.0
    run_stage_in_process(tmp_path, changed, "data", monkeypatch)
    assert "eeg: 3 subjects (0 reused, 3 computed)" in capsys.readouterr().out
    run_stage_in_process(tmp_path, changed, "split", monkeypatch)
    assert "3 folds" in capsys.readouterr().out


def test_a_changed_synthetic_generator_recomputes_every_subject(tmp_path, monkeypatch, capsys):
    """Same parameters, new generator code: windows drawn by the old code are not reused."""
    from biotrain.data import sources

    run_stage_in_process(tmp_path, _eeg_only(2), "data", monkeypatch)
    copy = tmp_path / "copy" / sources.GENERATOR_CODE.name
    copy.parent.mkdir()
    copy.write_bytes(sources.GENERATOR_CODE.read_bytes())
    monkeypatch.setattr(sources, "GENERATOR_CODE", copy)
    capsys.readouterr()
    run_stage_in_process(tmp_path, _eeg_only(2), "data", monkeypatch)
    assert "eeg: 2 subjects (2 reused, 0 computed)" in capsys.readouterr().out  # same code elsewhere: reused
    copy.write_bytes(copy.read_bytes() + b"\n# a new version of the generator\n")
    run_stage_in_process(tmp_path, _eeg_only(2), "data", monkeypatch)
    assert "eeg: 2 subjects (0 reused, 2 computed)" in capsys.readouterr().out


def test_changed_window_code_recomputes_every_subject(tmp_path, monkeypatch, capsys):
    """Same parameters and recordings, new code cutting the windows: nothing old is reused."""
    import shutil

    from biotrain.data import store

    run_stage_in_process(tmp_path, _eeg_only(2), "data", monkeypatch)
    code = tmp_path / "code"
    shutil.copytree(store.CODE_DIR, code, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(store, "CODE_DIR", code)
    capsys.readouterr()
    run_stage_in_process(tmp_path, _eeg_only(2), "data", monkeypatch)
    assert "eeg: 2 subjects (2 reused, 0 computed)" in capsys.readouterr().out  # same code elsewhere: reused
    (code / "windows.py").write_text((code / "windows.py").read_text() + "\n# a new way of cutting windows\n")
    run_stage_in_process(tmp_path, _eeg_only(2), "data", monkeypatch)
    assert "eeg: 2 subjects (0 reused, 2 computed)" in capsys.readouterr().out


def test_missing_channel_is_named_before_any_output(tmp_path, monkeypatch):
    params = _eeg_only(2)
    params["data"]["eeg"]["channels"] = ["C3", "C4", "Oz"]
    with pytest.raises(UserError) as err:
        run_stage_in_process(tmp_path, params, "data", monkeypatch)
    assert "data.eeg.channels: ['Oz'] not in SyntheticMI" in str(err.value) and "'C3'" in str(err.value)
    assert not (tmp_path / "data/windows/eeg").exists()
