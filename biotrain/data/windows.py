"""Recordings to model-ready windows, through MOABB's paradigms.

``extract_windows`` is the whole ``data`` stage for one modality: pick and order the channels
the model expects, band-pass, resample, cut a window of ``n_times`` samples from each event,
and keep subject / session / run plus the trial's position in time.
"""

from __future__ import annotations


import numpy as np
from moabb.datasets.base import BaseDataset
from moabb.paradigms import MotorImagery

from ..errors import UserError
from .arrays import Windows
from .order import natural_key
from .paradigms import EyeMovement
from .spec import WindowSpec
from .signals import GLASSES_CHANNELS, GLASSES_DERIVED_CHANNELS, derive_glasses_channels


def check_window_fits(dataset: BaseDataset, spec: WindowSpec) -> None:
    """Fail before loading anything when the window cannot lie inside a trial."""
    trial_s = float(dataset.interval[1] - dataset.interval[0])
    if spec.tmin + spec.window_s > trial_s + 1e-9:
        raise UserError(
            f"data.{spec.modality}.n_times={spec.n_times} at data.{spec.modality}.sfreq={spec.sfreq:g} Hz "
            f"from tmin={spec.tmin:g} s is a {spec.tmin + spec.window_s:.3f} s window, longer than the "
            f"{trial_s:g} s trial of {dataset.code}; allowed: n_times <= "
            f"{int((trial_s - spec.tmin) * spec.sfreq)}"
        )
    if spec.fmax >= spec.sfreq / 2:
        raise UserError(
            f"data.{spec.modality}.fmax={spec.fmax:g} must be below Nyquist (sfreq/2 = {spec.sfreq / 2:g} Hz)"
        )


def default_channels(spec: WindowSpec) -> list[str] | None:
    """The channels a modality picks when params name none (EOG: the glasses electrodes)."""
    if spec.channels:
        return list(spec.channels)
    return list(GLASSES_CHANNELS) if spec.modality == "eog" else None


def check_channels(dataset: BaseDataset, spec: WindowSpec, subject: int) -> None:
    """Fail early, naming them, when channels the model needs are not in the recording."""
    wanted = default_channels(spec)
    if not wanted:
        return
    sessions = dataset.get_data([subject])[subject]
    raw = next(iter(next(iter(sessions.values())).values()))
    available = [c for c, kind in zip(raw.ch_names, raw.get_channel_types()) if kind != "stim"]
    missing = [c for c in wanted if c not in available]
    if missing:
        raise UserError(
            f"data.{spec.modality}.channels: {missing} not in {dataset.code} (subject {subject}); "
            f"the recording has {available}"
        )


def _paradigm(dataset: BaseDataset, spec: WindowSpec):
    tmax = spec.tmin + (spec.n_times + 1) / spec.sfreq  # one spare sample, cut below
    if spec.modality == "eeg":
        events = spec.events or list(dataset.event_id)
        return MotorImagery(
            events=events, n_classes=len(events), fmin=spec.fmin, fmax=spec.fmax,
            tmin=spec.tmin, tmax=tmax, channels=spec.channels, resample=spec.sfreq,
        ), events
    channels = default_channels(spec)
    events = spec.events or list(dataset.event_id)
    return EyeMovement(
        fmin=spec.fmin, fmax=spec.fmax, events=events, tmin=spec.tmin, tmax=tmax,
        channels=channels, resample=spec.sfreq,
    ), events


def extract_windows(dataset: BaseDataset, spec: WindowSpec, subjects: list[int] | None = None) -> Windows:
    """Run MOABB's paradigm on ``dataset`` and return time-ordered windows of ``spec.n_times``."""
    check_window_fits(dataset, spec)
    paradigm, events = _paradigm(dataset, spec)
    if not paradigm.is_valid(dataset):
        raise UserError(
            f"dataset {dataset.code} (paradigm {dataset.paradigm!r}, events {list(dataset.event_id)}) "
            f"cannot feed the {spec.modality} task with events {events}"
        )
    subjects = list(subjects) if subjects is not None else list(dataset.subject_list)
    try:
        epochs, labels, meta = paradigm.get_data(dataset, subjects=subjects, return_epochs=True)
    except ValueError as err:
        if "Missing channels" in str(err):
            check_channels(dataset, spec, subjects[0])  # raises the same fact with the params key
        raise
    # same scaling MOABB applies to arrays (volts -> the dataset's unit, e.g. microvolts)
    X = epochs.get_data(copy=False) * dataset.unit_factor
    if X.shape[-1] < spec.n_times:
        raise UserError(
            f"data.{spec.modality}.n_times={spec.n_times} but {dataset.code} only yields "
            f"{X.shape[-1]} samples per window"
        )
    X = np.ascontiguousarray(X[..., : spec.n_times], dtype=np.float32)
    ch_names = list(epochs.ch_names)
    if spec.modality == "eog":
        X = derive_glasses_channels(X).astype(np.float32)
        ch_names = list(GLASSES_DERIVED_CHANNELS)

    meta = meta[["subject", "session", "run"]].reset_index(drop=True).copy()
    meta["subject"] = meta["subject"].astype(int)
    meta["session"] = meta["session"].astype(str)
    meta["run"] = meta["run"].astype(str)
    # MOABB returns each run's epochs in time order; number them within each session
    meta["trial"] = meta.groupby(["subject", "session"], sort=False).cumcount()
    order = sorted(range(len(meta)), key=lambda i: (
        meta.at[i, "subject"], natural_key(meta.at[i, "session"]), meta.at[i, "trial"]))
    meta = meta.iloc[order].reset_index(drop=True)
    class_index = {name: k for k, name in enumerate(events)}
    y = np.array([class_index[label] for label in np.asarray(labels)[order]], dtype=np.int64)
    return Windows(
        X=X[order], y=y, meta=meta, ch_names=ch_names, class_names=list(events),
        sfreq=float(spec.sfreq), info={"dataset": dataset.code},
    )
