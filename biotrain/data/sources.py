"""What each subject's windows are read from: the recording files, fingerprinted by content.

A subject's windows depend on its recordings as much as on the parameters: a changed, added or
removed file must recompute that subject (and only it). Files are hashed (SHA-256); a digest is
kept beside the outputs keyed by (path, size, mtime), so an untouched multi-GB MOABB cache is not
re-read on every run, and a touched file is re-read and found unchanged if its bytes are.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from moabb.datasets.base import BaseDataset

from ..errors import UserError
from . import synthetic

# A generated dataset's "recording" is the code that generates it: a changed generator must not
# leave windows drawn by the old one in place (their parameters, hence fingerprints, are the same).
GENERATOR_CODE = Path(synthetic.__file__)


def source_files(dataset: BaseDataset, subject: int) -> list[Path]:
    """The files ``subject``'s recordings are read from; [] for generated (synthetic) datasets.

    For MOABB datasets this is ``data_path``: the cached files (downloaded first if missing, as
    reading them would). Folders are expanded to the files inside them.
    """
    if isinstance(dataset, synthetic._SyntheticBase):
        return []
    if hasattr(dataset, "recordings"):  # SmartGlassesEOG: {session: [csv files]}
        found = [p for files in dataset.recordings(subject).values() for p in files]
    else:
        try:
            found = dataset.data_path(subject)
        except NotImplementedError:
            return []
        except Exception as err:  # network, a missing or unreadable cache: name the subject
            raise UserError(f"{dataset.code} subject {subject}: cannot find its recordings ({type(err).__name__}: "
                            f"{err})") from err
    return sorted(_expand(found))


def _expand(paths) -> Iterable[Path]:
    if paths is None:
        return
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        if p.is_dir():
            yield from (f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            yield p
        return
    if isinstance(paths, dict):
        paths = paths.values()
    for item in paths:
        yield from _expand(item)


class DigestCache:
    """SHA-256 of files, remembered by (path, size, mtime) in a small JSON file."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.entries: dict[str, dict] = {}
        if self.path and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except ValueError:
                self.entries = {}

    def digest(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.resolve())
        known = self.entries.get(key)
        if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
            return known["sha256"]
        h = hashlib.sha256()
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        self.entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": h.hexdigest()}
        return h.hexdigest()

    def save(self) -> None:
        if self.path is None:
            return
        from ..io import write_text

        write_text(self.path, json.dumps(self.entries, sort_keys=True))


def subject_sources(dataset: BaseDataset, subjects: list[int], cache: DigestCache) -> dict[int, list[list[str]]]:
    """{subject: [[file name relative to the dataset's files, sha256], ...]}; for generated data,
    the generator's code (``[["generator:synthetic.py", sha256]]``), so a new generator recomputes.

    Names are relative to the folder all the dataset's files share, so moving the whole dataset
    elsewhere changes nothing, while moving a file between sessions does.
    """
    if isinstance(dataset, synthetic._SyntheticBase):
        code = [[f"generator:{GENERATOR_CODE.name}", cache.digest(GENERATOR_CODE)]]
        return {s: code for s in subjects}
    files = {s: source_files(dataset, s) for s in subjects}
    every = [str(p.resolve()) for fs in files.values() for p in fs]
    root = Path(os.path.commonpath(every)) if every else None
    if root is not None and root.is_file():
        root = root.parent
    return {s: [[str(p.resolve().relative_to(root)), cache.digest(p)] for p in fs] for s, fs in files.items()}
