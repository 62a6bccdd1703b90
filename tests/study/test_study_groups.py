"""Jobs trained together: which jobs group, and a group's rows and child runs against
the same jobs run one at a time (a real MLflow SQLite store, no Prefect)."""

from __future__ import annotations

import dataclasses

import mlflow
import pytest

from biotrain.study import ChildRuns, DeviceConfig, group_jobs, open_parent_run, rows_in_job_order, run_group, run_job
from tests.helpers import flow_settings, plan_eeg, small_cohort


def _settings(tmp_path, experiment="groups", **finetune):
    settings, tracking = flow_settings(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment)
    return dataclasses.replace(settings, finetune=dataclasses.replace(settings.finetune, **finetune)), tracking


def _signature(group):
    return {(j.strategy, tuple(sorted((k, v) for k, v in j.grid.items() if k != "seed"))) for j in group}


def test_only_jobs_that_batch_share_a_group(tmp_path):
    jobs = plan_eeg(tmp_path, small_cohort(tmp_path), ["none", "last_layer", "full", "edge"], [0, 1, 2])
    settings, _ = _settings(tmp_path)
    groups = group_jobs(jobs, settings)
    # last_layer: 3 subjects x 3 seeds; MI-BMINet's edge runs one model at a time (batched.BATCHED)
    assert sorted(len(g) for g in groups if len(g) > 1) == [9]
    assert all(len(g) == 1 for g in groups if g[0].strategy in ("none", "full", "edge"))
    assert sorted(id(j) for g in groups for j in g) == sorted(id(j) for j in jobs)  # every job once
    assert [jobs.index(g[0]) for g in groups] == sorted(jobs.index(g[0]) for g in groups)  # order of first job

    small = group_jobs(jobs, settings, max_size=4)  # 9 -> 3 groups of 3: too small to pay
    assert all(len(g) == 1 for g in small)
    forced = group_jobs(jobs, settings, max_size=4, force=True)
    assert sorted(len(g) for g in forced if len(g) > 1) == [3] * 3
    assert all(j.strategy == "last_layer" for g in forced if len(g) > 1 for j in g)  # full never batches
    assert group_jobs(jobs, _settings(tmp_path, host_loop="reference")[0], force=True) == [[j] for j in jobs]


def test_a_device_executed_subject_and_other_grid_points_stay_apart(tmp_path):
    jobs = plan_eeg(tmp_path, small_cohort(tmp_path), ["last_layer"], [0, 1])
    jobs += [dataclasses.replace(j, grid={"lr": 1e-3}) for j in jobs]  # a second grid point
    settings, _ = _settings(tmp_path)
    on_chip = dataclasses.replace(settings, device=DeviceConfig(execute="gvsoc", execute_subjects=(1,)))
    groups = group_jobs(jobs, on_chip, force=True)
    assert all(len(_signature(g)) == 1 for g in groups)  # one strategy and grid point per group
    assert all(len(g) == 1 for g in groups if any(j.subject == 1 for j in g))
    assert sum(len(g) == 1 for g in groups) == 4  # subject 1: 2 grid points x 2 seeds
    assert sorted(len(g) for g in groups if len(g) > 1) == [4] * 2  # subjects 2-3 x 2 seeds per grid point


def test_sparse_jobs_group_only_with_the_same_pick_of_layers(tmp_path):
    jobs = plan_eeg(tmp_path, small_cohort(tmp_path), ["last_layer"], [0, 1])  # 3 subjects x 2 seeds
    picks = {1: ("spatial",), 2: ("spatial",), 3: ("pointwise",)}
    jobs = [dataclasses.replace(j, strategy="sparse", layers=picks[j.subject]) for j in jobs]
    groups = group_jobs(jobs, _settings(tmp_path)[0], force=True)
    assert sorted(len(g) for g in groups) == [2, 4]
    assert all(len({j.layers for j in g}) == 1 for g in groups)


def test_rows_come_back_in_the_jobs_order(tmp_path):
    jobs = plan_eeg(tmp_path, small_cohort(tmp_path), ["none", "last_layer"], [0, 1])
    groups = group_jobs(jobs, _settings(tmp_path)[0], force=True)
    results = [[[{"job": jobs.index(j)}] for j in g] for g in groups]
    assert [r["job"] for r in rows_in_job_order(jobs, groups, results)] == list(range(len(jobs)))


def _children(uri, parent):
    client = mlflow.MlflowClient(uri)
    return client.search_runs([parent.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'")


def _run(jobs, settings, tracking, name, grouped):
    tracking = dataclasses.replace(tracking, experiment=f"{tracking.experiment}-{name}")  # a parent of its own
    _, parent, _ = open_parent_run(tracking, jobs, settings, name)
    runs = ChildRuns(parent, settings)
    if grouped:
        groups = group_jobs(jobs, settings, force=True)
        assert len(groups) == 1
        rows = rows_in_job_order(jobs, groups, [run_group(g, settings, runs, force=True) for g in groups])
    else:
        rows = [r for j in jobs for r in run_job(j, settings, runs)]
    return rows, _children(tracking.uri, parent)


def _comparable(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


def test_a_group_gives_each_job_its_rows_and_child_runs(tmp_path):
    """last_layer, the one MI-BMINet strategy that batches (EpiDeNet's edge group is held to its
    sequential runs in tests/adaptation/test_adapt_batched.py)."""
    jobs = plan_eeg(tmp_path, small_cohort(tmp_path), ["last_layer"], [0, 1])
    settings, tracking = _settings(tmp_path, "groups-last_layer")
    alone, _ = _run(jobs, settings, tracking, "alone", grouped=False)
    together, children = _run(jobs, settings, tracking, "together", grouped=True)
    again, _ = _run(jobs, settings, tracking, "again", grouped=True)

    assert _comparable(together) == _comparable(again)  # bit-exact run to run
    assert [list(r) for r in together] == [list(r) for r in alone]  # same columns, same order
    assert _comparable(together) == _comparable(alone)  # adapt_many keeps last_layer bit-exact
    assert len(children) == 2 * len(jobs) and all(c.info.status == "FINISHED" for c in children)
    keys = {(c.data.tags["subject"], c.data.tags["seed"], c.data.tags["scenario"]) for c in children}
    assert len(keys) == 2 * len(jobs)  # one child per job and scenario


def test_a_group_failure_is_a_failed_child_run_per_job(tmp_path):
    jobs = plan_eeg(tmp_path, small_cohort(tmp_path, n_subjects=2), ["last_layer"], [0])
    jobs[1] = dataclasses.replace(jobs[1], pretrained=str(tmp_path / "missing.pt"))
    settings, tracking = _settings(tmp_path, "group-fails")
    _, parent, _ = open_parent_run(tracking, jobs, settings, "fails")
    with pytest.raises(FileNotFoundError):
        run_group(jobs, settings, ChildRuns(parent, settings), force=True)
    children = _children(tracking.uri, parent)
    assert len(children) == len(jobs) and all(c.info.status == "FAILED" for c in children)
    assert all(c.data.tags["scenario"] == "day1" and "missing.pt" in c.data.tags["error"] for c in children)


def test_the_flow_runs_groups_and_returns_rows_in_the_jobs_order(tmp_path, prefect_harness):
    from flows.adapt_cohort import run_adapt_cohort
    from tests.helpers import runner

    jobs = plan_eeg(tmp_path, small_cohort(tmp_path), ["none", "last_layer", "edge"], [0, 1])
    settings, tracking = _settings(tmp_path, "flow-groups")
    per_job, _ = run_adapt_cohort(jobs, settings, dataclasses.replace(tracking, experiment="per-job"), runner())
    grouped, parent_id = run_adapt_cohort(jobs, settings, tracking, runner(), force_batching=True)
    key = lambda r: (r["subject"], r["strategy"], r["seed"], r["scenario"], r["session"])  # noqa: E731
    assert [key(r) for r in grouped] == [key(r) for r in per_job]  # the stage's CSV keeps its row order
    mlflow.set_tracking_uri(tracking.uri)
    runs = mlflow.search_runs(experiment_names=["flow-groups"], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(runs) == 2 * len(jobs) and (runs["status"] == "FINISHED").all()
