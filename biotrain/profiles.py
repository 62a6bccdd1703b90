"""Run the pipeline on a profile (``profiles/<name>.yaml``) without touching the user's params.yaml.

A profile run is a DVC project of its own under ``runs/<name>/``: the code, ``dvc.yaml`` and the
profile as its ``params.yaml``. Its outputs (``runs/<name>/reports/study.md`` ...) never mix with
the main study's, and rerunning it reuses what is still up to date, as ``dvc repro`` does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .errors import UserError

CODE = ("biotrain", "stages", "flows")
FILES = ("dvc.yaml", ".dvcignore")


def available_profiles(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "profiles").glob("*.yaml"))


def prepare_profile_run(root: str | Path, name: str) -> Path:
    """``runs/<name>/`` with today's code and the profile as params; returns its path."""
    root = Path(root).resolve()
    profile = root / "profiles" / f"{name}.yaml"
    if not profile.is_file():
        raise UserError(f"no profile {name!r} (looked for {profile}); "
                                f"available: {', '.join(available_profiles(root)) or 'none'}")
    dest = root / "runs" / name
    dest.mkdir(parents=True, exist_ok=True)
    for folder in CODE:  # today's code: DVC reruns the stages whose code changed
        shutil.copytree(root / folder, dest / folder, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name_ in FILES:
        shutil.copy2(root / name_, dest / name_)
    shutil.copy2(profile, dest / "params.yaml")
    if not (dest / ".dvc").is_dir():  # runs/ is git-ignored: a DVC project without SCM
        subprocess.run([sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], cwd=dest, check=True)
    return dest
