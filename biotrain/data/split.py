"""The two scenarios of the protocol (BRIEF section 2), as index lists into the windows.

* ``day1``: pretrain on every other subject (leave-one-subject-out); adapt on the first
  ``calib_fraction`` (in time order) of the held-out subject's first session, test on the rest.
* ``longitudinal``: each later session of that subject, split the same way; adaptation chains
  from the previous session's adapted model.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from .order import natural_key


def _calib_test(idx: np.ndarray, calib_fraction: float) -> dict:
    n_calib = int(round(len(idx) * calib_fraction))
    n_calib = min(max(n_calib, 1), len(idx) - 1)
    return {"calib": idx[:n_calib].tolist(), "test": idx[n_calib:].tolist()}


def make_splits(meta: pd.DataFrame, calib_fraction: float = 0.8) -> list[dict]:
    """One entry per held-out subject: its pretraining pool, day-1 and longitudinal splits.

    ``meta`` needs columns subject, session, trial (position in time within the session).
    """
    if not 0 < calib_fraction < 1:
        raise ValueError(f"split.calib_fraction must be in (0, 1), got {calib_fraction!r}")
    subjects = sorted(meta["subject"].unique().tolist())
    if len(subjects) < 2:
        raise ValueError(f"leave-one-subject-out needs at least 2 subjects, got {subjects}")
    folds = []
    for subject in subjects:
        own = meta[meta["subject"] == subject]
        sessions = sorted(own["session"].unique().tolist(), key=natural_key)
        per_session = []
        for session in sessions:
            rows = own[own["session"] == session].sort_values("trial", kind="stable")
            idx = rows.index.to_numpy()
            if len(idx) < 2:
                raise ValueError(f"subject {subject} session {session!r} has {len(idx)} window(s); need >= 2")
            per_session.append({"session": session, **_calib_test(idx, calib_fraction)})
        folds.append({
            "subject": int(subject),
            "pretrain": meta.index[meta["subject"] != subject].tolist(),
            "day1": per_session[0],
            "longitudinal": per_session[1:],
        })
    return folds
