"""Shared fixtures: one Prefect server per session, quiet MNE."""

from __future__ import annotations

import logging
import os
import warnings

import pytest

# An xdist worker is one core's worth of work: one OpenMP/BLAS thread in it and in every pipeline
# it starts (set before torch loads; measured: 286 s for the suite against 304 s with 2 threads
# per process on 2 cores, where idle OpenMP threads spin). Results do not depend on it: training
# already runs one torch thread per model.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

logging.getLogger("mne").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", category=RuntimeWarning, module="mne")

def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (whole pipelines) first: with one worker per core (``-n auto --dist
    loadfile``) the long files start at once and the short ones fill in around them, instead of
    a long file starting last and running alone. A stable sort: the order within a file stays."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# Prefect's own start-up limit is 30 s; with several engineers on two cores it can take longer
PREFECT_STARTUP_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def prefect_api_url():
    """The session's one Prefect server (a start costs ~20 s, more under load), as its API URL.

    In-process flows report to it (Prefect's test harness: a throwaway database), and so does
    every pipeline a test starts in a subprocess: ``PREFECT_API_URL`` is exported for the
    session and ``tests.helpers.subprocess_env`` passes it on, so ``dvc repro``, the stages and
    ``biotrain run`` do not each start a temporary server. Tests of the temporary-server path
    itself remove the variable from their subprocess's environment.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=PREFECT_STARTUP_TIMEOUT_S):
        url = PREFECT_API_URL.value()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PREFECT_API_URL", url)
            yield url


@pytest.fixture(scope="session")
def prefect_harness(prefect_api_url):
    """The session's Prefect server, for tests that run flows in this process."""
    return prefect_api_url
