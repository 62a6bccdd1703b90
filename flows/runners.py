"""Task runners for the adapt flow: threads, Dask or Ray, with workers that don't get in each other's way."""

from __future__ import annotations

import os
from contextlib import contextmanager

from prefect.task_runners import ThreadPoolTaskRunner

from biotrain.errors import UserError
from biotrain.study import RUNNERS, worker_preload


def local_dask_cluster(preload: str | None = None, **kwargs):
    """A ``distributed.LocalCluster`` whose worker processes run on the allocator the study asks for.

    ``preload``: a shared library the workers load before anything else (``LD_PRELOAD``), i.e.
    TCMalloc from :func:`biotrain.study.worker_preload`; None keeps the C library's malloc.

    Dask also sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers' environment (to hand memory
    back to the OS). Setting it at all turns off glibc's adaptive mmap threshold, so every tensor
    buffer above 128 kB is mmap-ed and page-faulted afresh, which slows PyTorch training in a
    worker. It is left unset. Either variable exported by the user wins.
    Dask writes the variables into this process's environment to spawn the workers; they are
    removed again afterwards.
    """
    import dask
    from distributed import LocalCluster

    before = {name: os.environ.get(name) for name in ("MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD")}
    environ = {"MALLOC_TRIM_THRESHOLD_": before["MALLOC_TRIM_THRESHOLD_"],
               "LD_PRELOAD": before["LD_PRELOAD"] or preload}
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in environ.items()}):
        try:
            return LocalCluster(**kwargs)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)


def make_task_runner(name: str, workers: int, address: str | None = None, api_url: str | None = None,
                     allocator: str = "auto"):
    """The task runner named in params: local threads, Dask (a local cluster of processes or an
    existing cluster's scheduler ``address``) or Ray (local, or an existing cluster's ``address``).

    Worker processes started here get ``api_url``, the flow's Prefect API: a process with no
    API configured starts its own temporary Prefect server, which costs each worker a core for
    several seconds and hides its task runs from the flow's server. A local Dask cluster's workers
    run on ``allocator`` (``adapt.runner.allocator``: :mod:`biotrain.study.allocator`).
    """
    env = {"PREFECT_API_URL": api_url} if api_url else {}
    if name == "threads":
        if address:
            raise ValueError(f"adapt.runner.address={address!r} needs adapt.runner.name 'dask' or 'ray', not 'threads'")
        return ThreadPoolTaskRunner(max_workers=workers)
    if name == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_class=local_dask_cluster,
                              cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True, "env": env,
                                              "preload": worker_preload(allocator)})
    if name == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as err:
            raise ValueError("adapt.runner.name='ray' needs prefect-ray: pip install -e '.[ray]'") from err
        if address:
            return RayTaskRunner(address=address)
        return RayTaskRunner(init_kwargs={"num_cpus": workers, "include_dashboard": False,
                                          "runtime_env": {"env_vars": env}})
    raise ValueError(f"adapt.runner.name={name!r} is not supported; use one of {list(RUNNERS)}")


# Prefect waits 20 s for its temporary server by default; on a loaded machine that is not enough
STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
STARTUP_TIMEOUT_S = 90
STARTUP_ATTEMPTS = 2


def start_temporary_server():
    """Prefect's temporary local server, given a longer start-up limit and one more try.

    The limit is ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` if set, else 90 s. A start
    that times out is stopped (its process ended) before the second try, so there is never more
    than one server at a time.
    """
    from prefect.server.api.server import SubprocessASGIServer

    timeout = int(float(os.environ.get(STARTUP_TIMEOUT_ENV, STARTUP_TIMEOUT_S)))
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        server = SubprocessASGIServer()  # the process-wide one Prefect itself would have started
        try:
            server.start(timeout=timeout)
            return server
        except RuntimeError as err:
            server.stop()
            if attempt == STARTUP_ATTEMPTS:
                raise UserError(
                    f"Prefect's temporary server did not answer within {timeout} s, {STARTUP_ATTEMPTS} times (is the "
                    f"machine overloaded?); raise {STARTUP_TIMEOUT_ENV}, or start a server (prefect server start) "
                    f"and export PREFECT_API_URL. Last error: {str(err).splitlines()[0][:300]}") from None
    raise AssertionError("unreachable")


@contextmanager
def shared_prefect_api(runner: str):
    """The Prefect API the flow and its worker processes report to.

    With a configured server (``PREFECT_API_URL``) that is the one. Otherwise the temporary
    server Prefect would start for the flow is started first (with a longer limit and a retry,
    :func:`start_temporary_server`), so its address can be handed to worker processes.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value()
    if url:
        yield url
        return
    server = start_temporary_server()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield server.api_url
