"""Test helpers: a throwaway copy of the project with its own params, run through real DVC.

:func:`subprocess_env` is the one place that builds a subprocess's environment: this checkout's
code on ``PYTHONPATH``, this interpreter's scripts on ``PATH``, and whatever the session set in
``os.environ`` -- in particular ``PREFECT_API_URL`` while the ``prefect_api_url`` fixture is
active, so pipelines report to the session's Prefect server instead of each starting its own.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess a test starts (see the module docstring)."""
    return {**os.environ, "PYTHONPATH": str(ROOT),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, env={**os.environ, **GIT_ENV}, check=True, capture_output=True)


def make_project(dest: Path, params: dict | Path, scm: bool = False) -> Path:
    """Copy the library, stages, flows and dvc.yaml into ``dest`` with ``params`` as params.yaml.

    ``scm=True`` makes it a git repository with one commit (DVC experiments need one).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("biotrain", "stages", "flows"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", dest)
    shutil.copy(ROOT / ".dvcignore", dest)
    if isinstance(params, dict):
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    else:
        shutil.copy(params, dest / "params.yaml")
    if scm:
        git(dest, "init", "-q")
        (dest / ".gitignore").write_text("mlflow.db\nmlartifacts/\n__pycache__/\n")
        run_dvc(dest, "init", "-q")
        git(dest, "add", "-A")
        git(dest, "commit", "-q", "-m", "project")
    else:
        run_dvc(dest, "init", "--no-scm", "-q")
    return dest


def tiny_params() -> dict:
    return yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())


def run_dvc(project: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """``dvc <args>`` in ``project`` with :func:`subprocess_env` (plus ``env``)."""
    # the stages run as ``python -m stages.<name>`` in ``project``: its own copy of the code comes first
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=subprocess_env(**(env or {})),
                          capture_output=True, text=True, timeout=1800)
    if check:
        assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def run_stage(project: Path, params: dict, stage: str = "data") -> subprocess.CompletedProcess:
    """One stage script (``python -m stages.<stage>``) in ``project`` with ``params`` as params.yaml,
    using this checkout's code (no DVC: for checking what a single stage does or refuses)."""
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)


def run_stage_in_process(project: Path, params: dict, stage: str, monkeypatch) -> None:
    """``stages.<stage>.main()`` in ``project`` in this process: what :func:`run_stage` does without
    an interpreter start-up (importing torch, MNE and MOABB costs seconds); errors propagate."""
    import importlib

    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "argv", [stage])
    importlib.import_module(f"stages.{stage}").main()


def copy_project(src: Path, dest: Path) -> Path:
    """A copy of a project that has run (git, DVC cache, outputs, MLflow store), independent of it.

    DVC's ``.dvc/tmp`` (locks, the inode-keyed hash index, experiment queues) is left behind:
    DVC rebuilds it. The MLflow store records absolute artifact locations; they are pointed at
    the copy's own ``mlartifacts``, so runs made in the copy never write into ``src``.
    """
    def ignore(folder: str, names: list[str]) -> list[str]:
        return ["tmp"] if Path(folder) == src / ".dvc" else []

    shutil.copytree(src, dest, ignore=ignore, symlinks=True)
    store = dest / "mlflow.db"
    if store.exists():
        old, new = (src / "mlartifacts").as_uri(), (dest / "mlartifacts").as_uri()
        with sqlite3.connect(store) as db:
            db.execute("UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)", (old, new))
            db.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", (old, new))
        db.close()
    return dest
