"""The Prefect flow on a small in-memory cohort, tracked in a real MLflow SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pickle
import os
import subprocess
import sys
import time

import mlflow
import pytest

from biotrain.tracking.views import GROUP_BY, VIEW_METRICS, VIEW_TAGS
from tests.helpers import ROOT, flow_settings, plan_eeg, run_flow, runner, small_cohort

def _comparable(rows: list[dict]) -> list[dict]:
    """Rows in a fixed order without host timings (which differ run to run)."""
    key = lambda r: (r["subject"], r["scenario"], r["strategy"], r["session"])  # noqa: E731
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in sorted(rows, key=key)]


def test_flow_one_parent_and_one_child_run_per_task(tmp_path, prefect_harness):
    cohort = small_cohort(tmp_path)
    strategies, seeds = ["none", "last_layer", "full", "edge"], [0, 1]
    jobs = plan_eeg(tmp_path, cohort, strategies, seeds)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rows = run_flow(jobs, flow_settings(uri, "flow-test"), runner("threads", 2))

    n_tasks = 2 * len(jobs)  # child runs: day-1 and longitudinal per job
    assert len(jobs) == 3 * 4 * 2 and len(rows) == n_tasks  # two sessions: one row per task
    none_rows = [r for r in rows if r["strategy"] == "none"]
    assert all(r["acc_before"] == r["acc_after"] for r in none_rows)

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["flow-test"])
    parents = runs[runs["tags.kind"] == "flow"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    children = runs[runs["tags.mlflow.parentRunId"] == parents.iloc[0]["run_id"]]
    assert len(children) == n_tasks and (children["status"] == "FINISHED").all()
    keys = set(zip(children["tags.subject"], children["tags.scenario"], children["tags.strategy"], children["tags.seed"]))
    assert len(keys) == n_tasks  # exactly one child per (subject, scenario, strategy, seed)
    for col in ("metrics.acc_before", "metrics.acc_after", "metrics.n_calib", "metrics.host_train_seconds"):
        assert children[col].notna().all()
    for tag in ("dataset", "modality", "subject", "session", "scenario", "strategy", "seed"):
        assert children[f"tags.{tag}"].notna().all()
    for metric in VIEW_METRICS:  # the UI's study view shows columns the children really log
        if not metric.startswith("device_"):  # no device costs in these settings (test_pipeline has them)
            assert children[f"metrics.{metric}"].notna().all(), metric
    for tag in VIEW_TAGS + GROUP_BY:
        assert children[f"tags.{tag}"].notna().all(), tag


def test_same_results_whatever_the_concurrency(tmp_path, prefect_harness):
    cohort = small_cohort(tmp_path, n_subjects=2)
    jobs = plan_eeg(tmp_path, cohort, ["full", "edge"], [3])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    one = run_flow(jobs, flow_settings(uri, "a"), runner("threads", 1))
    two = run_flow(jobs, flow_settings(uri, "b"), runner("threads", 2))
    assert _comparable(one) == _comparable(two)


def test_failed_task_leaves_no_run_marked_running(tmp_path, prefect_harness):
    cohort = small_cohort(tmp_path, n_subjects=2)
    jobs = plan_eeg(tmp_path, cohort, ["full"], [0])
    jobs[0] = dataclasses.replace(jobs[0], pretrained=str(tmp_path / "missing.pt"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(Exception):
        run_flow(jobs, flow_settings(uri, "failing"), runner("threads", 1))
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["failing"])
    assert len(runs) >= 1 and not (runs["status"] == "RUNNING").any()
    assert (runs[runs["tags.kind"] == "flow"]["status"] == "FAILED").all()
    failed = runs[runs["tags.subject"] == str(jobs[0].subject)]
    assert len(failed) == 1 and failed.iloc[0]["status"] == "FAILED"  # the failing task's run says why
    assert "missing.pt" in failed.iloc[0]["tags.error"]


# Runs the flow on a local Dask cluster in a fresh process with no Prefect server configured (as a
# stage does), watching which Prefect servers run among the process's descendants meanwhile.
DASK_SCRIPT = """
import json, sys, threading, psutil
from flows.adapt_cohort import run_adapt_cohort

# Only this process's own tree is watched. A server is a process whose arguments *are*
# `-m uvicorn ... prefect.server.api.server:create_app`: a child forked from this script and not yet
# exec'd carries this script's text (which names the app) as its command line, and under load that
# window is long enough to be seen. Only servers alive at the same moment count: Prefect replaces
# a server whose port was taken meanwhile, which is still one server at a time.
most, done = 0, threading.Event()

def is_server(args):
    return ("-m" in args and args[args.index("-m") + 1:][:1] == ["uvicorn"]
            and "prefect.server.api.server:create_app" in args)

def watch():
    global most
    while not done.wait(0.1):
        alive = 0
        for p in psutil.Process().children(recursive=True):
            try:
                if is_server(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                    alive += 1
            except psutil.Error:
                pass
        most = max(most, alive)

threading.Thread(target=watch, daemon=True).start()
import pickle
jobs, settings, runner = pickle.load(open(sys.argv[1], "rb"))
rows, _ = run_adapt_cohort(jobs, *settings, runner)
done.set()
json.dump({"rows": rows, "prefect_servers": most}, open(sys.argv[2], "w"))
"""


@pytest.mark.slow
def test_dask_cluster_of_two_processes_gives_the_thread_runners_results(tmp_path, prefect_harness):
    pytest.importorskip("prefect_dask")
    cohort = small_cohort(tmp_path, n_subjects=2)
    jobs = plan_eeg(tmp_path, cohort, ["last_layer", "edge"], [0])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    threads = run_flow(jobs, flow_settings(uri, "threads"), runner("threads", 2))

    (tmp_path / "in.pickle").write_bytes(pickle.dumps([jobs, flow_settings(uri, "dask"), runner("dask", 2)]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.run([sys.executable, "-c", DASK_SCRIPT, str(tmp_path / "in.pickle"), str(tmp_path / "out.json")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert _comparable(out["rows"]) == _comparable(threads)
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["dask"])
    assert (runs["status"] == "FINISHED").all() and len(runs) == 1 + 2 * len(jobs)
    # one Prefect server at a time, the flow's: the workers did not each start one of their own
    assert out["prefect_servers"] == 1


def _task_runs_reported(flow_run_name: str, expected: int) -> list[str]:
    """Names of the task runs the session's Prefect API holds for the flow run ``flow_run_name``.

    Task runs reach the server as events, so wait (up to 30 s) for ``expected`` of them.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async def read():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])))
            return [r.name for r in runs]

    deadline = time.time() + 30
    names = asyncio.run(read())
    while len(names) < expected and time.time() < deadline:
        time.sleep(0.5)
        names = asyncio.run(read())
    return names


@pytest.mark.slow
def test_an_existing_dask_cluster_by_address_reports_to_the_flows_prefect_api(tmp_path, prefect_harness):
    pytest.importorskip("prefect_dask")
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    cohort = small_cohort(tmp_path, n_subjects=2)
    jobs = plan_eeg(tmp_path, cohort, ["full"], [0])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    threads = run_flow(jobs, flow_settings(uri, "threads"), runner("threads", 2))
    # a cluster started elsewhere, whose workers were told where the Prefect API is
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"PREFECT_API_URL": PREFECT_API_URL.value()}) as cluster:
        dask = run_flow(jobs, flow_settings(uri, "by-address"), runner("dask", 1, cluster.scheduler_address), "by-address")
    assert _comparable(dask) == _comparable(threads)
    assert len(_task_runs_reported("by-address", len(jobs))) == len(jobs)


@pytest.mark.slow
def test_ray_gives_the_thread_runners_results(tmp_path, prefect_harness):
    """Ray is an optional extra (pip install -e '.[ray]'); skipped where it is not installed."""
    pytest.importorskip("prefect_ray")
    cohort = small_cohort(tmp_path, n_subjects=2)
    jobs = plan_eeg(tmp_path, cohort, ["full"], [0])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    threads = run_flow(jobs, flow_settings(uri, "threads"), runner("threads", 2))
    ray = run_flow(jobs, flow_settings(uri, "ray"), runner("ray", 2))
    assert _comparable(ray) == _comparable(threads)


def _malloc_trim_threshold():
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


@pytest.mark.slow
def test_local_dask_workers_keep_glibcs_adaptive_allocator(monkeypatch):
    pytest.importorskip("distributed")
    from distributed import Client

    from flows.runners import local_dask_cluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with local_dask_cluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            assert list(client.run(_malloc_trim_threshold).values()) == [None]
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # nothing left behind in this process either


@pytest.mark.slow
def test_local_dask_workers_run_on_tcmalloc_and_leave_this_process_alone(monkeypatch):
    pytest.importorskip("distributed")
    from distributed import Client

    from biotrain.study.allocator import DEBIAN_PACKAGE, find_tcmalloc, process_allocator
    from flows.runners import local_dask_cluster

    library = find_tcmalloc()
    if library is None:
        pytest.skip(f"TCMalloc is not installed (Debian package {DEBIAN_PACKAGE})")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    with local_dask_cluster(preload=library, n_workers=2, threads_per_worker=1, processes=True,
                            dashboard_address=None) as cluster:
        with Client(cluster) as client:
            assert sorted(client.run(process_allocator).values()) == ["tcmalloc", "tcmalloc"]
    assert "LD_PRELOAD" not in os.environ and process_allocator() == "system"


def test_jobs_share_one_data_digest_and_differ_by_checkpoint(tmp_path):
    """A worker keeps one copy of a modality's data (keyed by data_digest) for all its jobs."""
    cohort = small_cohort(tmp_path)
    jobs = plan_eeg(tmp_path, cohort, ["full", "edge"], [0])
    assert len({j.data_digest for j in jobs}) == 1
    by_checkpoint = {j.pretrained: j.inputs_digest for j in jobs}
    assert len(set(by_checkpoint.values())) == len(by_checkpoint) == 3 * 2  # subjects x norms
