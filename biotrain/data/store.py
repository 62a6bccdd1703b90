"""Windows on disk: one ``.npz`` of arrays plus the metadata columns, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path
from .windows import Windows


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
