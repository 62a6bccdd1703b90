"""Run the pipeline on a profile (``profiles/<name>.yaml``) without touching the user's params.yaml.

A profile run is a DVC project of its own under ``runs/<name>/``: the code the stages depend on,
``dvc.yaml`` and the profile as its ``params.yaml``. Its outputs (``runs/<name>/reports/study.md``
...) never mix with the main study's, and rerunning it reuses what is still up to date, as
``dvc repro`` does. What to copy is read from ``dvc.yaml``: every dependency that no stage makes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .errors import UserError

FILES = ("dvc.yaml", ".dvcignore")


def _path(entry) -> str:
    return next(iter(entry)) if isinstance(entry, dict) else entry


def code_dependencies(dvc_file: Path) -> list[str]:
    """The dependencies of ``dvc_file``'s stages that no stage writes: the code they run."""
    stages = yaml.safe_load(dvc_file.read_text())["stages"].values()
    made = {_path(o) for s in stages for key in ("outs", "metrics", "plots") for o in s.get(key, [])}
    deps = {_path(d) for s in stages for d in s.get("deps", [])}
    return sorted(d for d in deps if not any(d == m or d.startswith(m + "/") for m in made))


def available_profiles(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "profiles").glob("*.yaml"))


def prepare_profile_run(root: str | Path, name: str) -> Path:
    """``runs/<name>/`` with the current code and the profile as params; returns its path."""
    root = Path(root).resolve()
    profile = root / "profiles" / f"{name}.yaml"
    if not profile.is_file():
        raise UserError(f"no profile {name!r} (looked for {profile}); "
                                f"available: {', '.join(available_profiles(root)) or 'none'}")
    dest = root / "runs" / name
    dest.mkdir(parents=True, exist_ok=True)
    # the folders holding the stages' code, whole (so stages/sweep.py, run outside dvc repro, comes too)
    for dep in sorted({d.split("/")[0] for d in code_dependencies(root / "dvc.yaml")}):
        source, target = root / dep, dest / dep
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        else:
            raise UserError(f"dvc.yaml names {dep}, which does not exist in {root}")
    for name_ in FILES:
        shutil.copy2(root / name_, dest / name_)
    shutil.copy2(profile, dest / "params.yaml")
    if not (dest / ".dvc").is_dir():  # runs/ is git-ignored: a DVC project without SCM
        subprocess.run([sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], cwd=dest, check=True)
    return dest
