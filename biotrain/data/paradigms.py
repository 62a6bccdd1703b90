"""An eye-movement paradigm for MOABB, which ships none.

It reuses MOABB's own processing chain (band-pass, epoching, resampling, unit scaling) by
subclassing :class:`moabb.paradigms.base.BaseParadigm`; only the dataset check and the event
selection are specific to EOG.
"""

from __future__ import annotations

from moabb.paradigms.base import BaseParadigm


class EyeMovement(BaseParadigm):
    """N-class eye-movement paradigm for datasets whose ``paradigm`` is ``"eog"``."""

    def __init__(self, fmin=0.5, fmax=40.0, events=None, tmin=0.0, tmax=None, channels=None, resample=None):
        super().__init__(
            filters=[[fmin, fmax]], events=events, tmin=tmin, tmax=tmax,
            channels=channels, resample=resample,
        )

    def is_valid(self, dataset):
        if dataset.paradigm != "eog":
            return False
        return self.events is None or set(self.events) <= set(dataset.event_id)

    def used_events(self, dataset):
        names = self.events if self.events is not None else list(dataset.event_id)
        missing = [e for e in names if e not in dataset.event_id]
        if missing:
            raise ValueError(
                f"events {missing} are not in dataset {dataset.code}; it has {list(dataset.event_id)}"
            )
        return {e: dataset.event_id[e] for e in names}

    @property
    def datasets(self):
        return []  # no eye-movement dataset is registered in MOABB itself

    @property
    def scoring(self):
        return "accuracy"
