"""Small BNCI2014_001 (BCI Competition IV 2a) files with the real on-disk structure.

What MOABB 1.7 reads (``moabb/datasets/bnci/bnci_2014.py::_load_data_001_2014`` and
``bnci/base.py::_convert_mi`` / ``_convert_run`` / ``_enrich_run_with_metadata``):

* one MATLAB v5 file per subject and session, ``A<ss>T.mat`` (session ``0train``) and
  ``A<ss>E.mat`` (session ``1test``), downloaded from
  ``https://lampx.tugraz.at/~bci/database/001-2014/A01T.mat``;
* ``moabb.datasets.download.data_dl(url, "BNCI")`` stores it at
  ``<MNE_DATASETS_BNCI_PATH or MNE_DATA>/MNE-bnci-data/~bci/database/001-2014/A01T.mat``
  (``mne.utils._url_to_local_path``: the URL path below the host). When that file exists,
  ``data_dl`` passes its own SHA256 to ``pooch.retrieve`` as ``known_hash``, so pooch finds the
  hash matching and does not download: a file placed there is used as is;
* the file holds one variable ``data``: a 1 x n cell of run structs read with
  ``loadmat(struct_as_record=False, squeeze_me=True)``. Each run has ``X`` (samples x 25:
  22 EEG + EOG1..3, microvolts), ``trial`` (1-based onset sample of each trial, i.e. of the
  fixation cross; the cue follows 2 s later and MOABB's interval is [2, 6] s), ``y`` (class
  1..4), ``fs`` (250), ``classes`` (``'left hand', 'right hand', 'feet', 'tongue'``),
  ``artifacts`` (one 0/1 flag per trial), ``gender`` and ``age``.
* The real files start every session with three EOG calibration runs (eyes open, eyes closed,
  eye movements) that carry no trials: ``trial``, ``y`` and ``artifacts`` are empty, and
  MOABB's ``_convert_run`` skips them (``return None, None``), so MOABB numbers the six motor
  imagery runs ``'0'..'5'``. The writer reproduces those empty runs too.

The content is synthetic: pink background activity plus a 10-12 Hz mu rhythm over the
sensorimotor cortex that desynchronises (ERD) over the hemisphere contralateral to the
imagined hand (and at Cz for the feet), from the cue to the end of imagery, so a model can learn.
EOG runs carry blinks / saccades on EOG1..3 for the calibration blocks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import savemat

BNCI_URL = "https://lampx.tugraz.at/~bci/database/"
SFREQ = 250
EEG_CHANNELS = (
    "Fz", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2",
    "C4", "C6", "CP3", "CP1", "CPz", "CP2", "CP4", "P1", "Pz", "P2", "POz",
)
EOG_CHANNELS = ("EOG1", "EOG2", "EOG3")
CLASSES = ("left hand", "right hand", "feet", "tongue")
SESSIONS = {"T": "0train", "E": "1test"}
# seconds of each trial: fixation at 0, cue at 2, imagery until 6, then a pause
TRIAL_S = 8.0
CUE_S, END_S = 2.0, 6.0
# the three calibration blocks at the start of each session (BCI IV 2a description)
EOG_BLOCKS = ("eyes_open", "eyes_closed", "eye_movements")

# which channels lose mu power (ERD) for each class (1-based class code)
_LEFT = ("FC2", "FC4", "C2", "C4", "C6", "CP2", "CP4")
_RIGHT = ("FC3", "FC1", "C5", "C3", "C1", "CP3", "CP1")
_ERD = {1: _LEFT, 2: _RIGHT, 3: ("FCz", "Cz", "CPz"), 4: ()}


def bnci_url(subject: int, session: str) -> str:
    return f"{BNCI_URL}001-2014/A{subject:02d}{session}.mat"


def bnci_path(root: Path, subject: int, session: str) -> Path:
    """Where MOABB looks for a file, given ``root`` = MNE_DATA (or MNE_DATASETS_BNCI_PATH)."""
    return Path(root) / "MNE-bnci-data" / "~bci" / "database" / "001-2014" / f"A{subject:02d}{session}.mat"


def _pink(rng: np.random.Generator, n: int, n_ch: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal((n_ch, n)), axis=1)
    freqs = np.fft.rfftfreq(n, 1.0 / SFREQ)
    spec *= 1.0 / np.sqrt(np.maximum(freqs, 1.0))
    x = np.fft.irfft(spec, n, axis=1)
    return x / (x.std(axis=1, keepdims=True) + 1e-12)


def _mi_run(rng: np.random.Generator, labels: np.ndarray, mu_hz: float, erd: float, lead_s: float = 2.0):
    """One motor-imagery run: (X samples x 25 in uV, 1-based trial onsets)."""
    n_trials = len(labels)
    n = int((lead_s + n_trials * TRIAL_S + 2.0) * SFREQ)
    t = np.arange(n) / SFREQ
    eeg = 5.0 * _pink(rng, n, len(EEG_CHANNELS))
    onsets = (np.round((lead_s + np.arange(n_trials) * TRIAL_S + rng.uniform(0, 0.5, n_trials)) * SFREQ)
              ).astype(int)
    # mu rhythm: amplitude per channel, weaker away from the sensorimotor strip
    weight = np.array([1.0 if ch[0] == "C" or ch.startswith("FC") else 0.3 for ch in EEG_CHANNELS])
    gain = np.ones((len(EEG_CHANNELS), n))
    for onset, label in zip(onsets, labels):
        a, b = onset + int(CUE_S * SFREQ), onset + int(END_S * SFREQ)
        for ch in _ERD[int(label)]:
            gain[EEG_CHANNELS.index(ch), a:b] = 1.0 - erd
    phase = rng.uniform(0, 2 * np.pi)
    mu = np.sin(2 * np.pi * mu_hz * t + phase + 0.3 * np.cumsum(rng.standard_normal(n)) / np.sqrt(SFREQ))
    eeg += 8.0 * weight[:, None] * gain * mu[None, :]
    eog = 20.0 * _pink(rng, n, len(EOG_CHANNELS))
    return np.concatenate([eeg, eog], axis=0).T, onsets + 1  # MATLAB: 1-based samples


def _eog_run(rng: np.random.Generator, block: str, seconds: float):
    """One EOG calibration run (no trials), as at the start of every real session."""
    n = int(seconds * SFREQ)
    eeg = 5.0 * _pink(rng, n, len(EEG_CHANNELS))
    eog = 20.0 * _pink(rng, n, len(EOG_CHANNELS))
    if block != "eyes_closed":
        for k in range(int(seconds // 2)):  # a blink or a saccade every 2 s
            s = int((k * 2 + 1) * SFREQ)
            w = np.hanning(int(0.3 * SFREQ)) * (150.0 if block == "eyes_open" else 80.0)
            eog[:, s: s + len(w)] += w[None, :] * np.array([1.0, 0.5, -0.5])[:, None]
    return np.concatenate([eeg, eog], axis=0).T


def _run_struct(X: np.ndarray, trial, y, artifacts, gender: str, age: int) -> dict:
    return {
        "X": np.asarray(X, dtype=np.float64),
        "trial": np.asarray(trial, dtype=np.int32).reshape(-1, 1),  # integers: MOABB indexes with them
        "y": np.asarray(y, dtype=np.uint8).reshape(-1, 1),
        "fs": np.int32(SFREQ),
        "classes": np.array(CLASSES, dtype=object).reshape(1, -1),
        "artifacts": np.asarray(artifacts, dtype=np.uint8).reshape(-1, 1),
        "gender": gender,
        "age": np.int32(age),
    }


def write_bnci2014_001(root: Path, subjects=(1, 2), sessions=("T", "E"), runs: int = 2,
                       trials_per_class: int = 3, eog_run_s: float = 8.0, erd: float = 0.6,
                       seed: int = 0) -> list[Path]:
    """Write ``A<ss>T.mat`` / ``A<ss>E.mat`` under ``root`` (the MNE data path) where MOABB looks.

    Each session: three trial-less EOG calibration runs, then ``runs`` motor imagery runs of
    ``4 * trials_per_class`` trials in shuffled order. Returns the written paths.
    """
    written = []
    for subject in subjects:
        subj_rng = np.random.default_rng([seed, subject])
        mu_hz = float(subj_rng.uniform(9.5, 12.5))
        gender, age = ("F" if subject % 2 else "M"), int(20 + subject)
        for session in sessions:
            rng = np.random.default_rng([seed, subject, ord(session)])
            cells = []
            for block in EOG_BLOCKS:
                cells.append(_run_struct(_eog_run(rng, block, eog_run_s), [], [], [], gender, age))
            for _ in range(runs):
                labels = rng.permutation(np.repeat(np.arange(1, 5), trials_per_class))
                X, trial = _mi_run(rng, labels, mu_hz, erd)
                artifacts = np.zeros(len(labels))
                artifacts[0] = 1  # real files flag a few trials; MOABB's default ignores them
                cells.append(_run_struct(X, trial, labels, artifacts, gender, age))
            data = np.empty((1, len(cells)), dtype=object)
            for i, cell in enumerate(cells):
                data[0, i] = cell
            path = bnci_path(root, subject, session)
            path.parent.mkdir(parents=True, exist_ok=True)
            savemat(path, {"data": data}, do_compression=True)
            written.append(path)
    return written


def mne_env(root: Path) -> dict[str, str]:
    """Environment that makes MOABB read (and never download) from ``root``.

    ``MNE_DATA`` is where ``get_dataset_path`` resolves every dataset (no per-dataset
    ``MNE_DATASETS_<SIGN>_PATH`` is set, and MNE's ``get_config`` reads the environment before
    its config file). ``MOABB_DOWNLOAD_PROVIDER=upstream`` tells MOABB to fetch from the
    dataset's own host rather than first trying the NEMAR mirror; with the file already in
    place, the upstream path needs no network at all.
    """
    return {"MNE_DATA": str(root), "MNE_DATASETS_BNCI_PATH": str(root),
            "MOABB_DOWNLOAD_PROVIDER": "upstream"}
