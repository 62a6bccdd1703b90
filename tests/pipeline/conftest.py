"""The one shared pipeline run of the session: the tiny profile through ``dvc repro``."""

from __future__ import annotations

import pytest

from tests.helpers import ROOT, git, make_project, run_dvc


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, prefect_api_url):
    """A git + DVC project that ran the whole pipeline once on ``profiles/tiny.yaml`` (committed).

    Shared by every end-to-end assertion that only reads a finished study; tests that change
    the project (rerun, ``dvc exp run``) work on ``tests.helpers.copy_project`` copies of it.
    """
    project = make_project(tmp_path_factory.mktemp("tiny_study"), ROOT / "profiles" / "tiny.yaml", scm=True)
    run_dvc(project, "repro")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "first run")
    return project
