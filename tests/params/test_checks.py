"""Bad values stop the run before any work, naming the key, the value and what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from biotrain.params import ParamsError, validate_params
from biotrain.errors import UserError
from tests.helpers import run_stage_in_process, with_value

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def _with(key: str, value) -> dict:
    return with_value(DEFAULT, key, value)


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/tiny.yaml"])
def test_shipped_profiles_are_valid(profile):
    validate_params(yaml.safe_load((ROOT / profile).read_text()))


@pytest.mark.parametrize("key,value,expected", [
    ("data.dataset.name", "NotADataset", "'synthetic' or a moabb.datasets class name"),
    ("adapt.strategies", ["none", "sparsest"], "['sparsest'] unknown"),
    ("adapt.lr", -0.001, "a number > 0"),
    ("pretrain.lr", 0, "a number > 0"),
    ("adapt.micro_batch", 3, "a divisor of adapt.batch_size=8"),
    ("adapt.runner.name", "spark", "one of ['threads', 'dask', 'ray']"),
    ("adapt.runner.address", "", "an existing cluster's address"),
    ("adapt.runner.allocator", "jemalloc", "one of ['auto', 'tcmalloc', 'system']"),
    ("data.modalities", ["eeg", "emg"], "['emg'] unknown"),
    ("split.calib_fraction", 1.0, "<= 0.99"),
    ("data.eeg.fmax", 150.0, "below Nyquist"),
    ("adapt.seeds", [0, 0], "distinct integers"),
])
def test_bad_value_is_named(key, value, expected):
    with pytest.raises(ParamsError) as err:
        validate_params(_with(key, value))
    text = str(err.value)
    assert key in text and repr(value) in text or key in text and str(value) in text
    assert expected in text


def test_an_address_needs_a_cluster_runner():
    params = _with("adapt.runner.address", "tcp://10.0.0.5:8786")
    validate_params(params)  # the default runner, dask, can join a cluster
    params["adapt"]["runner"]["name"] = "threads"
    with pytest.raises(ParamsError, match="adapt.runner.address.*an address needs 'dask' or 'ray'"):
        validate_params(params)


def test_model_arguments_are_tried_at_the_data_rate():
    short = _with("models.eeg.kwargs.temporal_kernel_s", 0.002)
    with pytest.raises(ParamsError, match=r"temporal_kernel_s=0.002 at 200 Hz is not a kernel of at least one sample"):
        validate_params(short)
    short["data"]["eeg"]["sfreq"] = 500.0
    validate_params(short)  # one sample at 500 Hz
    with pytest.raises(ParamsError, match=r"models.eeg.kwargs.sfreq: is set from the data by the pipeline"):
        validate_params(_with("models.eeg.kwargs.sfreq", 200.0))


def test_window_longer_than_recording_stops_the_data_stage(tmp_path, monkeypatch):
    """In this process: the message a stage prints is its error's (tests/pipeline/test_faults.py
    checks how a stage run from the command line prints it and exits)."""
    params = _with("data.eeg.n_times", 2000)  # 10 s at 200 Hz; the synthetic trial lasts 4 s
    with pytest.raises(UserError) as err:
        run_stage_in_process(tmp_path, params, "data", monkeypatch)
    assert "data.eeg.n_times=2000" in str(err.value) and "longer than the 4 s trial" in str(err.value)
    assert "allowed: n_times <= 700" in str(err.value)
    assert not (tmp_path / "data").exists()  # nothing half-written


def test_unknown_strategy_stops_before_pretraining(tmp_path, monkeypatch):
    with pytest.raises(ParamsError) as err:
        run_stage_in_process(tmp_path, _with("adapt.strategies", ["full", "lowrank"]), "pretrain", monkeypatch)
    assert "adapt.strategies" in str(err.value) and "'lowrank'" in str(err.value)
    assert not (tmp_path / "models").exists()


def test_cli_validate_reports_every_problem(tmp_path):
    bad = _with("adapt.lr", -1)
    bad["data"]["dataset"]["name"] = "Nope"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = subprocess.run([sys.executable, "-m", "biotrain.cli", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "adapt.lr" in proc.stderr and "data.dataset.name" in proc.stderr and "invalid parameters (2)" in proc.stderr


def test_stages_after_data_check_everything_but_the_dataset_without_moabb(tmp_path):
    """split, pretrain, adapt, report and sweep read window files: they skip resolving the dataset
    (MOABB's import, ~3 s per stage); the other sections are checked as strictly."""
    unknown = _with("data.dataset.name", "NotADataset")
    unknown["data"]["modalities"] = ["eeg"]  # (an EOG study needs a known eye-movement dataset either way)
    with pytest.raises(ParamsError, match="NotADataset"):
        validate_params(unknown)
    validate_params(unknown, datasets=False)
    with pytest.raises(ParamsError, match="adapt.lr"):
        validate_params(_with("adapt.lr", -1.0), datasets=False)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    code = ("import sys, stages.split, stages.pretrain, stages.adapt, stages.report, stages.sweep; "
            "from biotrain.params import load_study; load_study('params.yaml', datasets=False); "
            "print(sorted(m for m in ('moabb', 'mne') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_stages_that_only_need_settings_start_without_mlflow():
    """split and pretrain check the store (a path, a folder) but keep no records: MLflow (~1 s)
    loads in the stages that write runs."""
    code = "import sys, stages.split, stages.pretrain; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
