"""How windows are cut for one modality: a plain description, free of MOABB, so the typed
study settings can hold it without importing the readers."""

from __future__ import annotations

from dataclasses import dataclass

MODALITIES = ("eeg", "eog")
# the dataset names that can feed the EOG (eye-movement) task
EOG_DATASETS = {"synthetic", "SyntheticEOG", "SmartGlassesEOG"}


@dataclass(frozen=True)
class WindowSpec:
    """How to cut windows for one modality (the ``data.<modality>`` block of params)."""

    modality: str
    sfreq: float
    n_times: int
    fmin: float
    fmax: float
    tmin: float = 0.0
    channels: list[str] | None = None
    events: list[str] | None = None

    @property
    def window_s(self) -> float:
        return self.n_times / self.sfreq
