"""Where the MLflow store is, and is it there? Asked once, in seconds, before any work.

Without this, a wrong ``tracking.uri`` is found only when the adapt stage first logs, after
MLflow's own retries (minutes) and after DVC removed the previous outputs.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import TrackingError

TIMEOUT_S = 5.0


def check_tracking(uri: str, timeout: float = TIMEOUT_S) -> None:
    """Raise :class:`TrackingError` unless ``uri`` answers (a server) or can be written (a file store)."""
    if uri.startswith(("http://", "https://")):
        _check_server(uri, timeout)
    elif uri.startswith("sqlite:///"):
        _check_folder(Path(uri[len("sqlite:///"):]).parent, uri)
    elif uri.startswith("file://") or "://" not in uri:
        _check_folder(Path(uri[len("file://"):] if uri.startswith("file://") else uri).parent, uri)


def _check_server(uri: str, timeout: float) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # something answers; MLflow itself reports what it thinks of the requests
    except (urllib.error.URLError, socket.timeout, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(
            f"tracking.uri={uri!r}: no MLflow server answered within {timeout:g} s ({reason}); start it "
            f"(mlflow server --host ... --port ...) or set tracking.uri: null for the project's own "
            f"sqlite store") from None


def _check_folder(folder: Path, uri: str) -> None:
    if not folder.is_dir():
        raise TrackingError(f"tracking.uri={uri!r}: folder {folder} does not exist; create it or set "
                            f"tracking.uri: null for the project's own sqlite store")
    if not os.access(folder, os.W_OK):
        raise TrackingError(f"tracking.uri={uri!r}: folder {folder} is not writable")


def default_tracking_uri(project_root: str | Path) -> str:
    """An absolute-path SQLite store in the project root.

    DVC runs queued experiments in copies under ``<project>/.dvc/tmp/exps/``; the store is
    placed in the real project root so runs from those copies are not scattered.
    """
    root = Path(project_root).resolve()
    parts = root.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            root = Path(*parts[:i])
            break
    return f"sqlite:///{root / 'mlflow.db'}"
