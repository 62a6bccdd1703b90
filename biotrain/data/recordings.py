"""A recording the reader cannot read, named: which subject, which file, and what to do.

MOABB's readers fail deep inside scipy or MNE (``OSError: could not read bytes``,
``IndexError``) without the file's name; this turns such a failure into a message about the
recording, not about the parameters.
"""

from __future__ import annotations

from pathlib import Path

from moabb.datasets.base import BaseDataset

from .sources import source_files
from .validate import DataError


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read on its own, or None if it looks fine (or cannot be tried)."""
    try:
        if path.stat().st_size == 0:
            return "it is empty"
        head = path.read_bytes()[:512].lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            return "it is an HTML page, not a recording (a failed download?)"
        if path.suffix.lower() == ".mat":
            from scipy.io import loadmat

            loadmat(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is the answer
        return f"{type(err).__name__}: {err}"
    return None


def read_error(dataset: BaseDataset, subject: int, err: BaseException) -> DataError:
    """A :class:`DataError` naming the subject's bad recording file (or all its files)."""
    try:
        files = source_files(dataset, subject)
    except Exception:  # noqa: BLE001 - the original failure matters more
        files = []
    cause = f"{type(err).__name__}: {err}"
    for path in files:
        why = _unreadable(path)
        if why:
            return DataError(f"{dataset.code} subject {subject}: recording {path} cannot be read ({why}); it is "
                             f"damaged or truncated: replace it (for a MOABB download, delete it to fetch it "
                             f"again)")
    listed = ", ".join(str(p) for p in files) or "(generated, no files)"
    return DataError(f"{dataset.code} subject {subject}: its recordings could not be read ({cause}); files: {listed}")
