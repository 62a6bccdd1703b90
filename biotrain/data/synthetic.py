"""The embedded default cohort: synthetic recordings with real class structure.

Two MOABB datasets (subclasses of :class:`moabb.datasets.base.BaseDataset`, so they go
through ``paradigm.get_data`` exactly as a downloaded dataset does):

* :class:`SyntheticMI`, EEG motor imagery for MI-BMINet. Each subject has its own sensorimotor
  rhythm (frequency anywhere in the mu/beta range) and its own spatial patterns; imagining the
  left or right hand desynchronises (ERD) the contralateral rhythm, by a depth that differs between
  subjects and from trial to trial, deepest 0.5-2.5 s after the cue. A model pooled over other
  subjects therefore transfers poorly. Task-unrelated rhythms near the same frequency, with
  subject-specific spatial patterns and wandering amplitude, can only be nulled by spatial filters
  fitted to the subject: the classifier alone on frozen features cannot remove them.
* :class:`SyntheticEOG`, smart-glasses eye movements for EpiDeNet: three dry electrodes
  (``EEG 1..3``, 500 Hz) and 11 trigger-coded movements (eight saccade directions, blink,
  double blink, fixation). Subjects differ in electrode placement (the projection of the eye's
  vertical/horizontal dipole on each electrode), contact gain, saccade amplitude and speed, and
  reaction time to the cue.

Each session the cap or glasses sit a little differently: patterns, gains (and for EEG the
rhythm and the depth of desynchronisation) take a fresh random step from the subject's own, so a
model adapted on day 1 loses accuracy on later days and a decoder trained on other sessions does
worse than one trained in the session. The defaults are set so that MOABB's standard decoders score
the cohort like real recordings (``docs/synthetic.md``, "How hard the embedded cohort is";
``benchmarks/cohort_difficulty.py``). Everything is drawn
from ``numpy.random.default_rng`` seeded by (seed, subject, session): the cohort is
identical on every machine.
"""

from __future__ import annotations

import numpy as np
from mne import create_info
from mne.channels import make_standard_montage
from mne.io import RawArray
from moabb.datasets.base import BaseDataset

from .signals import EOG_EVENTS, GLASSES_CHANNELS

MI_CHANNELS = ("FC3", "FCz", "FC4", "C3", "Cz", "C4", "CP3", "CP4")
MI_EVENTS = {"left_hand": 1, "right_hand": 2}


def _check_positive(name: str, value, minimum=1):
    if not isinstance(value, (int, float, np.integer, np.floating)) or not value >= minimum:  # NaN fails too
        raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}")


def _band_noise(rng: np.random.Generator, n: int, sfreq: float, f_lo: float, f_hi: float) -> np.ndarray:
    """Unit-variance noise limited to [f_lo, f_hi] Hz (an oscillation with random phase)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    spec[(freqs < f_lo) | (freqs > f_hi)] = 0
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


def _pink_noise(rng: np.random.Generator, shape: tuple[int, int], sfreq: float) -> np.ndarray:
    """1/f background activity, one independent series per row, unit variance."""
    n = shape[1]
    spec = np.fft.rfft(rng.standard_normal(shape), axis=1)
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    spec *= 1.0 / np.sqrt(np.maximum(freqs, 1.0))
    x = np.fft.irfft(spec, n, axis=1)
    return x / (x.std(axis=1, keepdims=True) + 1e-12)


def _montage():
    """Standard 10-05 positions (renamed 'colin27_1005' in MNE 1.13)."""
    try:
        return make_standard_montage("colin27_1005")
    except ValueError:
        return make_standard_montage("standard_1005")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-12)


class _SyntheticBase(BaseDataset):
    """Shared bookkeeping: sizes, seeds, trial schedule and the MNE Raw wrapper."""

    def __init__(
        self,
        *,
        n_subjects: int,
        n_sessions: int,
        trials_per_class: int,
        seed: int,
        subject_shift: float,
        session_drift: float,
        noise: float,
        events: dict,
        code: str,
        interval: list,
        paradigm: str,
        subjects=None,
        sessions=None,
    ):
        _check_positive("n_subjects", n_subjects, 2)
        _check_positive("n_sessions", n_sessions, 1)
        _check_positive("trials_per_class", trials_per_class, 2)
        for name, value in (("subject_shift", subject_shift), ("session_drift", session_drift), ("noise", noise)):
            _check_positive(name, value, 0)
        self.n_subjects_total = int(n_subjects)
        self.trials_per_class = int(trials_per_class)
        self.seed = int(seed)
        self.subject_shift = float(subject_shift)
        self.session_drift = float(session_drift)
        self.noise = float(noise)
        super().__init__(
            subjects=list(range(1, int(n_subjects) + 1)),
            sessions_per_subject=int(n_sessions),
            events=events,
            code=code,
            interval=interval,
            paradigm=paradigm,
            selected_subjects=subjects,
            selected_sessions=sessions,
        )

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *[int(k) for k in keys]])

    def _schedule(self, rng, trial_s: float, rest_s: tuple[float, float]):
        """Balanced, shuffled class order and onsets (in seconds) of one run."""
        n_classes = len(self.event_id)
        labels = np.repeat(np.arange(n_classes), self.trials_per_class)
        rng.shuffle(labels)
        gaps = rng.uniform(*rest_s, size=labels.size)
        onsets = 2.0 + np.cumsum(np.r_[0.0, (trial_s + gaps)[:-1]])
        duration = onsets[-1] + trial_s + rest_s[1] + 2.0
        return labels, onsets, duration

    def _raw(self, data_volts: np.ndarray, ch_names, sfreq, onsets, labels, montage: bool) -> RawArray:
        codes = list(self.event_id.values())
        stim = np.zeros(data_volts.shape[1])
        stim[np.round(onsets * sfreq).astype(int)] = [codes[k] for k in labels]
        info = create_info(list(ch_names) + ["stim"], sfreq, ["eeg"] * len(ch_names) + ["stim"])
        raw = RawArray(np.vstack([data_volts, stim[None]]), info, verbose=False)
        if montage:
            raw.set_montage(_montage())
        return raw

    def _get_single_subject_data(self, subject):
        return {
            str(session): {"0": self._session_raw(int(subject), session)}
            for session in range(self.n_sessions)
        }

    def data_path(self, subject, path=None, force_update=False, update_path=None, verbose=None):
        """Nothing to download: recordings are generated from the seed on demand."""
        return []


class SyntheticMI(_SyntheticBase):
    """Left/right-hand motor imagery, 8 sensorimotor EEG channels at 500 Hz, 4 s trials."""

    sfreq = 500.0
    trial_s = 4.0

    def __init__(
        self,
        n_subjects: int = 8,
        n_sessions: int = 3,
        trials_per_class: int = 83,
        seed: int = 0,
        subject_shift: float = 1.0,
        session_drift: float = 0.6,
        erd: float = 0.42,
        noise: float = 1.0,
        distractor: float = 1.0,
        erd_jitter: float = 0.35,
        erd_tail: float = 0.3,
        subjects=None,
        sessions=None,
    ):
        _check_positive("erd", erd, 0)
        _check_positive("distractor", distractor, 0)
        _check_positive("erd_jitter", erd_jitter, 0)
        _check_positive("erd_tail", erd_tail, 0)
        self.distractor = float(distractor)
        self.erd_jitter = float(erd_jitter)
        if erd_tail > 1:
            raise ValueError(f"erd_tail is the fraction of ERD depth left at the trial's end and must be in [0, 1], got {erd_tail!r}")
        self.erd_tail = float(erd_tail)
        if erd >= 1:
            raise ValueError(f"erd is a fraction of rhythm amplitude and must be < 1, got {erd!r}")
        self.erd = float(erd)
        super().__init__(
            n_subjects=n_subjects, n_sessions=n_sessions, trials_per_class=trials_per_class,
            seed=seed, subject_shift=subject_shift, session_drift=session_drift, noise=noise,
            events=dict(MI_EVENTS), code="SyntheticMI", interval=[0, self.trial_s],
            paradigm="imagery", subjects=subjects, sessions=sessions,
        )

    def subject_traits(self, subject: int) -> dict:
        """What makes one subject unlike the others (drawn once per subject)."""
        rng = self._rng(1, subject)
        n = len(MI_CHANNELS)
        # A population-average pattern (left rhythm over C4, right over C3) blended with a
        # subject-specific random pattern: subject_shift=0 gives identical subjects.
        base_left = np.array([0, 0, 0.5, 0, 0.3, 1, 0, 0.5])
        base_right = np.array([0.5, 0, 0, 1, 0.3, 0, 0.5, 0])
        s = self.subject_shift
        return {
            "freq": float(np.clip(11 + s * rng.uniform(-3, 13), 7, 30)),
            "pattern_left": _unit(_unit(base_left) + s * _unit(rng.standard_normal(n))),
            "pattern_right": _unit(_unit(base_right) + s * _unit(rng.standard_normal(n))),
            "gains": np.exp(0.3 * s * rng.standard_normal(n)),
            # how strongly this subject desynchronises: some subjects barely modulate their rhythm
            "erd_scale": float(np.clip(np.exp(0.45 * s * rng.standard_normal()), 0.25, 2.0)),
            # task-unrelated rhythms near the task frequency (e.g. occipital alpha leaking in),
            # each with its own spatial pattern: only subject-specific spatial filters null them
            "distractor_patterns": np.array([_unit(rng.standard_normal(n)) for _ in range(2)]),
            "distractor_offsets": rng.uniform(-1.5, 1.5, size=2),
        }

    def _session_raw(self, subject: int, session: int) -> RawArray:
        t = self.subject_traits(subject)
        rng = self._rng(2, subject, session)
        # each session the cap sits a little differently: patterns, gains, rhythm and ERD depth move
        # by a fresh random step of size session_drift (not a trend: day 3 is not further than day 2)
        moved = self._rng(3, subject, session).standard_normal((6, len(MI_CHANNELS)))
        d = self.session_drift
        pat_l = _unit(t["pattern_left"] + d * _unit(moved[0]))
        pat_r = _unit(t["pattern_right"] + d * _unit(moved[1]))
        gains = t["gains"] * np.exp(0.5 * d * _unit(moved[2]))
        freq = t["freq"] * (1 + 0.03 * d * moved[3, 0])
        erd = self.erd * t["erd_scale"] * np.exp(0.5 * d * moved[3, 1])

        labels, onsets, duration = self._schedule(rng, self.trial_s, (1.5, 2.5))
        n = int(duration * self.sfreq)
        sf = self.sfreq
        rhythm_l = _band_noise(rng, n, sf, freq - 1.5, freq + 1.5)
        rhythm_r = _band_noise(rng, n, sf, freq - 1.5, freq + 1.5)
        env_l = np.ones(n)
        env_r = np.ones(n)
        shape = erd_time_course(self.trial_s, sf, self.erd_tail)
        for label, onset in zip(labels, onsets):
            i0 = int(onset * sf)
            i1 = i0 + shape.size
            # imagining the left hand suppresses the right-hemisphere rhythm, and vice versa
            env = env_l if label == 0 else env_r
            depth = erd * max(0.0, 1.0 + self.erd_jitter * rng.standard_normal())  # attention varies per trial
            env[i0:i1] -= min(depth, 0.95) * shape
        sources = np.outer(pat_l, 2.0 * env_l * rhythm_l) + np.outer(pat_r, 2.0 * env_r * rhythm_r)
        for pattern, offset, step in zip(t["distractor_patterns"], t["distractor_offsets"], moved[4:]):
            pattern, f = _unit(pattern + d * _unit(step)), freq + offset
            # its amplitude wanders slowly (0.2-1 Hz), so its power varies from trial to trial
            envelope = 1.0 + 0.8 * _band_noise(rng, n, sf, 0.2, 1.0)
            sources += np.outer(pattern, 2.0 * self.distractor * np.clip(envelope, 0, None) * _band_noise(rng, n, sf, f - 1.5, f + 1.5))
        background = _pink_noise(rng, (len(MI_CHANNELS), n), sf)
        sensor = rng.standard_normal((len(MI_CHANNELS), n))
        data = gains[:, None] * (sources + self.noise * (1.2 * background + 0.3 * sensor))
        return self._raw(5e-6 * data, MI_CHANNELS, sf, onsets, labels, montage=True)


def erd_time_course(trial_s: float, sfreq: float, tail: float) -> np.ndarray:
    """How deep the desynchronisation is over one trial, 1 at its deepest.

    ERD builds up over the first half second after the cue, is deepest from 0.5 to 2.5 s, then
    fades to ``tail`` of its depth by the end of the trial as attention to the imagined movement
    wanes. Many MI decoders use the 0.5-2.5 s segment (e.g. EEGNet on BCI competition IV 2a,
    Lawhern et al. 2018; the study's windows), so a decoder on the whole trial sees a diluted effect.
    """
    t = np.arange(int(round(trial_s * sfreq))) / sfreq
    rise = np.sin(0.5 * np.pi * np.clip(t / 0.5, 0, 1)) ** 2
    fade = 1 - (1 - tail) * np.clip((t - 2.5) / (trial_s - 2.5), 0, 1)
    return rise * fade


def _eye_trajectory(kind: int, n: int, sfreq: float, latency: float, amp: float, speed: float):
    """Vertical and horizontal eye signal for one of the 11 movements over ``n`` samples."""
    v = np.zeros(n)
    h = np.zeros(n)
    t = np.arange(n) / sfreq

    def step(t0, dur):  # a smooth saccade from 0 to 1 starting at t0 (sigmoid)
        return 1.0 / (1.0 + np.exp(-(t - t0 - dur / 2) / (dur / 8)))

    def blink(t0):  # a sharp mostly-vertical bump, about 200 ms wide
        return np.exp(-0.5 * ((t - t0 - 0.1) / 0.04) ** 2)

    hold = 0.6 / speed
    if kind < 8:  # saccade out in one of 8 directions, hold, and back
        angle = np.pi / 4 * kind
        out = step(latency, 0.05 / speed) - step(latency + hold, 0.05 / speed)
        v = amp * np.sin(angle) * out
        h = amp * np.cos(angle) * out
    elif kind == 8:  # blink
        v = 2.5 * amp * blink(latency)
    elif kind == 9:  # double blink
        v = 2.5 * amp * (blink(latency) + blink(latency + 0.35 / speed))
    # kind 10: fixation, nothing but noise
    return v, h


class SyntheticEOG(_SyntheticBase):
    """Smart-glasses eye movements: 3 dry electrodes at 500 Hz, 11 classes, 2.5 s triggers."""

    sfreq = 500.0
    trial_s = 2.5

    def __init__(
        self,
        n_subjects: int = 8,
        n_sessions: int = 3,
        trials_per_class: int = 15,
        seed: int = 0,
        subject_shift: float = 0.6,
        session_drift: float = 0.8,
        noise: float = 1.0,
        subjects=None,
        sessions=None,
    ):
        super().__init__(
            n_subjects=n_subjects, n_sessions=n_sessions, trials_per_class=trials_per_class,
            seed=seed, subject_shift=subject_shift, session_drift=session_drift, noise=noise,
            events=dict(EOG_EVENTS), code="SyntheticEOG", interval=[0, self.trial_s],
            paradigm="eog", subjects=subjects, sessions=sessions,
        )

    def subject_traits(self, subject: int) -> dict:
        rng = self._rng(1, subject)
        s = self.subject_shift
        # Nominal projection of the eye dipole (vertical, horizontal) on e1, e2, e3, chosen so
        # that the derived channels of BRIEF (v = e2 - (e1+e3)/2, h = e1 - e3) recover it.
        nominal = np.array([[-1 / 3, 0.5], [2 / 3, 0.0], [-1 / 3, -0.5]])
        return {
            "projection": nominal + 0.15 * s * rng.standard_normal((3, 2)),
            "gains": np.exp(0.25 * s * rng.standard_normal(3)),
            "amp": float(np.exp(0.2 * s * rng.standard_normal())),
            "speed": float(np.exp(0.15 * s * rng.standard_normal())),
            # reaction time to the cue: each subject their own (trials vary around it by +-0.1 s)
            "latency": float(np.clip(0.35 + 0.4 * s * rng.uniform(-1, 1), 0.12, 0.7)),
        }

    def _session_raw(self, subject: int, session: int) -> RawArray:
        t = self.subject_traits(subject)
        rng = self._rng(2, subject, session)
        # each session the glasses sit a little differently: a fresh random step of size session_drift
        moved = self._rng(3, subject, session).standard_normal((2, 6))
        d = self.session_drift
        proj = t["projection"] + 0.15 * d * _unit(moved[0]).reshape(3, 2) * np.sqrt(6)
        gains = t["gains"] * np.exp(0.4 * d * _unit(moved[1][:3]))

        labels, onsets, duration = self._schedule(rng, self.trial_s, (0.5, 1.0))
        sf = self.sfreq
        n = int(duration * sf)
        eye = np.zeros((2, n))
        m = int(self.trial_s * sf)
        for label, onset in zip(labels, onsets):
            i0 = int(onset * sf)
            v, h = _eye_trajectory(
                int(label), m, sf, latency=t["latency"] + rng.uniform(-0.1, 0.1),
                amp=t["amp"] * rng.uniform(0.8, 1.2), speed=t["speed"] * rng.uniform(0.85, 1.15),
            )
            eye[0, i0:i0 + m] += v
            eye[1, i0:i0 + m] += h
        electrodes = proj @ eye
        wander = _band_noise(rng, n, sf, 0.05, 0.5)  # slow skin-potential drift, all electrodes
        background = _pink_noise(rng, (3, n), sf)
        data = gains[:, None] * (electrodes + self.noise * (0.25 * background + 0.3 * wander))
        return self._raw(100e-6 * data, GLASSES_CHANNELS, sf, onsets, labels, montage=False)
