"""Schema checks on the ``data`` and ``split`` outputs, failing with subject, session and reason."""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .arrays import Windows


class DataError(UserError):
    """Input data that cannot feed the study, with where and why."""


def check_windows(w: Windows, source: str = "") -> None:
    """Shapes, dtype, finiteness, label range and per-session content of one set of windows."""
    where = f" ({source})" if source else ""
    if w.X.ndim != 3:
        raise DataError(f"windows{where} must be (n, channels, times), got shape {w.X.shape}")
    if w.X.dtype != np.float32:
        raise DataError(f"windows{where} must be float32, got {w.X.dtype}")
    n = len(w.X)
    if n == 0:
        raise DataError(f"no windows{where}: the recording yielded no events of the requested classes")
    if not (len(w.y) == len(w.meta) == n):
        raise DataError(f"windows{where}: {n} windows but {len(w.y)} labels and {len(w.meta)} metadata rows")
    if len(w.ch_names) != w.X.shape[1]:
        raise DataError(f"windows{where}: {w.X.shape[1]} channels but {len(w.ch_names)} channel names")
    bad_label = (w.y < 0) | (w.y >= len(w.class_names))
    if bad_label.any():
        raise DataError(f"windows{where}: labels {sorted(set(w.y[bad_label].tolist()))} outside 0..{len(w.class_names) - 1}")
    finite = np.isfinite(w.X).all(axis=(1, 2))
    if not finite.all():
        rows = w.meta[~finite]
        first = rows.iloc[0]
        raise DataError(
            f"subject {first['subject']} session {first['session']!r}{where}: {int((~finite).sum())} window(s) "
            f"contain NaN or Inf (e.g. run {first['run']!r}, trial {first['trial']})"
        )
    for (subject, session), idx in w.meta.groupby(["subject", "session"]).groups.items():
        classes = np.unique(w.y[np.asarray(idx)])
        if len(classes) < 2:
            raise DataError(
                f"subject {subject} session {session!r}{where}: only class "
                f"{[w.class_names[c] for c in classes]} present; a session needs at least 2 classes"
            )


def check_folds(folds: list[dict], y: np.ndarray, modality: str = "") -> None:
    """Every pool and every calibration/test split non-empty with at least two classes."""
    tag = f"{modality}: " if modality else ""

    def need(idx: list[int], what: str, subject: int, session: str | None = None) -> None:
        where = f"subject {subject}" + (f" session {session!r}" if session is not None else "")
        if not idx:
            raise DataError(f"{tag}{where}: the {what} split is empty")
        if len(np.unique(y[np.asarray(idx)])) < 2:
            raise DataError(f"{tag}{where}: the {what} split has a single class; it needs at least 2 "
                            f"(more trials per session, or a different split.calib_fraction)")

    for fold in folds:
        need(fold["pretrain"], "pretraining pool", fold["subject"])
        for part in [fold["day1"], *fold["longitudinal"]]:
            need(part["calib"], "calibration", fold["subject"], part["session"])
            need(part["test"], "test", fold["subject"], part["session"])
