"""Which keys ``params.yaml`` may hold, and constructor arguments checked against signatures.

A misspelt key (``adapt.lrr``) would otherwise be ignored while the user believes the value
changed; every unknown key is an error naming the nearest valid one. Dataset and model
arguments are checked against the classes' own signatures, under the key the user wrote them.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from .models.base import PIPELINE_ARGS

OPEN = "open"  # a mapping whose keys are checked elsewhere (constructor arguments, constants, grid)

_MODALITY = {"dataset_kwargs": OPEN, "channels": None, "events": None, "fmin": None, "fmax": None,
             "sfreq": None, "tmin": None, "n_times": None}
_MODEL = {"name": None, "kwargs": OPEN}

SCHEMA: dict[str, Any] = {
    "seed": None,
    "data": {"dataset": {"name": None, "kwargs": OPEN}, "cache_dir": None, "modalities": None,
             "eeg": _MODALITY, "eog": _MODALITY},
    "models": {"eeg": _MODEL, "eog": _MODEL},
    "split": {"calib_fraction": None},
    "pretrain": {"epochs": None, "batch_size": None, "lr": None, "weight_decay": None, "workers": None},
    "adapt": {"strategies": None, "seeds": None, "epochs": None, "lr": None, "momentum": None,
              "weight_decay": None, "batch_size": None, "micro_batch": None, "host_loop": None, "retries": None,
              "runner": {"name": None, "workers": None, "address": None, "allocator": None}},
    "sweep": {"name": None, "grid": OPEN},
    "device": {"backend": None, "constants": OPEN, "execute": None, "execute_subjects": None},
    "tracking": {"uri": None, "experiment": None},
    "report": {"dpi": None},
}

# set from the data by the pipeline, never by the user
SHAPE_ARGS = ("self", *PIPELINE_ARGS)


def _paths(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for key, sub in schema.items():
        path = f"{prefix}{key}"
        out.append(path)
        if isinstance(sub, dict):
            out += _paths(sub, path + ".")
    return out


ALL_KEYS = _paths(SCHEMA)


def nearest(word: str, options: list[str]) -> str | None:
    """The closest option to a misspelt word, if any is close enough."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:  # a different case or a prefix ('Lr', 'learning_rate' -> 'lr' is too far)
        close = [o for o in options if o.lower() == word.lower()]
    return close[0] if close else None


def unknown_keys(params: dict, schema: dict = SCHEMA, prefix: str = "") -> list[tuple[str, str]]:
    """(key, message) for every key of ``params`` the schema does not know, nearest key suggested."""
    problems = []
    for key, value in params.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str) or key not in schema:
            siblings = [f"{prefix}{k}" for k in schema]
            guess = nearest(path, siblings) or nearest(path, ALL_KEYS)
            hint = f"did you mean {guess}? " if guess else ""
            where = prefix[:-1] or "the top level"
            problems.append((path, f"unknown key; {hint}allowed in {where}: {sorted(schema)}"))
            continue
        sub = schema[key]
        if isinstance(sub, dict) and isinstance(value, dict):
            problems += unknown_keys(value, sub, path + ".")
    return problems


def _arguments(cls) -> tuple[list[str], bool]:
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    names = [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    return names, takes_any


def unknown_arguments(cls, kwargs: dict, key: str, exclude: tuple[str, ...] = ("self",)) -> list[tuple[str, str]]:
    """(key.arg, message) for each argument of ``kwargs`` that ``cls`` does not take."""
    names, takes_any = _arguments(cls)
    allowed = [n for n in names if n not in exclude]
    problems = []
    for arg in kwargs:
        if arg in exclude and arg != "self":
            problems.append((f"{key}.{arg}", f"is set from the data by the pipeline; remove it "
                                             f"(allowed: {allowed})"))
        elif arg not in names and not takes_any:
            guess = nearest(str(arg), allowed)
            hint = f"did you mean {guess}? " if guess else ""
            problems.append((f"{key}.{arg}", f"not an argument of {cls.__name__}; {hint}allowed: {allowed}"))
    return problems


def check_constructor(cls, kwargs: dict, key: str, shape: dict) -> list[tuple[str, str]]:
    """A model's arguments: known to its class, and accepted by it at a nominal input shape and rate."""
    problems = unknown_arguments(cls, kwargs, key, SHAPE_ARGS)
    if problems or not isinstance(shape.get("n_times"), int):
        return problems
    try:
        cls(**shape, **kwargs)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as err:
        problems.append((key, f"got {kwargs!r}; {cls.__name__} rejects it at input "
                              f"{shape['n_chans']} x {shape['n_times']}: {err}"))
    return problems


def _dataset_sources(params: dict, modality: str) -> list[tuple[str, dict]]:
    data = params["data"]
    shared = data["dataset"].get("kwargs") or {}
    own = (data.get(modality) or {}).get("dataset_kwargs") or {}
    return [("data.dataset.kwargs", shared if isinstance(shared, dict) else {}),
            (f"data.{modality}.dataset_kwargs", own if isinstance(own, dict) else {})]


def check_datasets(params: dict, name: str, modalities: list[str]) -> list[tuple[str, str]]:
    """Each modality's dataset arguments, under the key where the user wrote them.

    Unknown arguments are checked against the class signature. The embedded synthetic datasets
    are also built (cheap, no files) so their value checks run here; an impossible study (fewer
    than 2 subjects: leave-one-subject-out; fewer than 2 sessions: the longitudinal scenario) is
    named before any work.
    """
    from .data.datasets import dataset_class
    from .data.glasses import SmartGlassesEOG
    from .data.synthetic import _SyntheticBase
    from .errors import UserError

    problems: list[tuple[str, str]] = []
    for modality in modalities:
        cls = dataset_class(name, modality)
        sources = _dataset_sources(params, modality)
        for key, kwargs in sources:
            problems += unknown_arguments(cls, kwargs, key)
        merged, where = {}, {}
        for key, kwargs in sources:
            merged.update(kwargs)
            where.update({arg: f"{key}.{arg}" for arg in kwargs})
        problems += _impossible_study(merged, where, cls)
        if problems:
            continue
        if issubclass(cls, _SyntheticBase):
            try:
                cls(**merged)
            except (TypeError, ValueError) as err:
                arg = str(err).split(" ", 1)[0]
                problems.append((where.get(arg, "data.dataset.kwargs"), f"rejected by {cls.__name__}: {err}"))
        elif issubclass(cls, SmartGlassesEOG) and merged.get("path") and not merged.get("url"):
            try:  # a local folder: finding the recordings reads only their headers
                cls(**merged)
            except UserError as err:
                problems.append((where["path"], str(err)))
    return list(dict.fromkeys(problems))


def _impossible_study(kwargs: dict, where: dict, cls) -> list[tuple[str, str]]:
    problems = []
    n_subjects = kwargs.get("n_subjects")
    if n_subjects is not None and not (isinstance(n_subjects, int) and n_subjects >= 2):
        problems.append((where["n_subjects"], f"got {n_subjects!r}; allowed: an integer >= 2 "
                                              f"(leave-one-subject-out pretraining needs at least 2 subjects)"))
    subjects = kwargs.get("subjects")
    if isinstance(subjects, list) and len(subjects) < 2:
        problems.append((where["subjects"], f"got {subjects!r}; allowed: null or at least 2 subjects "
                                            f"(leave-one-subject-out pretraining)"))
    n_sessions = kwargs.get("n_sessions")
    if n_sessions is not None and not (isinstance(n_sessions, int) and n_sessions >= 2):
        problems.append((where["n_sessions"], f"got {n_sessions!r}; allowed: an integer >= 2 (the longitudinal "
                                              f"scenario adapts on the sessions after the first)"))
    sessions = kwargs.get("sessions")
    if isinstance(sessions, list) and len(sessions) < 2:
        problems.append((where["sessions"], f"got {sessions!r}; allowed: null or at least 2 sessions (the "
                                            f"longitudinal scenario adapts on the sessions after the first)"))
    return problems
