"""Test helpers: a throwaway copy of the project with its own params, run through real DVC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


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
    """``dvc <args>`` in ``project`` with this interpreter's environment first on PATH."""
    full_env = {**os.environ, **(env or {}), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=full_env, capture_output=True,
                          text=True, timeout=1800)
    if check:
        assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def run_stage(project: Path, params: dict, stage: str = "data") -> subprocess.CompletedProcess:
    """One stage script (``python -m stages.<stage>``) in ``project`` with ``params`` as params.yaml,
    using this checkout's code (no DVC: for checking what a single stage does or refuses)."""
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)
