"""Planning a study or a sweep, and one job run without Prefect (a real MLflow SQLite store)."""

from __future__ import annotations

import dataclasses

import mlflow
import pytest

from biotrain.params import validate_params
from biotrain.study import ChildRuns, expand_grid, open_parent_run, run_job
from biotrain.study.run_job import limit_calibration
from tests.helpers import flow_settings as _settings, plan_eeg as _plan, small_cohort as _cohort


def test_study_jobs_cover_subjects_strategies_and_seeds(tmp_path):
    jobs = _plan(tmp_path, _cohort(tmp_path), ["none", "edge"], [0, 1])
    assert len(jobs) == 3 * 2 * 2
    assert {(j.subject, j.strategy, j.seed) for j in jobs} == {(s, st, se) for s in (1, 2, 3)
                                                                 for st in ("none", "edge") for se in (0, 1)}
    assert all(j.grid == {} and j.longitudinal for j in jobs)
    assert {j.pretrained.split("/")[-2] for j in jobs if j.strategy == "edge"} == {"group"}


def test_a_sweep_point_replaces_the_studys_strategy_and_fine_tuning(tmp_path):
    from biotrain.study import StudyConfig, plan_study
    from tests.helpers import tiny_params

    paths, folds = _cohort(tmp_path)
    params = tiny_params()
    params["data"]["modalities"] = ["eeg"]
    config = StudyConfig.from_params(validate_params(params, datasets=False), tmp_path)
    grid = {"strategy": ["full"], "lr": [1e-3, 2e-3], "calib_size": [4]}
    jobs = plan_study(config, paths, folds, grid=grid)
    assert len(jobs) == len(expand_grid(grid)) * 3 * len(config.seeds) == 6
    assert {j.strategy for j in jobs} == {"full"}
    assert sorted({j.finetune(config.finetune).lr for j in jobs}) == [1e-3, 2e-3]
    assert all(j.finetune(config.finetune).epochs == config.finetune.epochs for j in jobs)
    assert {j.calib_size for j in jobs} == {4}
    assert jobs[0].context()["lr"] in (1e-3, 2e-3)  # grid keys are tags of the job's runs


def test_a_16_bit_strategy_is_a_job_of_its_own_labelled_with_its_precision(tmp_path):
    cohort = _cohort(tmp_path, n_subjects=2)
    jobs = _plan(tmp_path, cohort, ["full", "full@bf16"], [0])
    bf16 = [j for j in jobs if j.precision == "bf16"]
    assert len(bf16) == 2 and {j.strategy for j in jobs} == {"full"} and {j.label for j in bf16} == {"full@bf16"}
    assert bf16[0].context()["strategy"] == "full@bf16" and bf16[0].context()["precision"] == "bf16"
    settings, tracking = _settings(f"sqlite:///{tmp_path / 'mlflow.db'}", "bf16")
    assert bf16[0].finetune(settings.finetune).precision == "bf16"
    assert "full@bf16" in bf16[0].run_name("day1")
    _, parent, _ = open_parent_run(tracking, jobs, settings, "bf16")
    rows = {j.label: run_job(j, settings, ChildRuns(parent, settings))[0] for j in jobs if j.subject == bf16[0].subject}
    assert rows["full@bf16"]["strategy"] == "full@bf16" and rows["full@bf16"]["precision"] == "bf16"
    assert rows["full"]["precision"] == "fp32"
    with pytest.raises(ValueError, match=r"adapt.strategies.*edge@fp8"):
        _plan(tmp_path, cohort, ["edge@fp8"], [0])


def test_unknown_grid_key_is_named():
    with pytest.raises(ValueError, match=r"\['lrr'\] are not sweepable"):
        expand_grid({"lrr": [1]})


def test_calibration_size_keeps_the_first_windows_of_every_session():
    fold = {"day1": {"calib": [5, 6, 7], "test": [8]}, "longitudinal": [{"calib": [1, 2, 3], "test": [4]}]}
    cut = limit_calibration(fold, 2)
    assert cut["day1"]["calib"] == [5, 6] and cut["longitudinal"][0]["calib"] == [1, 2]
    assert cut["day1"]["test"] == [8] and limit_calibration(fold, None) is fold


def test_run_job_rows_and_child_runs_without_prefect(tmp_path):
    jobs = _plan(tmp_path, _cohort(tmp_path, n_subjects=2), ["full"], [0])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings, tracking = _settings(uri, "direct")
    _, parent, resumed = open_parent_run(tracking, jobs, settings, "direct")
    rows = run_job(jobs[0], settings, ChildRuns(parent, settings))
    assert not resumed and [r["scenario"] for r in rows] == ["day1", "longitudinal"]
    assert all(r["subject"] == jobs[0].subject and r["executed_on"] == "host" for r in rows)
    assert not any(k.startswith("device_") for k in rows[0])  # no device in these settings
    children = mlflow.MlflowClient(uri).search_runs([parent.experiment_id],
                                                    filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'")
    assert sorted(c.data.tags["scenario"] for c in children) == ["day1", "longitudinal"]
    assert {c.data.params["lr"] for c in children} == {str(settings.finetune.lr)}


def test_a_job_failure_is_a_failed_child_run_naming_the_error(tmp_path):
    jobs = _plan(tmp_path, _cohort(tmp_path, n_subjects=2), ["full"], [0])
    broken = dataclasses.replace(jobs[0], pretrained=str(tmp_path / "missing.pt"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings, tracking = _settings(uri, "broken")
    _, parent, _ = open_parent_run(tracking, [broken], settings, "broken")
    with pytest.raises(FileNotFoundError):
        run_job(broken, settings, ChildRuns(parent, settings))
    (child,) = mlflow.MlflowClient(uri).search_runs([parent.experiment_id], filter_string="tags.scenario = 'day1'")
    assert child.info.status == "FAILED" and "missing.pt" in child.data.tags["error"]


def test_a_worker_runs_jobs_without_importing_moabb_or_mne():
    """Workers only load arrays and checkpoints: MOABB's ~5 s import is for the data stage alone."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("import sys, flows.adapt_cohort, biotrain.study.run_job; "
            "print(sorted(m for m in ('moabb', 'mne') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _write_scores(paths, folds, gains):
    from biotrain.adaptation.sparse import scores_path
    from biotrain.io import write_json

    for fold in folds["eeg"]:
        layers = {name: {"gain": g, "params": 1, "update_bytes": 12} for name, g in gains.items()}
        write_json(scores_path(paths.pretrained("eeg", "batch", fold["subject"])), {"layers": layers})


def test_a_budget_sweep_picks_layers_per_budget_and_names_a_budget_too_small(tmp_path):
    from biotrain.device.study import step_costs
    from biotrain.models.checkpoint import load_checkpoint
    from biotrain.study import StudyConfig, plan_study
    from tests.helpers import tiny_params

    paths, folds = _cohort(tmp_path)
    gains = {"spatial": 0.0, "temporal": 0.05, "depthwise": -0.1, "pointwise": 0.1, "classifier": 0.0}
    _write_scores(paths, folds, gains)
    _, spec = load_checkpoint(str(paths.pretrained("eeg", "batch", 1)))
    floor = step_costs(spec, "sparse", layers=())["peak_l2_bytes"]
    params = tiny_params()
    params["data"]["modalities"] = ["eeg"]
    config = StudyConfig.from_params(validate_params(params, datasets=False), tmp_path)
    grid = {"strategy": ["sparse"], "sparse_budget_kb": [floor / 1000, 10_000], "lora_rank": [1]}
    jobs = plan_study(config, paths, folds, grid=grid)
    picks = {j.grid["sparse_budget_kb"]: j.layers for j in jobs}
    assert picks == {floor / 1000: (), 10_000: ("temporal", "pointwise")}  # positive gains only, forward order
    assert {j.context()["layers"] for j in jobs} == {"classifier", "temporal+pointwise+classifier"}
    assert all(j.finetune(config.finetune).sparse_layers == j.layers for j in jobs)
    with pytest.raises(ValueError, match=r"sweep.grid.sparse_budget_kb=.* allowed: at least"):
        plan_study(config, paths, folds, grid={"strategy": ["sparse"], "sparse_budget_kb": [floor / 2000]})
