"""Kill a running sweep (SIGKILL of its whole process tree), rerun it, get an uninterrupted run's results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import socket
import urllib.request

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from tests.helpers import make_project, run_dvc, subprocess_env, tiny_params

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]  # the session's Prefect server


def _params(name: str, uri: str | None = None) -> dict:
    p = tiny_params()
    p["tracking"]["uri"] = uri
    p["data"]["modalities"] = ["eeg"]
    p["data"]["dataset"]["kwargs"]["n_subjects"] = 2
    p["pretrain"]["epochs"] = 2  # plumbing, not accuracy
    p["adapt"]["epochs"] = 3
    p["adapt"]["strategies"] = ["none", "last_layer", "edge"]  # sparse's layer scores need 3 subjects
    p["sweep"] = {"name": name, "grid": {"strategy": ["last_layer", "edge"], "lr": [1.0e-3, 5.0e-3]}}
    return p


def _sweep(project, name, uri=None, **popen):
    (project / "params.yaml").write_text(yaml.safe_dump(_params(name, uri), sort_keys=False))
    return subprocess.Popen([sys.executable, "-m", "stages.sweep"], cwd=project, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(uri: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {uri} did not start")


def _runs(project, name):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        return mlflow.search_runs(experiment_names=[f"sweep-{name}"])
    except Exception:  # the store or experiment may not exist yet
        return None


def test_killed_sweep_resumes_to_the_uninterrupted_results(tmp_path):
    project = make_project(tmp_path / "study", _params("reference"))
    run_dvc(project, "repro", "pretrain")
    n_children = 2 * 2 * 2 * 2  # MLflow child runs: subjects x strategies x lrs x (day-1 + longitudinal)

    # the uninterrupted reference goes to an MLflow tracking server on loopback
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--default-artifact-root", str(tmp_path / "art"),
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{port}"
        _wait_for(uri)
        ref = _sweep(project, "reference", uri)
        assert ref.wait(timeout=900) == 0, ref.stderr.read()[-3000:]
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("sweep-reference")
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        parents = [r for r in runs if r.data.tags.get("kind") == "flow"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
        assert len(children) == n_children and all(r.info.status == "FINISHED" for r in children)
        points = {(r.data.params["grid.strategy"], r.data.params["grid.lr"]) for r in children}
        assert points == {(s, lr) for s in ("last_layer", "edge") for lr in ("0.001", "0.005")}  # 2 x 2 grid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    reference = (project / "results/sweeps/reference.csv").read_text()

    # start the same sweep under another name and kill its whole process tree mid-way
    victim = _sweep(project, "killed", start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        runs = _runs(project, "killed")
        children = None if runs is None else runs.get("tags.mlflow.parentRunId")  # absent until a child is recorded
        done = 0 if children is None else int(((runs["status"] == "FINISHED") & children.notna()).sum())
        if done >= n_children // 3:
            break
        assert victim.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.5)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (project / "results/sweeps/killed.csv").exists()  # nothing half-written
    before = _runs(project, "killed")
    finished_before = set(before.loc[before["status"] == "FINISHED", "run_id"])
    assert 0 < len(finished_before) < n_children

    again = _sweep(project, "killed")
    assert again.wait(timeout=900) == 0, again.stderr.read()[-3000:]
    assert (project / "results/sweeps/killed.csv").read_text() == reference

    runs = _runs(project, "killed")
    assert not (runs["status"] == "RUNNING").any()
    parents = runs[runs["tags.kind"] == "flow"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    children = runs[runs["tags.mlflow.parentRunId"] == parents.iloc[0]["run_id"]]
    finished = children[children["status"] == "FINISHED"]
    # every scenario of every task finished exactly once; what was recorded before the kill was kept
    assert len(finished) == n_children
    assert finished_before <= set(finished["run_id"])
    assert not finished.duplicated(["tags.subject", "tags.scenario", "tags.strategy", "params.grid.lr"]).any()
