"""The job list of a study and of a sweep (one planner), from inputs on disk (no flow, no DVC)."""

from __future__ import annotations

import json

import pytest

from biotrain.params import validate_params
from biotrain.study import GRID_KEYS, StudyConfig, StudyPaths, expand_grid, plan_study
from tests.helpers import tiny_params


def _inputs(tmp_path, subjects=(1, 2, 3)):
    """One modality's windows folder (its manifest), splits and a checkpoint per subject and norm."""
    paths = StudyPaths(windows=tmp_path / "windows", splits=tmp_path / "splits", models=tmp_path / "models")
    paths.windows_of("eeg").mkdir(parents=True)
    (paths.windows_of("eeg") / "manifest.json").write_text(json.dumps({"subjects": list(subjects)}))
    folds = [{"subject": s, "longitudinal": [{"session": "1"}] if s != 3 else []} for s in subjects]
    paths.splits.mkdir()
    paths.splits_of("eeg").write_text(json.dumps({"folds": folds}))
    for s in subjects:
        for norm in ("batch", "group"):
            path = paths.pretrained("eeg", norm, s)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{norm}-{s}".encode())
    return paths, {"eeg": folds}


def _config(tmp_path, strategies, seeds) -> StudyConfig:
    params = tiny_params()
    params["data"]["modalities"] = ["eeg"]
    params["adapt"].update(strategies=strategies, seeds=seeds)
    return StudyConfig.from_params(validate_params(params, datasets=False), tmp_path)


def plan_jobs(inputs, folds, strategies, seeds, tmp_path):
    return plan_study(_config(tmp_path, strategies, seeds), inputs, folds)


def plan_sweep(inputs, folds, grid, strategies, seeds, tmp_path):
    return plan_study(_config(tmp_path, strategies, seeds), inputs, folds, grid=grid)


def test_grid_points_follow_the_key_order_not_the_files():
    points = expand_grid({"lr": [0.1, 0.2], "strategy": ["full", "edge"]})
    assert points == [{"strategy": "full", "lr": 0.1}, {"strategy": "full", "lr": 0.2},
                      {"strategy": "edge", "lr": 0.1}, {"strategy": "edge", "lr": 0.2}]
    assert GRID_KEYS.index("strategy") < GRID_KEYS.index("lr")
    assert expand_grid({}) == [{}]  # no grid: the study itself, once


@pytest.mark.parametrize("grid,message", [
    ({"optimizer": ["sgd"]}, r"sweep.grid keys \['optimizer'\] are not sweepable"),
    ({"lr": []}, r"sweep.grid.lr=\[\]: allowed: a non-empty list"),
    ({"lr": 0.1}, r"sweep.grid.lr=0.1: allowed: a non-empty list"),
])
def test_a_bad_grid_is_named(grid, message):
    with pytest.raises(ValueError, match=message):
        expand_grid(grid)


def test_study_jobs_one_per_subject_strategy_and_seed(tmp_path):
    inputs, folds = _inputs(tmp_path)
    jobs = plan_jobs(inputs, folds, ["full", "edge"], [0, 1], tmp_path)
    assert len(jobs) == 3 * 2 * 2
    assert {(j.subject, j.strategy, j.seed) for j in jobs} == {
        (s, st, seed) for s in (1, 2, 3) for st in ("full", "edge") for seed in (0, 1)}
    edge = next(j for j in jobs if j.strategy == "edge" and j.subject == 2)
    assert edge.pretrained == str(tmp_path / "models/eeg/group/subject-2.pt")  # edge starts from GroupNorm
    assert [j.longitudinal for j in jobs if j.strategy == "full" and j.seed == 0] == [True, True, False]
    assert all(j.grid == {} for j in jobs)


def test_sweep_jobs_take_strategy_from_the_grid_and_seeds_from_the_study(tmp_path):
    inputs, folds = _inputs(tmp_path)
    jobs = plan_sweep(inputs, folds, {"strategy": ["last_layer", "edge"], "lr": [1e-3, 5e-3]}, ["none", "full"], [0, 7], tmp_path)
    assert len(jobs) == 2 * 2 * 3 * 2  # grid points x subjects x the study's seeds
    assert {j.strategy for j in jobs} == {"last_layer", "edge"}  # the study's strategies are not run
    assert {j.seed for j in jobs} == {0, 7}
    for job in jobs:
        assert job.grid["strategy"] == job.strategy and job.grid["lr"] in (1e-3, 5e-3)
        norm = "group" if job.strategy == "edge" else "batch"
        assert job.pretrained.endswith(f"/{norm}/subject-{job.subject}.pt")
    by_seed = plan_sweep(inputs, folds, {"seed": [3]}, ["full"], [0, 1], tmp_path)
    assert {(j.strategy, j.seed, j.grid["seed"]) for j in by_seed} == {("full", 3, 3)}


def test_a_changed_checkpoint_changes_only_its_jobs_digest(tmp_path):
    inputs, folds = _inputs(tmp_path)
    before = {(j.subject, j.strategy): j.inputs_digest for j in plan_jobs(inputs, folds, ["full", "edge"], [0], tmp_path)}
    path = inputs.pretrained("eeg", "group", 2)
    path.write_bytes(b"retrained, and longer")
    after = {(j.subject, j.strategy): j.inputs_digest for j in plan_jobs(inputs, folds, ["full", "edge"], [0], tmp_path)}
    assert [k for k in before if before[k] != after[k]] == [(2, "edge")]
