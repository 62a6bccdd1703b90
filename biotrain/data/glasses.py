"""Smart-glasses EOG recordings (BRIEF section 4) as a MOABB dataset.

On-disk layout (``path``, or the root of the archive downloaded from ``url``)::

    <root>/
      sub-01/                 one folder per subject: sub-<n>, subject<n>, S<n> or <n>
        ses-01/               one folder per session: ses-<n>, session<n> or <n>
          run1.csv            one or more CSV files = the session's runs, in sorted (natural) order
          run2.csv
        ses-02/
          ...
      sub-02/
        ...

Subject ids are the integers in the subject folder names (``sub-01`` -> 1); session names are the
integers in the session folder names (``ses-01`` -> ``"1"``). Anything else at the root or in a
subject folder (files, hidden folders, ``__MACOSX``) is ignored.

Each CSV file has a header row with at least the columns ``EEG 1``, ``EEG 2``, ``EEG 3``
(electrode potentials in **microvolts**) and ``Trigger`` (an integer task code, 0 between tasks);
other columns (e.g. a time stamp) are ignored. One row per sample at ``sfreq`` (500 Hz).

Triggers 50, 51, 52, 53, 61, 62, 63, 64, 70, 71, 80 are the 11 classes, named ``eye_50`` ...
``eye_80`` exactly as :data:`biotrain.data.signals.EOG_EVENTS`. A trigger *segment* is a run of
consecutive samples with the same non-zero code; each segment yields ``floor(length / window)``
events, one per consecutive, non-overlapping ``window_s`` (2 s) window that lies wholly inside it
(none if the segment is shorter). The dataset's ``interval`` is ``[0, window_s]``, so epochs start
at the event. Other non-zero codes (e.g. start/stop markers) are skipped with a warning, or are an
error with ``unknown_triggers="error"``.

Corrupt input stops with a :class:`GlassesDataError` naming the file, subject or session:
a missing column, a truncated or unparseable row, NaN/Inf values, a non-integer trigger, a session
with fewer than 2 classes, a session folder without CSV files, or no subject folder at all.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from pathlib import Path

import mne
import numpy as np
import pandas as pd
from mne import create_info
from mne.io import RawArray
from moabb.datasets.base import BaseDataset

from ..errors import UserError
from .order import natural_key
from .signals import EOG_EVENTS, GLASSES_CHANNELS

log = logging.getLogger(__name__)

TRIGGER_COLUMN = "Trigger"
CSV_COLUMNS = (*GLASSES_CHANNELS, TRIGGER_COLUMN)
UV = 1e-6  # CSV unit (microvolts) -> volts for MNE
_SUBJECT_RE = re.compile(r"^(?:sub(?:ject)?|s)?[-_]?(\d+)$", re.IGNORECASE)
_SESSION_RE = re.compile(r"^(?:ses(?:sion)?)?[-_]?(\d+)$", re.IGNORECASE)


class GlassesDataError(UserError):
    """A recording or folder that does not follow the documented format."""


def _default_cache_dir() -> Path:
    configured = mne.get_config("MNE_DATASETS_SMARTGLASSESEOG_PATH") or mne.get_config("MNE_DATA")
    return Path(configured or Path.home() / "mne_data").expanduser() / "MNE-smartglasses-eog-data"


def _numbered_dirs(parent: Path, pattern: re.Pattern, what: str) -> dict[int, Path]:
    """Sub-folders of ``parent`` whose names match ``pattern``, by their number."""
    found: dict[int, Path] = {}
    for entry in sorted(parent.iterdir(), key=lambda p: natural_key(p.name, ignore_case=True)):
        if not entry.is_dir() or entry.name.startswith((".", "__")):
            continue
        match = pattern.match(entry.name)
        if not match:
            log.info("ignoring %s: not a %s folder", entry, what)
            continue
        number = int(match.group(1))
        if number in found:
            raise GlassesDataError(f"{what} folders {found[number]} and {entry} both have number {number}")
        found[number] = entry
    return found


def segment_windows(trigger: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Onsets (sample indices) and codes of every ``window``-sample window inside a trigger segment.

    A segment is a maximal run of equal non-zero values; it yields ``len // window`` consecutive,
    non-overlapping windows starting at its first sample.
    """
    trigger = np.asarray(trigger)
    if trigger.size == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    change = np.flatnonzero(np.diff(trigger)) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, trigger.size]
    onsets, codes = [], []
    for start, end in zip(starts, ends):
        code = int(trigger[start])
        if code == 0:
            continue
        n = (end - start) // window
        onsets.extend(start + window * np.arange(n))
        codes.extend([code] * n)
    return np.asarray(onsets, dtype=int), np.asarray(codes, dtype=int)


def read_glasses_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One recording: ``(electrodes in microvolts (3, n) float64, trigger (n,) int64)``.

    Raises :class:`GlassesDataError` naming ``path`` (and the line) on anything malformed.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise GlassesDataError(f"{path}: cannot read the file ({err})") from err
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise GlassesDataError(f"{path}: empty file; expected a header with columns {list(CSV_COLUMNS)}")
    header = [c.strip().strip('"') for c in lines[0].split(",")]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise GlassesDataError(f"{path}: missing column(s) {missing}; found {header}; need {list(CSV_COLUMNS)}")
    n_fields = len(header)
    for number, line in enumerate(lines[1:], start=2):
        if line.count(",") + 1 != n_fields and line.strip():
            last = " (the last line: the file looks truncated)" if number == len(lines) else ""
            raise GlassesDataError(
                f"{path}: line {number} has {line.count(',') + 1} field(s), the header has {n_fields}{last}: "
                f"{line[:80]!r}"
            )
    if len(lines) < 2:
        raise GlassesDataError(f"{path}: no samples after the header")
    frame = pd.read_csv(io.StringIO(text), usecols=list(CSV_COLUMNS), dtype=str, skipinitialspace=True,
                        keep_default_na=False, skip_blank_lines=True)
    values = {}
    for column in CSV_COLUMNS:
        raw = frame[column].str.strip()
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(np.isnan(numbers) & ~raw.str.lower().isin(["nan", "-nan", ""]).to_numpy())
        if bad.size:
            raise GlassesDataError(
                f"{path}: column {column!r} has {bad.size} unparseable value(s), first {raw.iloc[bad[0]]!r} "
                f"on data row {bad[0] + 1}"
            )
        nonfinite = np.flatnonzero(~np.isfinite(numbers))
        if nonfinite.size:
            raise GlassesDataError(
                f"{path}: column {column!r} has {nonfinite.size} NaN/Inf/empty value(s), first on data row "
                f"{nonfinite[0] + 1} (value {raw.iloc[nonfinite[0]]!r})"
            )
        values[column] = numbers
    trigger = values[TRIGGER_COLUMN]
    if not np.array_equal(trigger, np.round(trigger)):
        row = int(np.flatnonzero(trigger != np.round(trigger))[0])
        raise GlassesDataError(f"{path}: column {TRIGGER_COLUMN!r} must hold integer codes; data row {row + 1} "
                               f"has {trigger[row]!r}")
    electrodes = np.vstack([values[c] for c in GLASSES_CHANNELS])
    return electrodes, trigger.astype(np.int64)


class SmartGlassesEOG(BaseDataset):
    """Smart-glasses eye movements: 3 dry electrodes at 500 Hz, 11 trigger-coded classes.

    Parameters
    ----------
    path : str | None
        Local root folder in the layout of this module's docstring.
    url : str | None
        A ``.zip`` or ``.tar.gz``/``.tgz``/``.tar`` archive of that layout (the root may be wrapped
        in one top-level folder). Downloaded once with :func:`pooch.retrieve` into ``cache_dir``
        and extracted next to it. With both ``path`` and ``url``, ``path`` is used when it already
        holds subject folders, otherwise the archive is downloaded.
    known_hash : str | None
        Checksum of the archive for pooch (``"sha256:..."``); None skips the check.
    cache_dir : str | None
        Where to keep the archive; default ``<MNE_DATA or ~/mne_data>/MNE-smartglasses-eog-data``.
    subjects, sessions : list | None
        Restrict to these subject ids / session names (MOABB's selected_subjects/sessions).
    sfreq : float
        Sampling rate of the CSV rows, Hz.
    window_s : float
        Window length: one event per whole window inside a trigger segment; the dataset interval.
    unknown_triggers : "warn" | "error" | "ignore"
        What to do with non-zero trigger codes that are not one of the 11 classes.
    """

    def __init__(
        self,
        path: str | None = None,
        url: str | None = None,
        known_hash: str | None = None,
        cache_dir: str | None = None,
        subjects=None,
        sessions=None,
        sfreq: float = 500.0,
        window_s: float = 2.0,
        unknown_triggers: str = "warn",
    ):
        if path is None and url is None:
            raise GlassesDataError("SmartGlassesEOG needs 'path' (a local folder) or 'url' (an archive to download)")
        if not isinstance(sfreq, (int, float)) or sfreq <= 0:
            raise GlassesDataError(f"sfreq must be a positive number of Hz, got {sfreq!r}")
        if not isinstance(window_s, (int, float)) or window_s <= 0:
            raise GlassesDataError(f"window_s must be a positive number of seconds, got {window_s!r}")
        if unknown_triggers not in ("warn", "error", "ignore"):
            raise GlassesDataError(f"unknown_triggers must be 'warn', 'error' or 'ignore', got {unknown_triggers!r}")
        self.sfreq = float(sfreq)
        self.window_s = float(window_s)
        self.window = int(round(self.window_s * self.sfreq))
        self.unknown_triggers = unknown_triggers
        self.url = url
        self.known_hash = known_hash
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else _default_cache_dir()
        local = Path(path).expanduser() if path is not None else None
        if local is not None and (url is None or (local.is_dir() and self._has_subjects(local))):
            self.root = local
        else:
            self.root = self._download()
        if not self.root.is_dir():
            raise GlassesDataError(f"SmartGlassesEOG path {str(self.root)!r} is not a folder")
        self._files = self._discover(self.root)
        n_sessions = min(len(s) for s in self._files.values())
        super().__init__(
            subjects=sorted(self._files), sessions_per_subject=n_sessions, events=dict(EOG_EVENTS),
            code="SmartGlassesEOG", interval=[0, self.window_s], paradigm="eog",
            selected_subjects=subjects, selected_sessions=sessions,
        )

    # ---- finding the recordings -------------------------------------------------------------

    @staticmethod
    def _has_subjects(folder: Path) -> bool:
        return any(e.is_dir() and _SUBJECT_RE.match(e.name) for e in folder.iterdir())

    def _download(self) -> Path:
        import pooch

        name = self.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1].lower()
        if name.endswith(".zip"):
            processor = pooch.Unzip()
        elif name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
            processor = pooch.Untar()
        else:
            raise GlassesDataError(f"url {self.url!r} must point to a .zip or .tar.gz archive")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            files = pooch.retrieve(self.url, known_hash=self.known_hash, path=self.cache_dir, processor=processor,
                                   progressbar=False)
        except Exception as err:  # network, HTTP status, checksum, corrupt archive
            raise GlassesDataError(f"cannot download or extract {self.url!r} into {self.cache_dir}: {err}") from err
        root = Path(processor.extract_dir)
        if not files:
            raise GlassesDataError(f"archive {self.url!r} is empty")
        # the archive may wrap the layout in one top-level folder (e.g. glasses/sub-01/...)
        while not self._has_subjects(root):
            inner = [e for e in root.iterdir() if e.is_dir() and not e.name.startswith((".", "__"))]
            if len(inner) != 1:
                break
            root = inner[0]
        return root

    def _discover(self, root: Path) -> dict[int, dict[str, list[Path]]]:
        """{subject: {session: [csv files in run order]}}; checks every header up front."""
        subjects = _numbered_dirs(root, _SUBJECT_RE, "subject")
        if not subjects:
            raise GlassesDataError(
                f"no subject folders (sub-01, sub-02, ...) found under {root}; expected "
                f"<root>/sub-XX/ses-YY/*.csv"
            )
        files: dict[int, dict[str, list[Path]]] = {}
        for subject, folder in subjects.items():
            sessions = _numbered_dirs(folder, _SESSION_RE, "session")
            if not sessions:
                raise GlassesDataError(f"subject {subject}: no session folders (ses-01, ...) in {folder}")
            files[subject] = {}
            for number, ses_folder in sessions.items():
                csvs = sorted((p for p in ses_folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"
                               and not p.name.startswith(".")), key=lambda p: natural_key(p.name, ignore_case=True))
                if not csvs:
                    raise GlassesDataError(f"subject {subject} session {number}: no .csv files in {ses_folder}")
                for csv in csvs:
                    with open(csv, errors="replace") as fh:
                        header = [c.strip().strip('"') for c in fh.readline().split(",")]
                    missing = [c for c in CSV_COLUMNS if c not in header]
                    if missing:
                        raise GlassesDataError(
                            f"{csv}: missing column(s) {missing}; found {header}; need {list(CSV_COLUMNS)}")
                files[subject][str(number)] = csvs
        return files

    def recordings(self, subject: int) -> dict[str, list[Path]]:
        """The CSV files of one subject, {session: [runs in order]}."""
        return self._files[int(subject)]

    # ---- MOABB interface ----------------------------------------------------------------------

    def _run_raw(self, csv: Path, subject: int, session: str) -> tuple[RawArray, set[int]]:
        electrodes, trigger = read_glasses_csv(csv)
        codes = set(EOG_EVENTS.values())
        unknown = sorted(set(np.unique(trigger).tolist()) - codes - {0})
        if unknown:
            message = (f"{csv} (subject {subject}, session {session}): trigger code(s) {unknown} are not task "
                       f"triggers {sorted(codes)}; their samples are skipped")
            if self.unknown_triggers == "error":
                raise GlassesDataError(message.replace("; their samples are skipped", ""))
            if self.unknown_triggers == "warn":
                warnings.warn(message, stacklevel=3)
            trigger = np.where(np.isin(trigger, list(codes)), trigger, 0)
        onsets, labels = segment_windows(trigger, self.window)
        stim = np.zeros(trigger.size)
        stim[onsets] = labels
        info = create_info([*GLASSES_CHANNELS, "STI 014"], self.sfreq, ["eeg"] * len(GLASSES_CHANNELS) + ["stim"])
        raw = RawArray(np.vstack([electrodes * UV, stim[None]]), info, verbose=False)
        return raw, set(labels.tolist())

    def _get_single_subject_data(self, subject):
        subject = int(subject)
        data = {}
        selected = None if self._selected_sessions is None else {str(s) for s in self._selected_sessions}
        for session, csvs in self.recordings(subject).items():
            if selected is not None and session not in selected:
                continue
            runs, classes = {}, set()
            for k, csv in enumerate(csvs):
                raw, found = self._run_raw(csv, subject, session)
                runs[str(k)] = raw
                classes |= found
            if len(classes) < 2:
                folder = csvs[0].parent
                raise GlassesDataError(
                    f"subject {subject} session {session} ({folder}): {len(classes)} class(es) "
                    f"{sorted(classes)} with a whole {self.window_s:g} s window; need at least 2 "
                    f"(a trigger segment must last >= {self.window_s:g} s to yield a window)"
                )
            data[session] = runs
        return data

    def data_path(self, subject, path=None, force_update=False, update_path=None, verbose=None):
        """The CSV files of ``subject`` (downloaded at construction when ``url`` is given)."""
        return [str(p) for csvs in self.recordings(subject).values() for p in csvs]


__all__ = ["SmartGlassesEOG", "GlassesDataError", "read_glasses_csv", "segment_windows", "CSV_COLUMNS"]
