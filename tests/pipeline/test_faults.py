"""The fault suite: every mistake or fault named before work, nothing partial left,
and a rerun after the fix recovers. The table of cases and outcomes is ``docs/faults.md``.

Most cases are in-process (parameter checks, the data stage's ``main`` in a temporary project,
store functions); a few run a subprocess (the CLI, an interrupted flow, ``biotrain run``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from biotrain.cli import main as cli_main
from biotrain.params import ParamsError, read_params, validate_params
from biotrain.errors import DEBUG_ENV, TrackingError, UserError
from tests.helpers import ROOT, subprocess_env, tiny_params

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
CLI = [sys.executable, "-m", "biotrain.cli"]


def _env(**extra) -> dict:
    return subprocess_env(**extra)


def _cli(*args, cwd=None, **env) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=300)


def _set(params: dict, key: str, value) -> dict:
    params = copy.deepcopy(params)
    node = params
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        node.pop(last)
    else:
        node[last] = value
    return params


_DELETE = object()


def _bnci(params: dict) -> dict:
    params = _set(params, "data.dataset", {"name": "BNCI2014_001", "kwargs": {"subjects": [1, 2, 3]}})
    params = _set(params, "data.modalities", ["eeg"])
    params["data"]["eeg"]["dataset_kwargs"] = {}
    return params


# ---- bad parameters: (case, change, expected text, fix) ---------------------------------------------

def _rename_section(params):
    params = copy.deepcopy(params)
    params["adaptt"] = params.pop("adapt")
    return params


def _readme_bnci_example(params):  # the README's BNCI example kept the synthetic dataset's kwargs
    params = _bnci(params)
    params["data"]["eeg"]["dataset_kwargs"] = {"erd": 0.45, "distractor": 1.0}
    return params


PARAM_CASES = {
    "unknown key adapt.lrr": (lambda p: _set(p, "adapt.lrr", 0.01),
                              "adapt.lrr: unknown key; did you mean adapt.lr?", lambda p: p),
    "misspelt section adaptt": (_rename_section, "adaptt: unknown key; did you mean adapt?", lambda p: p),
    "unknown key data.eeg.fmaxx": (lambda p: _set(p, "data.eeg.fmaxx", 30.0),
                                   "data.eeg.fmaxx: unknown key; did you mean data.eeg.fmax?", lambda p: p),
    "unknown model argument Nff": (lambda p: _set(p, "models.eeg.kwargs.Nff", 3),
                                   "models.eeg.kwargs.Nff: not an argument of MIBMINet; did you mean Nf?", lambda p: p),
    "model shape argument set by hand": (lambda p: _set(p, "models.eeg.kwargs.n_chans", 3),
                                         "models.eeg.kwargs.n_chans: is set from the data by the pipeline", lambda p: p),
    "model argument rejected by the class": (lambda p: _set(p, "models.eeg.kwargs.F1", 0),
                                             "models.eeg.kwargs: got {'temporal_kernel_s': 0.32, "
                                             "'depthwise_kernel_s': 0.04, 'F1': 0}; MIBMINet rejects it",
                                             lambda p: p),
    "synthetic kwargs on BNCI2014_001 (README example)": (
        _readme_bnci_example, "data.eeg.dataset_kwargs.erd: not an argument of BNCI2014_001", _bnci),
    "misspelt dataset argument": (lambda p: _set(p, "data.dataset.kwargs.n_subject", 4),
                                  "data.dataset.kwargs.n_subject: not an argument of SyntheticMI; did you mean n_subjects?",
                                  lambda p: p),
    "zero subjects": (lambda p: _set(p, "data.dataset.kwargs.n_subjects", 0),
                      "data.dataset.kwargs.n_subjects: got 0; allowed: an integer >= 2", lambda p: p),
    "one session with the longitudinal scenario": (
        lambda p: _set(p, "data.dataset.kwargs.n_sessions", 1),
        "data.dataset.kwargs.n_sessions: got 1; allowed: an integer >= 2 (the longitudinal scenario", lambda p: p),
    "one subject selected from a MOABB dataset": (
        lambda p: _set(_bnci(p), "data.dataset.kwargs.subjects", [1]),
        "data.dataset.kwargs.subjects: got [1]; allowed: null or at least 2 subjects", _bnci),
    "device constant 0 (a divisor)": (lambda p: _set(p, "device.constants", {"mac_per_cycle_conv_fwd": 0}),
                                      "device constant 'mac_per_cycle_conv_fwd' must be > 0", lambda p: p),
    "negative device power": (lambda p: _set(p, "device.constants", {"power_leak_mw": -100}),
                              "device constant 'power_leak_mw' must be >= 0, got -100", lambda p: p),
    "misspelt device constant": (lambda p: _set(p, "device.constants", {"freq_mhzz": 240}),
                                 "unknown device constant 'freq_mhzz'; did you mean 'freq_mhz'?", lambda p: p),
}


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_bad_parameter_is_named_before_any_work(case, tmp_path, monkeypatch):
    change, expected, fix = PARAM_CASES[case]
    bad = change(DEFAULT)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["data"])
    from stages import data as data_stage

    with pytest.raises(ParamsError) as err:  # the data stage's first step, as every stage's
        data_stage.main()
    assert expected in str(err.value), str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
    validate_params(fix(DEFAULT))  # the fixed file passes


def test_fixed_parameter_then_runs_the_data_stage(tmp_path, monkeypatch, capsys):
    """After a rejected key is corrected, the stage runs to completion (the rerun recovers)."""
    params = _small_eeg()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_set(params, "data.eeg.fmaxx", 30.0)))
    with pytest.raises(ParamsError, match="did you mean data.eeg.fmax"):
        _stage(tmp_path, monkeypatch, "data")
    assert not (tmp_path / "data").exists()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_set(params, "data.eeg.fmax", 30.0)))
    _stage(tmp_path, monkeypatch, "data")
    assert "eeg: 3 subjects (0 reused, 3 computed)" in capsys.readouterr().out


# ---- the command line: one message, a traceback only when asked ------------------------------------

def test_yaml_syntax_error_is_one_line_with_its_position(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("adapt:\n  lr: [0.1,\n")
    proc = _cli("validate", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{path} is not valid YAML at line 3, column 1" in proc.stderr
    path.write_text(yaml.safe_dump(DEFAULT))
    assert cli_main(["validate", str(path)]) == 0


def test_key_given_twice_is_refused(tmp_path):
    """YAML keeps the last of two equal keys silently; the user may be editing the first."""
    path = tmp_path / "params.yaml"
    text = yaml.safe_dump(DEFAULT, sort_keys=False).replace("  lr: 0.005\n", "  lr: 0.005\n  lr: 0.01\n", 1)
    path.write_text(text)
    with pytest.raises(ParamsError, match=r"line \d+, column 3: key 'lr' is given twice \(first at line \d+\)"):
        validate_params(read_params(path))
    path.write_text(text.replace("  lr: 0.01\n", "", 1))
    validate_params(read_params(path))


def test_missing_input_of_a_stage_is_named(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(DEFAULT))
    with pytest.raises(UserError, match=r"data/windows/eeg is missing: run the data stage first"):
        _stage(tmp_path, monkeypatch, "split")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_missing_params_file_and_debug_traceback(tmp_path, monkeypatch, capsys):
    proc = _cli("validate", str(tmp_path / "params.yaml"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "params.yaml does not exist; run from the project root" in proc.stderr
    monkeypatch.setenv(DEBUG_ENV, "0")  # restored afterwards (--debug sets it for dvc's stages)
    with pytest.raises(ParamsError, match="does not exist"):  # the traceback is shown: the error propagates
        cli_main(["--debug", "validate", str(tmp_path / "params.yaml")])
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(ParamsError, match="does not exist"):
        cli_main(["validate", str(tmp_path / "params.yaml")])
    monkeypatch.setenv(DEBUG_ENV, "0")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(DEFAULT))
    assert cli_main(["validate", str(tmp_path / "params.yaml")]) == 0


def test_unreachable_tracking_server_is_named_in_seconds(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_set(DEFAULT, "tracking.uri", "http://127.0.0.1:1")))
    proc = _cli("validate", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "tracking.uri='http://127.0.0.1:1': no MLflow server answered within 5 s" in proc.stderr
    path.write_text(yaml.safe_dump(DEFAULT))
    assert cli_main(["validate", str(path)]) == 0


def test_tracking_store_in_a_missing_folder(tmp_path):
    from biotrain.tracking import check_tracking

    uri = f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}"
    with pytest.raises(TrackingError, match=r"folder .*absent does not exist"):
        check_tracking(uri)
    (tmp_path / "absent").mkdir()
    check_tracking(uri)


def test_stage_prints_one_message_without_traceback(tmp_path):
    """A stage run by DVC: the user error is one message, exit 2, no traceback, nothing written."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_set(DEFAULT, "adapt.lrr", 0.01)))
    proc = subprocess.run([sys.executable, "-m", "stages.split"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("biotrain stage split: error: invalid parameters (1):")
    assert "adapt.lrr: unknown key; did you mean adapt.lr?" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("setting,expected", [
    ("T=abc", "--set T='abc': T expects a positive integer"),
    ("mac_per_cycle_conv_fwd=0", "device constant 'mac_per_cycle_conv_fwd' must be > 0, got 0"),
    ("power_leak_mw=-100", "device constant 'power_leak_mw' must be >= 0, got -100"),
])
def test_device_estimate_names_the_bad_setting(setting, expected, capsys):
    assert cli_main(["device", "estimate", "--model", "mi_bminet", "--strategy", "edge", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    from biotrain.device.cli import split_sets

    key = setting.split("=")[0]
    model_kw, overrides = split_sets([f"{key}={'1900' if key == 'T' else '1.5'}"], "mi_bminet")  # fixed: accepted
    assert model_kw.get("n_times") == 1900 or overrides == {key: "1.5"}


# ---- recordings are inputs ------------------------------------------------------------------------

def _small_eeg(n_subjects=3) -> dict:
    params = tiny_params()
    params["data"]["modalities"] = ["eeg"]
    params["data"]["dataset"]["kwargs"].update(n_subjects=n_subjects, trials_per_class=20)
    params["models"] = {"eeg": params["models"]["eeg"]}
    params["data"].pop("eog")
    return params


def _stage(project: Path, monkeypatch, name: str):
    """Run ``stages.<name>.main`` in ``project`` in this process (no interpreter start-up)."""
    import importlib

    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "argv", [name])
    return importlib.import_module(f"stages.{name}").main()


def _glasses(folder: Path) -> dict:
    params = tiny_params()
    params["data"]["dataset"] = {"name": "SmartGlassesEOG", "kwargs": {"path": str(folder)}}
    params["data"]["modalities"] = ["eog"]
    params["data"].pop("eeg")
    params["models"] = {"eog": params["models"]["eog"]}
    params["data"]["eog"].update({"dataset_kwargs": {}, "sfreq": 250.0, "n_times": 500})
    return params


@pytest.fixture
def glasses_project(tmp_path, monkeypatch):
    """A 3-subject x 2-session CSV folder and a project whose data stage has run once on it."""
    from tests.realdata.test_glasses import small_folder

    folder = small_folder(tmp_path / "recordings", n_subjects=3, n_sessions=2)
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(_glasses(folder)))
    _stage(project, monkeypatch, "data")
    return folder, project


def _outputs(project: Path) -> dict[str, bytes]:
    folder = project / "data/windows/eog"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _rerun_data(project, monkeypatch, capsys) -> str:
    capsys.readouterr()
    _stage(project, monkeypatch, "data")
    return capsys.readouterr().out


def test_changed_recording_recomputes_exactly_its_subject(glasses_project, monkeypatch, capsys):
    folder, project = glasses_project
    before = _outputs(project)
    csv = folder / "sub-02" / "ses-01" / "run1.csv"
    lines = csv.read_text().splitlines()  # swap two electrode columns
    swapped = [",".join([c[1], c[0], *c[2:]]) for c in (line.split(",") for line in lines[1:])]
    csv.write_text("\n".join([lines[0], *swapped]) + "\n")
    out = _rerun_data(project, monkeypatch, capsys)
    assert "eog: 3 subjects (2 reused, 1 computed)" in out
    after = _outputs(project)
    assert after["subject-1.npz"] == before["subject-1.npz"] and after["subject-3.npz"] == before["subject-3.npz"]
    assert after["subject-2.npz"] != before["subject-2.npz"]
    assert "(3 reused, 0 computed)" in _rerun_data(project, monkeypatch, capsys)  # and stays up to date


def test_added_and_removed_session_recompute_that_subject(glasses_project, monkeypatch, capsys):
    from tests.realdata.test_glasses import ALL_CLASSES, recording, write_csv

    folder, project = glasses_project
    before = _outputs(project)
    x, t = recording(ALL_CLASSES, seed=999)
    write_csv(folder / "sub-02" / "ses-03" / "run1.csv", x, t)
    assert "eog: 3 subjects (2 reused, 1 computed)" in _rerun_data(project, monkeypatch, capsys)
    assert _outputs(project)["subject-1.npz"] == before["subject-1.npz"]
    sessions = np.load(project / "data/windows/eog/subject-2.npz")["session"]
    assert sorted(set(sessions)) == ["1", "2", "3"]
    (folder / "sub-02" / "ses-03" / "run1.csv").unlink()
    (folder / "sub-02" / "ses-03").rmdir()
    assert "eog: 3 subjects (2 reused, 1 computed)" in _rerun_data(project, monkeypatch, capsys)
    assert _outputs(project)["subject-2.npz"] == before["subject-2.npz"]  # back to what it was


def test_touched_but_unchanged_recording_is_reused(glasses_project, monkeypatch, capsys):
    folder, project = glasses_project
    csv = folder / "sub-01" / "ses-02" / "run1.csv"
    csv.write_bytes(csv.read_bytes())  # new mtime, same content
    os.utime(csv, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert "eog: 3 subjects (3 reused, 0 computed)" in _rerun_data(project, monkeypatch, capsys)


def test_recordings_index_changes_with_a_recording(glasses_project, monkeypatch):
    """What DVC sees: data/recordings.json (a dependency of the data stage) follows the files."""
    folder, project = glasses_project
    _stage(project, monkeypatch, "recordings")
    first = json.loads((project / "data/recordings.json").read_text())
    assert sorted(first["eog"]) == ["1", "2", "3"] and len(first["eog"]["2"]) == 2  # two sessions' files
    _stage(project, monkeypatch, "recordings")
    assert json.loads((project / "data/recordings.json").read_text()) == first  # unchanged: DVC skips data
    csv = folder / "sub-03" / "ses-02" / "run1.csv"
    csv.write_text(csv.read_text().replace("\n0.", "\n1.", 1))
    _stage(project, monkeypatch, "recordings")
    second = json.loads((project / "data/recordings.json").read_text())
    assert second["eog"]["3"] != first["eog"]["3"]
    assert second["eog"]["1"] == first["eog"]["1"] and second["eog"]["2"] == first["eog"]["2"]


def test_corrupt_recording_names_the_file_and_keeps_the_previous_output(glasses_project, monkeypatch, capsys):
    folder, project = glasses_project
    before = _outputs(project)
    csv = folder / "sub-03" / "ses-01" / "run1.csv"
    good = csv.read_text()
    lines = good.splitlines()
    lines[500] = "nan," + lines[500].split(",", 1)[1]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        _stage(project, monkeypatch, "data")
    assert f"{csv}: column 'EEG 1' has 1 NaN/Inf/empty value(s)" in str(err.value)
    assert "data.dataset.kwargs" not in str(err.value)  # the recording is named, not the parameters
    assert _outputs(project) == before  # the previous output is intact
    assert not [p for p in (project / "data/windows").iterdir() if p.name.startswith(".")]  # no staging left
    csv.write_text(good)
    assert "(3 reused, 0 computed)" in _rerun_data(project, monkeypatch, capsys)


def test_missing_recordings_folder_is_named_by_validate(tmp_path):
    from tests.realdata.test_glasses import small_folder

    params = _glasses(tmp_path / "recordings")
    with pytest.raises(ParamsError, match=r"data.dataset.kwargs.path: SmartGlassesEOG path .*recordings' is not a folder"):
        validate_params(params)
    assert sorted(tmp_path.iterdir()) == []  # nothing created
    small_folder(tmp_path / "recordings", n_subjects=2, n_sessions=2)
    validate_params(params)


def test_one_session_folder_is_refused_before_reading(tmp_path, monkeypatch, capsys):
    from tests.realdata.test_glasses import small_folder

    folder = small_folder(tmp_path / "recordings", n_subjects=2, n_sessions=1)
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(_glasses(folder)))
    with pytest.raises(UserError, match=r"SmartGlassesEOG .* has 1 session\(s\) per subject; the longitudinal "
                                        r"scenario needs at least 2"):
        _stage(project, monkeypatch, "data")
    assert not (project / "data/windows").exists()
    small_folder(tmp_path / "recordings", n_subjects=2, n_sessions=2)
    assert "eog: 2 subjects (0 reused, 2 computed)" in _rerun_data(project, monkeypatch, capsys)


# ---- damaged outputs are rebuilt, never reused ------------------------------------------------------

@pytest.fixture
def eeg_project(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(_small_eeg()))
    _stage(project, monkeypatch, "data")
    return project


@pytest.mark.parametrize("damage", ["truncated", "deleted", "replaced"])
def test_damaged_windows_file_is_rebuilt(eeg_project, damage, monkeypatch, capsys):
    path = eeg_project / "data/windows/eeg/subject-3.npz"
    good = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "deleted":
        path.unlink()
    else:  # another subject's valid file in its place
        path.write_bytes((eeg_project / "data/windows/eeg/subject-1.npz").read_bytes())
    out = _rerun_data(eeg_project, monkeypatch, capsys)
    assert "eeg: 3 subjects (2 reused, 1 computed)" in out
    assert "subject 3:" in out and ("damaged" in out or "missing" in out)
    assert path.read_bytes() == good  # rebuilt, bit for bit


def test_split_names_a_truncated_windows_file(eeg_project, monkeypatch, capsys):
    path = eeg_project / "data/windows/eeg/subject-2.npz"
    good = path.read_bytes()
    path.write_bytes(good[:1000])
    with pytest.raises(UserError) as err:
        _stage(eeg_project, monkeypatch, "split")
    assert "data/windows/eeg/subject-2.npz: unreadable windows file" in str(err.value) and "dvc repro data" in str(err.value)
    assert not (eeg_project / "data/splits").exists()
    _rerun_data(eeg_project, monkeypatch, capsys)  # the fix the message names
    _stage(eeg_project, monkeypatch, "split")
    assert (eeg_project / "data/splits/eeg.json").is_file()


def test_unreadable_mat_recording_is_named(tmp_path, monkeypatch, capsys):
    """A MOABB download replaced by an HTML page: the file and subject are named, not the params."""
    from tests.realdata.bnci_layout import bnci_path, mne_env, write_bnci2014_001

    root = tmp_path / "mne"
    write_bnci2014_001(root, subjects=(1, 2), runs=1, trials_per_class=3)
    for key, value in mne_env(root).items():
        monkeypatch.setenv(key, value)
    bad = bnci_path(root, 2, "E")
    good = bad.read_bytes()
    bad.write_text("<!DOCTYPE html><html><body>503 Service Unavailable</body></html>")
    params = _bnci(tiny_params())
    params["data"]["dataset"]["kwargs"] = {"subjects": [1, 2]}
    params["data"]["eeg"].update(channels=["FC3", "FC4", "C3", "C4"], sfreq=125.0, n_times=250)
    params["data"].pop("eog")
    params["models"] = {"eeg": params["models"]["eeg"]}
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(UserError) as err:
        _stage(project, monkeypatch, "data")
    text = str(err.value)
    assert f"subject 2: recording {bad} cannot be read (it is an HTML page" in text, text
    assert "data.dataset.kwargs" not in text and not (project / "data/windows/eeg").exists()
    bad.write_bytes(good)
    assert "eeg: 2 subjects (0 reused, 2 computed)" in _rerun_data(project, monkeypatch, capsys)


# ---- the report lands on the run whose results it shows --------------------------------------------

def _two_study_runs(tmp_path):
    from biotrain.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "biotrain")
    first = tracker.start_run("epochs-12", {"kind": "flow"})
    tracker.end_run(first)
    time.sleep(0.01)
    second = tracker.start_run("epochs-3", {"kind": "flow"})  # the latest finished run
    tracker.end_run(second)
    return uri, first, second


def test_report_is_attached_to_the_run_of_its_results_not_the_latest(tmp_path):
    from biotrain.tracking import attach_report

    uri, first, second = _two_study_runs(tmp_path)
    report = tmp_path / "study.md"
    report.write_text("# study\n")
    attach_report(uri, first, [report])  # the id the adapt stage wrote into results/run.json
    client = mlflow.MlflowClient(uri)
    assert [a.path for a in client.list_artifacts(first, "report")] == ["report/study.md"]
    assert client.list_artifacts(second, "report") == []
    with pytest.raises(TrackingError, match="MLflow run 0123abcd .*results/run.json.* is not in the tracking store"):
        attach_report(uri, "0123abcd", [report])


# ---- unreachable services ----------------------------------------------------------------------

def test_prefect_temporary_server_gets_a_longer_limit_and_one_retry(monkeypatch):
    from prefect.server.api.server import SubprocessASGIServer

    from flows import runners

    calls = []
    # servers of this test's own: never the session's (Prefect's harness registers it as the default)
    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})

    def start(self, timeout=None):
        calls.append(timeout)
        if len(calls) == 1:
            raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")
        self.port, self.running = 8123, True

    monkeypatch.setattr(SubprocessASGIServer, "start", start)
    monkeypatch.setattr(SubprocessASGIServer, "stop", lambda self: calls.append("stopped"))
    monkeypatch.delenv(runners.STARTUP_TIMEOUT_ENV, raising=False)
    server = runners.start_temporary_server()
    assert calls == [90, "stopped", 90] and server.api_url == "http://127.0.0.1:8123/api"
    calls.clear()

    def never(self, timeout=None):
        calls.append(timeout)
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

    monkeypatch.setattr(SubprocessASGIServer, "start", never)
    monkeypatch.setenv(runners.STARTUP_TIMEOUT_ENV, "7")
    with pytest.raises(UserError, match=r"did not answer within 7 s, 2 times .* raise PREFECT_SERVER_EPHEMERAL"):
        runners.start_temporary_server()


# ---- interrupts -------------------------------------------------------------------------------

INTERRUPTED_FLOW = """
import pickle, sys
from stages.common import run_main
from flows.adapt_cohort import run_adapt_cohort

jobs, settings, runner = pickle.load(open(sys.argv[1], "rb"))
run_main(lambda: run_adapt_cohort(jobs, *settings, runner), "adapt")
"""


def test_sigterm_marks_the_mlflow_runs_killed_and_a_rerun_finishes(tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    from flows.adapt_cohort import run_adapt_cohort
    from tests.helpers import flow_settings as _settings, plan_eeg as _plan, runner as _runner, small_cohort as _cohort

    jobs = _plan(tmp_path, _cohort(tmp_path, n_subjects=2), ["full", "edge"], [0, 1])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    adapt, tracking = _settings(uri, "interrupted")
    settings = (dataclasses.replace(adapt, finetune=dataclasses.replace(adapt.finetune, epochs=25)), tracking)
    (tmp_path / "in.pickle").write_bytes(pickle.dumps([jobs, settings, _runner("threads", 1)]))
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED_FLOW, str(tmp_path / "in.pickle")],
                            env=_env(PREFECT_API_URL=PREFECT_API_URL.value()), stderr=subprocess.PIPE, text=True)
    client = mlflow.MlflowClient(uri)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # wait for the first finished child run
        exp = client.get_experiment_by_name("interrupted") if (tmp_path / "mlflow.db").exists() else None
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if any(r.data.tags.get("mlflow.parentRunId") for r in runs):
            break
        time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    err = proc.stderr.read()
    assert "biotrain stage adapt: interrupted (stopped by SIGTERM)" in err and "Traceback" not in err
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("kind") == "flow"]
    assert len(parent) == 1 and parent[0].info.status == "KILLED"
    assert not [r for r in runs if r.info.status == "RUNNING"]
    rows, _ = run_adapt_cohort(jobs, *settings, _runner("threads", 2))  # the rerun resumes and finishes the same run
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("kind") == "flow"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert len(children) == 2 * len(jobs) and all(r.info.status == "FINISHED" for r in children)
    assert len(rows) == 2 * len(jobs)


STAGE_THAT_WAITS = """\
stages:
  wait:
    cmd: python -c "import os, time; open('stage.pid', 'w').write(str(os.getpid())); time.sleep({sleep}); open('out.txt', 'w').write('done')"
    outs:
      - out.txt
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead
        return fh.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture
def dvc_project(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=project, check=True)
    return project


def _bin_env() -> dict:
    return _env()  # this interpreter's scripts (dvc) first on PATH


def test_stopping_biotrain_run_stops_its_whole_process_group(dvc_project):
    (dvc_project / "dvc.yaml").write_text(STAGE_THAT_WAITS.replace("{sleep}", "600"))
    proc = subprocess.Popen([*CLI, "run"], cwd=dvc_project, env=_bin_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pid_file = dvc_project / "stage.pid"
    deadline = time.time() + 240
    while not pid_file.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert pid_file.exists(), proc.communicate()[1][-2000:]
    time.sleep(0.3)
    stage_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "biotrain run: stopped by signal SIGTERM" in err
    deadline = time.time() + 60  # a bound for a loaded machine, not a timing assertion
    while _alive(stage_pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(stage_pid)  # no orphaned stage
    assert not (dvc_project / "out.txt").exists()
    (dvc_project / "dvc.yaml").write_text(STAGE_THAT_WAITS.replace("{sleep}", "0"))
    rerun = subprocess.run([*CLI, "run"], cwd=dvc_project, env=_bin_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (dvc_project / "out.txt").read_text() == "done"


def test_biotrain_run_passes_extra_arguments_to_dvc_repro(dvc_project):
    (dvc_project / "dvc.yaml").write_text(STAGE_THAT_WAITS.replace("{sleep}", "0"))
    dry = subprocess.run([*CLI, "run", "--dry", "-s", "wait"], cwd=dvc_project, env=_bin_env(), capture_output=True,
                         text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "unrecognized arguments" not in dry.stderr and "Running stage 'wait'" in dry.stdout
    assert not (dvc_project / "out.txt").exists()  # --dry reached dvc: nothing ran
