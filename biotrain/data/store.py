"""Windows on disk: one ``.npz`` per subject, plus a manifest naming them and their fingerprint.

Per-subject files make the ``data`` stage incremental: adding a subject computes only that
subject, and a subject is recomputed only when what produced it changes: the dataset, its
arguments other than the subject selection, the window spec, or the content of the subject's
recording files. The manifest keeps each file's SHA-256, checked before the file is reused, so
a damaged output is rebuilt rather than passed on. A whole modality is written into a staging
folder and swapped in at the end, so a failure never leaves a half-written output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path
from .validate import DataError
from .arrays import Windows, concat_windows

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
    if not path.exists():
        raise DataError(f"{path} is missing: run the data stage first (dvc repro data, or biotrain run)")
    if path.is_dir():
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            entries = manifest["subjects"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path / MANIFEST}: missing or unreadable ({type(err).__name__}: {err}); "
                            f"rebuild the windows with `dvc repro data`") from None
        return concat_windows([load_windows(path / entry["file"]) for entry in entries])
    try:
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
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: unreadable windows file ({type(err).__name__}: {err}); it is damaged or "
                        f"truncated: rebuild it with `dvc repro data` (the data stage checks and rebuilds "
                        f"damaged files)") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# The code that reads recordings and cuts windows: a subject's windows made by other code are not reused.
CODE_DIR = Path(__file__).parent


def code_digest() -> str:
    """SHA-256 of every module of this package (the whole package: which of them a dataset's
    windows pass through depends on the dataset, and a recompute is cheaper than a stale file)."""
    h = hashlib.sha256()
    for path in sorted(CODE_DIR.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def fingerprint(obj) -> str:
    """A stable hash of what produced a subject's windows."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def reusable_subjects(folder: str | Path, fps: dict[int, str]) -> tuple[dict[int, Path], list[str]]:
    """Subjects already written under ``folder`` from the same inputs, and notes on damaged ones.

    ``fps`` is each subject's fingerprint (parameters and recordings). A file is reused only if
    its fingerprint matches and its bytes still have the SHA-256 the manifest recorded.
    """
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        entries = list(manifest["subjects"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}, []
    reuse, notes = {}, []
    for e in entries:
        if not isinstance(e, dict) or "sha256" not in e:
            continue
        subject, path = int(e["subject"]), folder / e["file"]
        if fps.get(subject) != e.get("fingerprint"):
            continue
        if not path.is_file():
            notes.append(f"subject {subject}: {path} is missing; recomputed")
        elif file_sha256(path) != e["sha256"]:
            notes.append(f"subject {subject}: {path} is damaged (its content does not match the manifest); recomputed")
        else:
            reuse[subject] = path
    return reuse, notes


class StagedFolder:
    """Build a modality folder beside the real one; replace the real one only on success."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(dir=self.folder.parent, prefix=f".{self.folder.name}."))
        self.entries: list[dict] = []

    def add(self, subject: int, fp: str, windows: Windows | None = None, reuse: Path | None = None) -> None:
        name = f"subject-{subject}.npz"
        if reuse is not None:
            shutil.copy2(reuse, self.stage / name)
        else:
            save_windows(self.stage / name, windows)
        self.entries.append({"subject": int(subject), "file": name, "fingerprint": fp,
                             "sha256": file_sha256(self.stage / name)})

    def commit(self, extra: dict | None = None) -> None:
        manifest = {"subjects": self.entries, **(extra or {})}
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
