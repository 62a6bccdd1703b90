"""Windows on disk: one ``.npz`` per subject, plus a manifest naming them and their fingerprint.

Per-subject files make the ``data`` stage incremental: adding a subject computes only that
subject, and a subject is recomputed only when what produced it (dataset, its arguments other
than the subject selection, the window spec) changes. A whole modality is written into a staging
folder and swapped in at the end, so a failure never leaves a half-written output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path
from .windows import Windows, concat_windows

MANIFEST = "manifest.json"


def save_windows(path: str | Path, w: Windows) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            X=w.X,
            y=w.y,
            subject=w.meta["subject"].to_numpy(np.int64),
            session=w.meta["session"].to_numpy(str),
            run=w.meta["run"].to_numpy(str),
            trial=w.meta["trial"].to_numpy(np.int64),
            header=np.array(json.dumps({
                "ch_names": w.ch_names, "class_names": w.class_names, "sfreq": w.sfreq, "info": w.info,
            })),
        )


def load_windows(path: str | Path) -> Windows:
    """One ``.npz`` file, or a modality folder (every subject listed in its manifest)."""
    path = Path(path)
    if path.is_dir():
        manifest = json.loads((path / MANIFEST).read_text())
        return concat_windows([load_windows(path / entry["file"]) for entry in manifest["subjects"]])
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        meta = pd.DataFrame({
            "subject": z["subject"], "session": z["session"].astype(str),
            "run": z["run"].astype(str), "trial": z["trial"],
        })
        return Windows(
            X=z["X"], y=z["y"], meta=meta, ch_names=header["ch_names"],
            class_names=header["class_names"], sfreq=header["sfreq"], info=header["info"],
        )


def fingerprint(obj) -> str:
    """A stable hash of what produced a subject's windows."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def reusable_subjects(folder: str | Path, fp: str) -> dict[int, Path]:
    """Subjects already written under ``folder`` with the same fingerprint."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    if manifest.get("fingerprint") != fp:
        return {}
    return {int(e["subject"]): folder / e["file"] for e in manifest["subjects"] if (folder / e["file"]).is_file()}


class StagedFolder:
    """Build a modality folder beside the real one; replace the real one only on success."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(dir=self.folder.parent, prefix=f".{self.folder.name}."))
        self.entries: list[dict] = []

    def add(self, subject: int, windows: Windows | None = None, reuse: Path | None = None) -> None:
        name = f"subject-{subject}.npz"
        if reuse is not None:
            shutil.copy2(reuse, self.stage / name)
        else:
            save_windows(self.stage / name, windows)
        self.entries.append({"subject": int(subject), "file": name})

    def commit(self, fp: str, extra: dict | None = None) -> None:
        manifest = {"fingerprint": fp, "subjects": self.entries, **(extra or {})}
        (self.stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        old = None
        if self.folder.exists():
            old = self.folder.with_name(f".{self.folder.name}.old-{os.getpid()}")
            os.replace(self.folder, old)
        os.replace(self.stage, self.folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
