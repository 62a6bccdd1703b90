"""Kill a running sweep (SIGKILL of its whole process tree), rerun it, get an uninterrupted run's results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import yaml

from tests.helpers import ROOT, make_project, run_dvc, tiny_params

pytestmark = pytest.mark.slow


def _params(name: str) -> dict:
    p = tiny_params()
    p["data"]["modalities"] = ["eeg"]
    p["data"]["dataset"]["kwargs"]["n_subjects"] = 3
    p["adapt"]["epochs"] = 6
    p["sweep"] = {"name": name, "grid": {"strategy": ["last_layer", "edge"], "lr": [1.0e-3, 5.0e-3]}}
    return p


def _sweep(project, name, **popen):
    (project / "params.yaml").write_text(yaml.safe_dump(_params(name), sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "flows.sweep"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def _runs(project, name):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        return mlflow.search_runs(experiment_names=[f"sweep-{name}"])
    except Exception:  # the store or experiment may not exist yet
        return None


def test_killed_sweep_resumes_to_the_uninterrupted_results(tmp_path):
    project = make_project(tmp_path / "study", _params("reference"))
    run_dvc(project, "repro", "pretrain")
    n_tasks = 3 * 2 * 2 * 2  # subjects x strategies x lrs x (day-1 + longitudinal)

    ref = _sweep(project, "reference")
    assert ref.wait(timeout=900) == 0, ref.stderr.read()[-3000:]
    reference = (project / "results/sweeps/reference.csv").read_text()

    # start the same sweep under another name and kill its whole process tree mid-way
    victim = _sweep(project, "killed", start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        runs = _runs(project, "killed")
        done = 0 if runs is None or runs.empty else int(((runs["status"] == "FINISHED") & runs["tags.mlflow.parentRunId"].notna()).sum())
        if done >= n_tasks // 3:
            break
        assert victim.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.5)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (project / "results/sweeps/killed.csv").exists()  # nothing half-written
    finished_before = int(((_runs(project, "killed")["status"] == "FINISHED")).sum())
    assert 0 < finished_before < n_tasks

    again = _sweep(project, "killed")
    assert again.wait(timeout=900) == 0, again.stderr.read()[-3000:]
    assert (project / "results/sweeps/killed.csv").read_text() == reference

    runs = _runs(project, "killed")
    assert not (runs["status"] == "RUNNING").any()
    parents = runs[runs["tags.kind"] == "flow"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    children = runs[runs["tags.mlflow.parentRunId"] == parents.iloc[0]["run_id"]]
    finished = children[children["status"] == "FINISHED"]
    # every task finished exactly once: the tasks done before the kill were not redone
    assert len(finished) == n_tasks
    assert not finished.duplicated(["tags.subject", "tags.scenario", "tags.strategy", "params.grid.lr"]).any()
