"""Real-loader tests: offline by default; ``@pytest.mark.network`` tests run only when asked.

Set ``BIOTRAIN_NETWORK_TESTS=1`` to run the tests that really download (as MOABB gates its own
download tests behind an opt-in).
"""

from __future__ import annotations

import os

import pytest

NETWORK_ENV = "BIOTRAIN_NETWORK_TESTS"


def network_tests_enabled() -> bool:
    return os.environ.get(NETWORK_ENV, "").strip().lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config, items):
    if network_tests_enabled():
        return
    skip = pytest.mark.skip(reason=f"needs the network: set {NETWORK_ENV}=1 to run")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)
