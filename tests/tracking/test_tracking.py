"""MLflow runs as tasks record them, against a real SQLite store."""

from __future__ import annotations

from mlflow import MlflowClient

from biotrain.tracking import Tracker


def _record(tracker, parent, key, status="FINISHED", replace=False, acc=0.5):
    return tracker.record_run(f"run-{key}", parent, key, tags={"subject": 1}, params={"lr": 0.005},
                              steps=[{"acc": acc}, {"acc": acc + 0.1}], start_ms=1, status=status, replace=replace)


def _children(tracker, parent):
    return tracker.client.search_runs([tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")


def test_a_recorded_run_is_finished_with_every_step(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'm.db'}", "e")
    parent, _ = tracker.resume_or_start("k", "parent")
    run_id = _record(tracker, parent, "task-1")
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["subject"] == "1" and run.data.params["lr"] == "0.005"
    history = tracker.client.get_metric_history(run_id, "acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.6)]


def test_a_resumed_parent_keeps_one_child_per_task(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = Tracker(uri, "e")
    parent, resumed = tracker.resume_or_start("k", "parent")
    assert not resumed
    first = _record(tracker, parent, "done-before-the-kill")
    _record(tracker, parent, "failed-before-the-kill", status="FAILED")
    # the flow is killed; the rerun resumes the same parent
    again, resumed = Tracker(uri, "e").resume_or_start("k", "parent")
    assert (again, resumed) == (parent, True)
    assert _record(tracker, again, "done-before-the-kill", replace=True) == first  # kept, not duplicated
    redone = _record(tracker, again, "failed-before-the-kill", replace=True)
    children = _children(tracker, parent)
    assert sorted(r.data.tags["task_key"] for r in children) == ["done-before-the-kill", "failed-before-the-kill"]
    assert {r.info.run_id for r in children} == {first, redone}
    assert all(r.info.status == "FINISHED" for r in children)


def test_a_finished_parent_is_never_resumed(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'm.db'}", "e")
    parent, _ = tracker.resume_or_start("k", "parent")
    tracker.end_run(parent)
    second, resumed = tracker.resume_or_start("k", "parent")
    assert second != parent and not resumed
    assert MlflowClient(tracker.uri).get_run(parent).info.status == "FINISHED"


def test_the_experiment_opens_on_its_runs_in_the_study_view(tmp_path):
    """MLflow 3 would open a new experiment on its GenAI overview with no metric columns."""
    import json

    from biotrain.tracking.views import EXPERIMENT_KIND_TAG, VIEW_TAG, runs_page_url, study_view_state

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = Tracker(uri, "study")
    tags = MlflowClient(uri).get_experiment(tracker.experiment_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    view = json.loads(tags[VIEW_TAG])
    assert view == json.loads(json.dumps(study_view_state()))
    assert "metrics.`acc_after`" in view["selectedColumns"]
    assert [k["groupByData"] for k in view["groupBy"]["groupByKeys"]] == ["modality", "scenario", "strategy"]
    url = runs_page_url("http://127.0.0.1:5000/", tracker.experiment_id)
    assert url.endswith(f"/#/experiments/{tracker.experiment_id}/runs?workflowType=machine_learning"
                        "&viewStateShareKey=biotrain-study")
    # an experiment made before the view existed gets it when a tracker next opens it
    client = MlflowClient(uri)
    client.delete_experiment_tag(tracker.experiment_id, VIEW_TAG)
    Tracker(uri, "study")
    assert VIEW_TAG in client.get_experiment(tracker.experiment_id).tags
