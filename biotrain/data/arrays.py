"""Windows as arrays, without MOABB or MNE.

What reads windows back from disk (every pretraining and adaptation worker) needs only this
container: importing it costs numpy and pandas, not the seconds MOABB and MNE take to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import UserError


@dataclass
class Windows:
    """Arrays of one modality: ``X (n, C, T) float32``, ``y (n,) int64`` and metadata."""

    X: np.ndarray
    y: np.ndarray
    meta: pd.DataFrame  # subject, session, run, trial (position in time within the session)
    ch_names: list[str]
    class_names: list[str]
    sfreq: float
    info: dict = field(default_factory=dict)


def concat_windows(parts: list[Windows]) -> Windows:
    """Join per-subject windows (same channels, classes and rate) into one set."""
    if not parts:
        raise UserError("no windows to join: the dataset yielded no subjects")
    first = parts[0]
    for p in parts[1:]:
        if (p.ch_names != first.ch_names or p.class_names != first.class_names or p.sfreq != first.sfreq
                or p.X.shape[1:] != first.X.shape[1:]):
            raise UserError("subjects disagree on channels, classes, rate or window shape; cannot join them")
    return Windows(
        X=np.concatenate([p.X for p in parts]), y=np.concatenate([p.y for p in parts]),
        meta=pd.concat([p.meta for p in parts], ignore_index=True), ch_names=first.ch_names,
        class_names=first.class_names, sfreq=first.sfreq, info=first.info,
    )
