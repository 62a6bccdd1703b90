"""EOG channels and eye-movement calibration runs of MOABB datasets.

What MOABB 1.7.2 really exposes (evidence in ``docs/data.md``, section "EOG channels in MOABB
datasets"):

* **EOG channels** are typed ``eog`` by the loaders of BNCI2014_001 (EOG1..3), BNCI2014_004
  (EOG1..3) and Kumar2024 (sens1..3 -> eog); Lee2019_MI has EMG but no EOG, Stieger2021 has
  62 EEG channels only. MOABB drops non-EEG channels when the paradigm picks channels by type
  (``RawToEpochs`` with ``channels=None``); ``BaseDataset(return_all_modalities=...)`` keeps
  them (``True``: everything but stim; a dict: :func:`mne.pick_types` arguments, so
  ``{"eeg": True, "eog": True}`` keeps EEG + EOG). Every constructor of the five study
  datasets except Stieger2021 accepts the keyword; the attribute can be set on any dataset.
  Caveat: MOABB's band-pass runs with ``picks="data"``, which in MNE excludes ``eog``
  channels: kept EOG channels come out resampled but **not band-passed**.
* **Labelled eye-movement runs**: none of them reaches MOABB's events. BNCI2014_001 files
  start each session with three trial-less EOG calibration runs (eyes open, eyes closed, eye
  movements, per the BCI Competition IV 2a description); MOABB's ``_convert_run`` returns
  ``None`` for runs without trials, so ``get_data`` never yields them. This module reads them
  back from the very files MOABB downloaded (``dataset.data_path``), labelled by block, not by
  movement: :func:`bnci2014_001_eog_calibration` and :func:`calibration_windows`.
"""

from __future__ import annotations

import inspect

import mne
import numpy as np
import pandas as pd
from moabb.datasets.base import BaseDataset
from scipy.io import loadmat

from .arrays import Windows

KEEP_EEG_AND_EOG = {"eeg": True, "eog": True}
# BCI Competition IV 2a: "at the beginning of each session, a recording of approximately
# 5 minutes was performed to estimate the EOG influence ... (1) two minutes with eyes open,
# (2) one minute with eyes closed, and (3) one minute with eye movements". In the .mat files
# they are the runs without trials, in this order.
BNCI2014_001_EOG_BLOCKS = ("eyes_open", "eyes_closed", "eye_movements")
BNCI2014_001_CHANNELS = (
    "Fz", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2",
    "C4", "C6", "CP3", "CP1", "CPz", "CP2", "CP4", "P1", "Pz", "P2", "POz",
    "EOG1", "EOG2", "EOG3",
)


def accepts_return_all_modalities(cls: type[BaseDataset]) -> bool:
    """Whether the dataset's constructor takes ``return_all_modalities`` (Stieger2021 does not)."""
    return "return_all_modalities" in inspect.signature(cls.__init__).parameters


def keep_eog(dataset: BaseDataset, keep=KEEP_EEG_AND_EOG) -> BaseDataset:
    """Make ``dataset`` keep its EOG channels (MOABB drops them by default); returns it.

    Sets the same attribute the constructor keyword sets (``BaseDataset.__init__`` stores
    ``self.return_all_modalities``; the paradigm's ``RawToEpochs`` reads it), so it also works
    for datasets whose constructor does not forward the keyword.
    """
    dataset.return_all_modalities = dict(keep) if isinstance(keep, dict) else bool(keep)
    return dataset


def eog_channels(dataset: BaseDataset, subject: int) -> list[str]:
    """Names of the channels typed ``eog`` in the first run of ``subject`` (loads that subject)."""
    sessions = dataset.get_data([subject])[subject]
    raw = next(iter(next(iter(sessions.values())).values()))
    return [ch for ch, kind in zip(raw.ch_names, raw.get_channel_types()) if kind == "eog"]


def bnci2014_001_eog_calibration(dataset: BaseDataset, subject: int) -> dict[str, dict[str, mne.io.RawArray]]:
    """The EOG calibration runs MOABB skips, read from the files MOABB itself located.

    Returns ``{session: {block: Raw}}`` with sessions named as MOABB names them
    (``0train``, ``1test``) and blocks ``eyes_open``, ``eyes_closed``, ``eye_movements``
    (22 EEG + 3 EOG channels, volts). Sessions whose file has no trial-less run yield ``{}``.
    The blocks are labelled as a whole: the files carry no per-movement events.
    """
    if dataset.code != "BNCI2014-001":
        raise ValueError(f"EOG calibration runs are only implemented for BNCI2014-001, not {dataset.code}")
    files = dataset.data_path(subject)  # downloads if absent, exactly as get_data would
    out: dict[str, dict[str, mne.io.RawArray]] = {}
    session_names = ("0train", "1test")
    for session, filename in zip(session_names, files):
        mat = loadmat(filename, struct_as_record=False, squeeze_me=True)
        runs = mat["data"] if isinstance(mat["data"], np.ndarray) else [mat["data"]]
        calib = [run for run in runs if np.size(run.trial) == 0]
        blocks: dict[str, mne.io.RawArray] = {}
        for name, run in zip(BNCI2014_001_EOG_BLOCKS, calib):
            X = np.asarray(run.X, dtype=np.float64)
            if X.shape[1] != len(BNCI2014_001_CHANNELS):
                X = X.T
            info = mne.create_info(list(BNCI2014_001_CHANNELS), float(run.fs), ["eeg"] * 22 + ["eog"] * 3)
            blocks[name] = mne.io.RawArray(X.T * 1e-6, info, verbose=False)  # uV -> V, as MOABB does
        out[session] = blocks
    return out


def calibration_windows(runs: dict[str, dict[str, mne.io.RawArray]], subject: int, *, sfreq: float,
                        n_times: int, fmin: float = 0.5, fmax: float = 40.0,
                        channels=("EOG1", "EOG2", "EOG3"), unit_factor: float = 1e6) -> Windows:
    """Non-overlapping windows of ``n_times`` samples from each calibration block.

    Classes are the blocks (``eyes_open``, ``eyes_closed``, ``eye_movements``), in that order.
    The EOG channels are band-passed here explicitly (MOABB's filter skips ``eog`` channels).
    ``trial`` numbers windows in time order within a session (blocks in recording order).
    """
    class_names = list(BNCI2014_001_EOG_BLOCKS)
    Xs, ys, rows = [], [], []
    for session, blocks in runs.items():
        trial = 0
        for block, raw in blocks.items():
            raw = raw.copy().pick(list(channels))
            raw.filter(fmin, fmax, picks="all", method="iir", verbose=False)
            if raw.info["sfreq"] != sfreq:
                raw.resample(sfreq, verbose=False)
            data = raw.get_data() * unit_factor
            for k in range(data.shape[1] // n_times):
                Xs.append(data[:, k * n_times: (k + 1) * n_times])
                ys.append(class_names.index(block))
                rows.append({"subject": int(subject), "session": str(session), "run": block, "trial": trial})
                trial += 1
    if not Xs:
        raise ValueError(f"no calibration window of {n_times} samples at {sfreq:g} Hz for subject {subject}")
    return Windows(
        X=np.stack(Xs).astype(np.float32), y=np.array(ys, dtype=np.int64), meta=pd.DataFrame(rows),
        ch_names=list(channels), class_names=class_names, sfreq=float(sfreq),
        info={"dataset": "BNCI2014-001", "task": "eog_calibration_blocks"},
    )
