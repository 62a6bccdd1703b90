"""Validation of the study parameters, before any expensive work starts.

The library never reads ``params.yaml``: the caller parses it (``files.read_params``) and calls
:func:`validate_params`. Each declared parameter is checked against its kind (``declarations.py``),
then the rules that relate keys run; every problem names the key, the value and what would be
allowed, and all are reported at once.
"""

from __future__ import annotations

import copy
from typing import Any

from ..data.spec import EOG_DATASETS
from ..errors import UserError
from ..strategy_table import STRATEGY_SPECS
from .arguments import check_constructor, check_datasets, nearest
from .declarations import PARAMS, Param, section_keys
from .kinds import Mapping

_MISSING = object()


class ParamsError(UserError):
    """One or more parameters are invalid; ``problems`` lists them as (key, message)."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        lines = "\n".join(f"  - {key}: {msg}" for key, msg in problems)
        where = f"{source}: " if source else ""
        if len(problems) == 1 and problems[0][0] == "<file>":  # the file itself: one sentence
            super().__init__(problems[0][1])
        else:
            super().__init__(f"{where}invalid parameters ({len(problems)}):\n{lines}")


def _lookup(params: dict, key: str) -> Any:
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _not_a_mapping(params: dict, key: str) -> str | None:
    """The first section on ``key``'s path that is present but not a mapping (``device: null``)."""
    parts, node = key.split("."), params
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
        if not isinstance(node, dict):
            return ".".join(parts[: i + 1])
    return None


def _first_missing(params: dict, key: str) -> str:
    """The outermost missing section of ``key`` (a missing section is reported once, not per key)."""
    parts, node = key.split("."), params
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            return ".".join(parts[: i + 1])
        node = node[part]
    return key


def _put(params: dict, key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    node = params
    for part in sections:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return
    node[leaf] = value


def unknown_keys(params: dict) -> list[tuple[str, str]]:
    """(key, message) for every key the declarations do not know, the nearest key suggested.

    A misspelt key (``adapt.lrr``) would otherwise be ignored while the user believes the value
    changed. Keys under an open mapping (constructor arguments, constants, a grid) are checked
    elsewhere."""
    known = section_keys()
    leaves = {p.key for p in PARAMS}
    problems = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            siblings = sorted({k[len(prefix):].split(".")[0] for k in known if k.startswith(prefix)} - {""})
            if not isinstance(key, str) or path not in known:
                guess = nearest(path, [f"{prefix}{s}" for s in siblings]) or nearest(path, known)
                hint = f"did you mean {guess}? " if guess else ""
                problems.append((path, f"unknown key; {hint}allowed in {prefix[:-1] or 'the top level'}: {siblings}"))
            elif path not in leaves and isinstance(value, dict):
                walk(value, path + ".")

    walk(params, "")
    return problems


class _Checker:
    """Every declared parameter against its kind, into one list of problems; missing optional keys
    take their declared defaults in ``filled``."""

    def __init__(self, params: dict):
        self.params = params
        self.filled = copy.deepcopy(params)
        self.problems: list[tuple[str, str]] = []

    def fail(self, key: str, value: Any, allowed: str) -> None:
        self.problems.append((key, f"got {value!r}; allowed: {allowed}"))

    def problems_under(self, prefix: str) -> bool:
        return any(key == prefix or key.startswith(prefix + ".") for key, _ in self.problems)

    def check(self, p: Param) -> None:
        section = _not_a_mapping(self.params, p.key)
        if section is not None:
            problem = (section, f"got {_lookup(self.params, section)!r}; allowed: a mapping of its keys")
            if problem not in self.problems:
                self.problems.append(problem)
            return
        value = _lookup(self.params, p.key)
        if value is _MISSING:
            if p.required:
                missing = _first_missing(self.params, p.key)
                if (missing, "is missing") not in self.problems:
                    self.problems.append((missing, "is missing"))
            else:
                _put(self.filled, p.key, copy.deepcopy(p.default))
            return
        if value is None and isinstance(p.kind, Mapping) and p.nullable:  # an empty mapping written as nothing
            _put(self.filled, p.key, {})
            return
        if value is None and p.nullable:
            return
        problem = p.kind.problem(value)
        if problem is not None:
            self.fail(p.key, value, f"null or {problem}" if p.nullable else problem)

    def value(self, key: str) -> Any:
        """A value that passed its own check (None if it did not, or is missing)."""
        if self.problems_under(key):
            return None
        value = _lookup(self.filled, key)
        return None if value is _MISSING else value


def validate_params(params: dict, datasets: bool = True) -> dict:
    """Check every parameter; return the parameters with declared defaults filled in.

    ``datasets=False`` skips resolving the dataset's name and constructor arguments, which imports
    MOABB (~3 s): for the stages after ``data``, which read its window files, never the dataset."""
    if not isinstance(params, dict):
        raise ParamsError([("<root>", f"params must be a mapping, got {type(params).__name__}")])
    c = _Checker(params)
    c.problems += unknown_keys(params)
    for p in PARAMS:
        if p.applies(params):
            c.check(p)
    for rule in (_dataset_rules, _modality_rules, _batching_rules, _strategy_rules, _runner_rules, _sweep_rules,
                 _device_rules):
        rule(c, datasets)
    if c.problems:
        raise ParamsError(list(dict.fromkeys(c.problems)))
    return c.filled


def _dataset_rules(c: _Checker, datasets: bool) -> None:
    """A dataset that resolves (only with ``datasets``) for every modality, an eye-movement dataset
    for EOG, and constructor arguments the dataset takes."""
    name, modalities = c.value("data.dataset.name"), c.value("data.modalities") or []
    if not isinstance(name, str):
        return
    known = _resolves(c, name, modalities) if datasets else True
    if known and name not in EOG_DATASETS and "eog" in modalities:
        c.fail("data.modalities", modalities,
               f"'eog' only with an eye-movement dataset (data.dataset.name one of {sorted(EOG_DATASETS)})")
    kwargs_ok = not any(c.problems_under(k) for k in ("data.dataset", "data.modalities")) and not any(
        c.problems_under(f"data.{m}.dataset_kwargs") for m in modalities)
    if datasets and kwargs_ok:
        c.problems += check_datasets(c.filled, name, modalities)


def _resolves(c: _Checker, name: str, modalities: list) -> bool:
    """Whether the dataset name gives a class for every modality (the first failure is the problem).
    Imports MOABB, hence only when names are resolved."""
    from ..data.datasets import dataset_class

    for modality in modalities:
        try:
            dataset_class(name, modality)
        except ValueError as err:
            c.problems.append(("data.dataset.name", str(err)))
            return False
    return True


def _modality_rules(c: _Checker, _datasets: bool) -> None:
    """data.<modality>: band-pass below Nyquist, at least two classes; models.<modality>: a model
    whose arguments build it, tried on the shape its data will have (only once its data are valid)."""
    from ..models import MODELS

    for modality in c.value("data.modalities") or []:
        base = f"data.{modality}"
        sfreq, fmin, fmax = (c.value(f"{base}.{k}") for k in ("sfreq", "fmin", "fmax"))
        if fmin is not None and fmax is not None and fmin >= fmax:
            c.fail(f"{base}.fmin", fmin, f"a number below {base}.fmax={fmax}")
        if fmax is not None and sfreq is not None and fmax >= sfreq / 2:
            c.fail(f"{base}.fmax", fmax, f"a number below Nyquist ({base}.sfreq/2 = {sfreq / 2:g})")
        events = c.value(f"{base}.events")
        if isinstance(events, list) and len(events) < 2:
            c.fail(f"{base}.events", events, "at least 2 classes")
        model, kwargs = c.value(f"models.{modality}.name"), c.value(f"models.{modality}.kwargs")
        if model in MODELS and isinstance(kwargs, dict) and not c.problems_under(base):
            c.problems += check_constructor(MODELS[model], kwargs, f"models.{modality}.kwargs",
                                            model_shape(c.filled, modality))


def _batching_rules(c: _Checker, _datasets: bool) -> None:
    """adapt.micro_batch divides adapt.batch_size (edge accumulates whole micro-batches)."""
    batch, micro = c.value("adapt.batch_size"), c.value("adapt.micro_batch")
    if batch and micro and batch % micro:
        c.fail("adapt.micro_batch", micro, f"a divisor of adapt.batch_size={batch}")


def _nominal_models(c: _Checker) -> dict:
    """Each studied modality's model built at its nominal shape (modalities whose model is invalid left out)."""
    from ..models import MODELS

    models = {}
    for modality in c.value("data.modalities") or []:
        name, kwargs = c.value(f"models.{modality}.name"), c.value(f"models.{modality}.kwargs")
        if name in MODELS and isinstance(kwargs, dict) and not c.problems_under(f"data.{modality}") \
                and not c.problems_under(f"models.{modality}"):
            try:
                models[modality] = MODELS[name](**model_shape(c.filled, modality), **kwargs)
            except (TypeError, ValueError, RuntimeError, ZeroDivisionError):
                continue
    return models


def _strategy_rules(c: _Checker, _datasets: bool) -> None:
    """lora's rank: at most min(rows, columns) of the largest adapted weight of some studied model;
    sparse's budget: at least the classifier's own update (weights, gradient, momentum, accumulator)."""
    strategies = c.value("adapt.strategies") or []
    grid = (c.value("sweep.grid") if "sweep" in c.params else None) or {}
    grid = grid if isinstance(grid, dict) else {}
    grid_strategies = grid.get("strategy") if isinstance(grid.get("strategy"), list) else []
    studied = {str(spec).partition("@")[0] for spec in [*strategies, *grid_strategies]}  # edge@bf16 -> edge
    if not studied & {"lora", "sparse"}:
        return
    from ..models.layers import max_rank

    models = _nominal_models(c)
    if not models:
        return
    rank = c.value("adapt.lora.rank")
    if "lora" in studied and isinstance(rank, int):
        ceiling = max(max_rank(m) for m in models.values())
        if rank > ceiling:
            c.fail("adapt.lora.rank", rank, f"an integer from 1 to {ceiling}: min(rows, columns) of the largest "
                                            "adapted weight (a larger rank adds parameters and nothing else)")
    budget = c.value("adapt.sparse.budget_kb")
    if "sparse" in studied and isinstance(budget, (int, float)):
        floor = max(16 * sum(p.numel() for p in m.classifier.parameters()) for m in models.values())
        if budget * 1000 < floor:
            c.fail("adapt.sparse.budget_kb", budget, f"at least {floor / 1000:g}: the classifier's own update "
                                                    "(weights, gradient, momentum and accumulator, float32)")


def _runner_rules(c: _Checker, _datasets: bool) -> None:
    """An address only for a cluster runner; TCMalloc, when required, installed."""
    from ..study.allocator import find_tcmalloc, missing_tcmalloc

    address = c.value("adapt.runner.address")
    if address is not None and c.value("adapt.runner.name") == "threads":
        c.fail("adapt.runner.address", address, "null with adapt.runner.name 'threads' (an address needs 'dask' or 'ray')")
    if c.value("adapt.runner.allocator") == "tcmalloc" and find_tcmalloc() is None:
        c.fail("adapt.runner.allocator", "tcmalloc", f"'auto' or 'system': {missing_tcmalloc()}")


def _sweep_rules(c: _Checker, _datasets: bool) -> None:
    """sweep (optional): a grid that expands to valid points."""
    grid = c.value("sweep.grid") if "sweep" in c.params else None
    if not isinstance(grid, dict):
        return
    from ..study.jobs import expand_grid

    try:
        points = expand_grid(grid)
    except ValueError as err:
        c.problems.append(("sweep.grid", str(err)))
        return
    bad = [p["strategy"] for p in points if "strategy" in p and p["strategy"] not in STRATEGY_SPECS]
    if bad:
        c.fail("sweep.grid.strategy", sorted(set(map(str, bad))), f"values from {list(STRATEGY_SPECS)}")
    for key in ("lr", "epochs", "batch_size", "micro_batch", "sparse_budget_kb"):
        if any(key in p and not (isinstance(p[key], (int, float)) and p[key] > 0) for p in points):
            c.fail(f"sweep.grid.{key}", grid[key], "positive numbers")
    if any("lora_rank" in p and not (isinstance(p["lora_rank"], int) and p["lora_rank"] >= 1) for p in points):
        c.fail("sweep.grid.lora_rank", grid["lora_rank"], "integers >= 1")


def _device_rules(c: _Checker, _datasets: bool) -> None:
    """device: a backend that exists, and constants the chip model knows."""
    if c.value("device.backend") == "gap9-board":
        c.fail("device.backend", "gap9-board", "'gap9-sim' (the board backend is not implemented yet)")
    constants = c.value("device.constants")
    if isinstance(constants, dict):
        from ..device import load_constants

        try:
            program = c.value("device.program")
            load_constants(constants, program if isinstance(program, str) else None)
        except ValueError as err:
            c.problems.append(("device.constants", str(err)))


def model_shape(params: dict, modality: str) -> dict:
    """A nominal input shape, at the data's rate, to try a model's arguments on before the data exist."""
    cfg = params["data"][modality]
    channels = cfg.get("channels")
    events = cfg.get("events")
    n_chans = 2 if modality == "eog" else (len(channels) if channels else 8)
    n_outputs = len(events) if events else (11 if modality == "eog" else 2)
    return {"n_chans": n_chans, "n_times": cfg.get("n_times"), "n_outputs": n_outputs, "sfreq": cfg.get("sfreq")}
