"""Test helpers: a throwaway copy of the project with its own params, run through real DVC.

:func:`subprocess_env` is the one place that builds a subprocess's environment: this checkout's
code on ``PYTHONPATH``, this interpreter's scripts on ``PATH``, and whatever the session set in
``os.environ`` -- in particular ``PREFECT_API_URL`` while the ``prefect_api_url`` fixture is
active, so pipelines report to the session's Prefect server instead of each starting its own.
"""

from __future__ import annotations

import copy
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from biotrain.adaptation.finetune import FinetuneConfig
from biotrain.params import validate_params
from biotrain.study import AdaptSettings, RunnerConfig, StudyConfig, StudyPaths, TrackingConfig, plan_study

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


def with_value(params: dict, key: str, value) -> dict:
    """A deep copy of ``params`` with the dotted ``key`` set to ``value``."""
    params = copy.deepcopy(params)
    *sections, leaf = key.split(".")
    node = params
    for part in sections:
        node = node[part]
    node[leaf] = value
    return params


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


def run_stage_in_process(project: Path, params: dict, stage: str, monkeypatch) -> None:
    """``stages.<stage>.main()`` in ``project`` with ``params`` as params.yaml, in this process:
    no interpreter start-up (importing torch, MNE and MOABB costs seconds); errors propagate
    (how a stage prints them from the command line: tests/pipeline/test_faults.py)."""
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


# ---- a small in-memory EEG cohort for the flow and the study core ---------------------------

C, T, K = 3, 128, 2
KWARGS = {"F1": 4, "F2": 4, "Nf": 8, "Nf2": 4}


def small_cohort(tmp_path, n_subjects=3, n_sessions=2, n=10):
    """A random EEG cohort with its folds and base models, in a study's file layout."""
    import numpy as np
    import pandas as pd
    import torch

    from biotrain.data.split import make_splits
    from biotrain.data.store import save_windows
    from biotrain.data.arrays import Windows
    from biotrain.io import write_json
    from biotrain.models import build_model
    from biotrain.models.checkpoint import save_checkpoint

    paths = StudyPaths(windows=tmp_path / "windows", splits=tmp_path / "splits", models=tmp_path / "models")
    rng = np.random.default_rng(0)
    meta = pd.DataFrame([{"subject": s, "session": str(k), "run": "0", "trial": t}
                         for s in range(1, n_subjects + 1) for k in range(n_sessions) for t in range(n)])
    w = Windows(X=rng.standard_normal((len(meta), C, T)).astype(np.float32), y=rng.integers(0, K, len(meta)),
                meta=meta, ch_names=["a", "b", "c"], class_names=["l", "r"], sfreq=64.0)
    paths.windows.mkdir()
    save_windows(paths.windows_of("eeg"), w)  # one file for the whole modality
    folds = make_splits(meta, 0.8)
    write_json(paths.splits_of("eeg"), {"folds": folds})
    for fold in folds:
        for norm in ("batch", "group"):
            torch.manual_seed(fold["subject"])
            save_checkpoint(paths.pretrained("eeg", norm, fold["subject"]),
                            build_model("mi_bminet", C, T, K, norm, **KWARGS), "mi_bminet", KWARGS)
    return paths, {"eeg": folds}


def plan_eeg(tmp_path, cohort, strategies, seeds):
    """The jobs of an EEG-only study (the tiny profile's settings) over ``cohort``."""
    params = tiny_params()
    params["data"]["modalities"] = ["eeg"]
    params["models"]["eeg"] = {"name": "mi_bminet", "kwargs": KWARGS}
    params["adapt"].update(strategies=strategies, seeds=seeds)
    paths, folds = cohort
    return plan_study(StudyConfig.from_params(validate_params(params, datasets=False), tmp_path), paths, folds)


def flow_settings(uri, experiment):
    """Two epochs, no chip costs, tracked in ``experiment``."""
    finetune = FinetuneConfig(epochs=2, lr=5e-3, momentum=0.9, weight_decay=1e-3, batch_size=8, micro_batch=1)
    return AdaptSettings(finetune=finetune), TrackingConfig(uri, experiment)


def runner(name="threads", workers=2, address=None):
    return RunnerConfig(name=name, workers=workers, address=address, retries=0)


def run_flow(jobs, settings, on: RunnerConfig, run_name="adapt_cohort"):
    """The adapt flow's rows (``settings``: what :func:`flow_settings` returns)."""
    from flows.adapt_cohort import run_adapt_cohort

    rows, _ = run_adapt_cohort(jobs, *settings, on, run_name)
    return rows
