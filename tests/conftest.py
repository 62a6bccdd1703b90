"""Shared fixtures: one Prefect test harness per session, quiet MNE, small cohorts."""

from __future__ import annotations

import logging
import warnings

import pytest

logging.getLogger("mne").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", category=RuntimeWarning, module="mne")


@pytest.fixture(scope="session")
def prefect_harness():
    """A throwaway Prefect API for the whole session (started once: it takes ~20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
