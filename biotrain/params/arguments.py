"""Dataset and model arguments checked against the classes' own signatures, under the key the
user wrote them, and the "did you mean" of every misspelt name.

A misspelt argument would otherwise be ignored (or fail deep in a stage) while the user believes
the value changed.
"""

from __future__ import annotations

import difflib
import inspect

from ..models.base import PIPELINE_ARGS

# set from the data by the pipeline, never by the user
SHAPE_ARGS = ("self", *PIPELINE_ARGS)


def nearest(word: str, options: list[str]) -> str | None:
    """The closest option to a misspelt word, if any is close enough."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:  # a different case or a prefix ('Lr', 'learning_rate' -> 'lr' is too far)
        close = [o for o in options if o.lower() == word.lower()]
    return close[0] if close else None


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
    from ..data.datasets import dataset_class
    from ..data.glasses import SmartGlassesEOG
    from ..data.synthetic import _SyntheticBase
    from ..errors import UserError

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
