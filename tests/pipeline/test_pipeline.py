"""The whole DVC pipeline on the tiny profile, as a user runs it: ``dvc repro``.

One shared run (the session's ``tiny_study``) feeds every check that reads a finished study.
Tests that change the project work on a copy of it: the rerun deletes the outputs and expects
the very same metrics as the shared run.
"""

from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest
import yaml

from biotrain.tracking.views import VIEW_METRICS
from tests.helpers import copy_project, run_dvc as _dvc

OUTPUTS = ["data/windows", "data/splits", "models/pretrained", "results", "metrics", "reports"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tiny_study):
    return tiny_study


@pytest.fixture(scope="module")
def params(project):
    return yaml.safe_load((project / "params.yaml").read_text())


@pytest.fixture(scope="module")
def results(project):
    return pd.read_csv(project / "results/adaptation.csv", dtype={"session": str})


@pytest.fixture
def project_copy(project, tmp_path):
    """A copy of the shared study, for a test that changes the project."""
    return copy_project(project, tmp_path / "study")
def test_results_contract(results, params):
    required = ["dataset", "modality", "subject", "session", "scenario", "strategy", "seed", "n_calib", "acc_before", "acc_after"]
    assert set(required) <= set(results.columns)
    kw = params["data"]["dataset"]["kwargs"]
    per_modality = kw["n_subjects"] * kw["n_sessions"] * len(params["adapt"]["strategies"]) * len(params["adapt"]["seeds"])
    assert len(results) == per_modality * len(params["data"]["modalities"])
    assert not results.duplicated(["modality", "subject", "session", "scenario", "strategy", "seed"]).any()
    assert set(results["scenario"]) == {"day1", "longitudinal"}
    assert results["acc_after"].between(0, 1).all() and (results["n_calib"] > 0).all()


def test_metrics_shape(project, params):
    metrics = json.loads((project / "metrics/adaptation.json").read_text())
    assert sorted(metrics) == sorted(params["data"]["modalities"])
    for modality in metrics:
        assert sorted(metrics[modality]) == ["day1", "longitudinal"]
        for scenario in metrics[modality].values():
            assert sorted(scenario) == sorted(params["adapt"]["strategies"])
            for cell in scenario.values():
                assert set(cell) == {"acc_mean", "acc_std", "n"} and cell["n"] > 0


def test_adapting_beats_not_adapting_and_full_network_beats_last_layer(project):
    """The paper's ordering, none < last_layer < max(full, edge), in every modality and scenario."""
    metrics = json.loads((project / "metrics/adaptation.json").read_text())
    for modality, scenarios in metrics.items():
        for scenario, m in scenarios.items():
            acc = {s: m[s]["acc_mean"] for s in m}
            assert acc["none"] < acc["last_layer"] < max(acc["full"], acc["edge"]), (modality, scenario, acc)


def test_report_and_plots(project):
    report = (project / "reports/study.md").read_text()
    assert "| EEG (mi_bminet) | day 1 |" in report and "figures/accuracy.png" in report
    assert "Test windows per session: EEG" in report
    for name in ("accuracy.png", "gain_per_subject.png", "sessions.png", "subjects_sessions.png", "pareto.png"):
        png = project / "reports/figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert png.stat().st_mode & 0o044 == 0o044, oct(png.stat().st_mode)  # readable by others, as any output


def test_mlflow_parent_and_one_child_per_task(project, results):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["biotrain"])
    parents = runs[runs["tags.kind"] == "flow"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    children = runs[runs["tags.mlflow.parentRunId"] == parents.iloc[0]["run_id"]]
    # one task per (modality, subject, scenario, strategy, seed)
    n_tasks = len(results.drop_duplicates(["modality", "subject", "scenario", "strategy", "seed"]))
    assert len(children) == n_tasks
    assert children["metrics.acc_after"].notna().all() and children["metrics.n_calib"].notna().all()
    trained = children[children["tags.strategy"] != "none"]
    for metric in VIEW_METRICS:  # every column of the UI's study view is logged by the trained children
        assert trained[f"metrics.{metric}"].notna().all(), metric
    # the dashboard: the report and its plots are artifacts of the parent run
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    names = {a.path for a in client.list_artifacts(parents.iloc[0]["run_id"], "report/figures")}
    assert "report/figures/pareto.png" in names and "report/figures/subjects_sessions.png" in names


def test_nothing_to_do_after_a_full_run(project_copy):
    """Only the recordings check runs (always: recordings live outside DVC's view); it finds
    nothing changed, so no other stage runs."""
    project = project_copy
    proc = _dvc(project, "status")
    assert proc.stdout.split() == ["recordings:", "always", "changed"], proc.stdout
    proc = _dvc(project, "repro")
    assert proc.stdout.count("Running stage") == 1 and "Running stage 'recordings'" in proc.stdout, proc.stdout


def test_an_edit_to_the_code_a_stage_runs_makes_dvc_rerun_it(project_copy):
    """DVC itself, after a full run: a one-line edit to a file a stage runs marks that stage
    changed (the static check of every stage's imports is tests/test_dvc_yaml.py)."""
    project = project_copy
    for stage, path in [("pretrain", "biotrain/adaptation/fast_conv.py"), ("pretrain", "biotrain/data/store.py"),
                        ("adapt", "biotrain/strategy_table.py"), ("adapt", "flows/runners.py"),
                        ("adapt", "stages/common.py"), ("split", "biotrain/data/order.py")]:
        file = project / path
        original = file.read_text()
        file.write_text(original + "# an edit\n")
        status = json.loads(_dvc(project, "status", stage, "--json").stdout)
        file.write_text(original)
        assert any("changed deps" in entry for entry in status.get(stage, [])), (stage, path, status)
    assert _dvc(project, "status").stdout.split() == ["recordings:", "always", "changed"]


def test_dvc_experiment_in_a_temporary_copy_tracks_into_the_project_store(project_copy):
    """``dvc exp run`` (here --temp, as queued experiments do) runs in a copy under .dvc/tmp/exps."""
    project = project_copy
    _dvc(project, "exp", "run", "--temp", "-S", "adapt.epochs=3", "-n", "short")
    shown = _dvc(project, "exp", "show", "--json").stdout
    assert '"short"' in shown and "acc_mean" in shown
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    parents = mlflow.search_runs(experiment_names=["biotrain"], filter_string="tags.kind = 'flow'")
    assert len(parents) == 2  # the first run's and the experiment's, both in the project's own store
    assert sorted(parents["params.epochs"]) == ["12", "3"]
    assert list(project.rglob("mlflow.db")) == [project / "mlflow.db"]


def test_deleting_outputs_and_rerunning_reproduces_metrics_exactly(project, project_copy):
    """The copy's outputs are deleted and recomputed: the very bytes of the shared run's."""
    before = {p: (project / p).read_bytes() for p in ("metrics/adaptation.json", "results/adaptation.csv")}
    for out in OUTPUTS:
        shutil.rmtree(project_copy / out)
    _dvc(project_copy, "repro", "--force", "--no-run-cache")  # recompute everything, no cache restore
    for path, content in before.items():
        assert (project_copy / path).read_bytes() == content, path
