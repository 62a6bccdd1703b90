"""Validation of the study parameters, before any expensive work starts.

The library never reads ``params.yaml``: stages load it and call :func:`validate_params` on the
resulting dict. Each bad value raises :class:`ParamsError` naming the key, the value and what
would be allowed, and every problem is reported at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .adaptation.strategies import HOST_LOOPS, STRATEGIES
from .data.spec import EOG_DATASETS, MODALITIES
from .errors import UserError
from .models import MODELS
from .params_schema import check_constructor, check_datasets, unknown_keys
from .study.allocator import ALLOCATORS, find_tcmalloc, missing_tcmalloc

RUNNERS = ("threads", "dask", "ray")


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the first would be ignored)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first at line {seen[key] + 1}); the first value "
                                f"would be silently ignored", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path) -> dict:
    """Parse the parameters file a caller names (a missing file or bad YAML is a ParamsError)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError([("<file>", f"{path} does not exist; run from the project root (where params.yaml is) "
                                      f"or give the file's path")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ParamsError([("<file>", f"{path} cannot be read: {err}")]) from None
    try:
        params = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamsError([("<file>", f"{path} is not valid YAML{where}: {problem}")]) from None
    if params is None:
        raise ParamsError([("<file>", f"{path} is empty; expected the sections of params.yaml")])
    return params


class _Checker:
    def __init__(self, params: dict):
        self.params = params
        self.problems: list[tuple[str, str]] = []
        self.missing: set[str] = set()

    def get(self, key: str, default: Any = KeyError) -> Any:
        node: Any = self.params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is KeyError:
                    self.fail(key, None, "is missing")
                    return None
                return default
            node = node[part]
        return node

    def fail(self, key: str, value: Any, allowed: str) -> None:
        if value is None and allowed == "is missing":
            # report a missing section once, not every key under it
            parts = key.split(".")
            node: Any = self.params
            for i, part in enumerate(parts):
                if not isinstance(node, dict) or part not in node:
                    key = ".".join(parts[: i + 1])
                    break
                node = node[part]
            if key not in self.missing:
                self.missing.add(key)
                self.problems.append((key, "is missing"))
        else:
            self.problems.append((key, f"got {value!r}; allowed: {allowed}"))

    def problems_under(self, prefix: str) -> bool:
        return any(key == prefix or key.startswith(prefix + ".") for key, _ in self.problems)

    def number(self, key: str, *, minimum=None, maximum=None, exclusive_min=False, integer=False, default=KeyError):
        value = self.get(key, default)
        if value is None and default is not KeyError:
            return value
        kind = int if integer else (int, float)
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and minimum is not None:
            ok = value > minimum if exclusive_min else value >= minimum
        if ok and maximum is not None:
            ok = value <= maximum
        if not ok and value is not None:
            what = "an integer" if integer else "a number"
            bounds = []
            if minimum is not None:
                bounds.append(f"{'>' if exclusive_min else '>='} {minimum}")
            if maximum is not None:
                bounds.append(f"<= {maximum}")
            self.fail(key, value, f"{what} {' and '.join(bounds)}".strip())
        return value if ok else None

    def choice(self, key: str, options, default=KeyError):
        value = self.get(key, default)
        if value not in options and value is not None:
            self.fail(key, value, f"one of {list(options)}")
        return value

    def subset(self, key: str, options):
        value = self.get(key)
        if not isinstance(value, list) or not value:
            if value is not None:
                self.fail(key, value, f"a non-empty list drawn from {list(options)}")
            return []
        bad = [v for v in value if v not in options]
        if bad:
            self.fail(key, value, f"a list drawn from {list(options)} ({bad} unknown)")
        if len(set(map(str, value))) != len(value):
            self.fail(key, value, "a list without duplicates")
        return value


def validate_params(params: dict, datasets: bool = True) -> dict:
    """Check every section of the study parameters; return them unchanged if valid.

    One checker per section, in the file's order, each adding to one list of problems so that
    every problem is reported at once. ``datasets=False`` skips resolving the dataset's name and
    constructor arguments, which imports MOABB (~3 s): for the stages after ``data``, which read
    its window files, never the dataset."""
    if not isinstance(params, dict):
        raise ParamsError([("<root>", f"params must be a mapping, got {type(params).__name__}")])
    c = _Checker(params)
    c.problems += unknown_keys(params)
    c.number("seed", integer=True, minimum=0)
    _check_data_and_models(c, datasets)
    for check in (_check_split, _check_pretrain, _check_adapt, _check_sweep, _check_device,
                  _check_tracking, _check_report):
        check(c)
    if c.problems:
        raise ParamsError(list(dict.fromkeys(c.problems)))
    return params


def _check_data_and_models(c: _Checker, datasets: bool) -> None:
    """data and models: the dataset, then each modality's data and model (tried on the shape its
    data will have), then the dataset's constructor arguments."""
    name, kwargs, modalities = _check_dataset(c, datasets)
    for modality in modalities:
        _check_modality(c, modality)
        _check_model(c, modality)
    if datasets and isinstance(name, str) and isinstance(kwargs, dict) and not c.problems_under("data.dataset.name") \
            and not c.problems_under("data.modalities"):
        c.problems += check_datasets(c.params, name, modalities)


def _check_dataset(c: _Checker, datasets: bool) -> tuple[Any, Any, list]:
    """data.dataset, data.modalities, data.cache_dir: a known dataset (resolved only with
    ``datasets``) that has every modality."""
    name = c.get("data.dataset.name")
    kwargs = c.get("data.dataset.kwargs", {}) or {}
    if not isinstance(kwargs, dict):
        c.fail("data.dataset.kwargs", kwargs, "a mapping of constructor arguments")
    modalities = c.subset("data.modalities", MODALITIES)
    cache_dir = c.get("data.cache_dir", None)
    if cache_dir is not None and not (isinstance(cache_dir, str) and cache_dir.strip()):
        c.fail("data.cache_dir", cache_dir, "null (MOABB's default, ~/mne_data) or a folder path")
    if isinstance(name, str):
        known = _resolves(c, name, modalities) if datasets else True
        if known and name not in EOG_DATASETS and "eog" in modalities:
            c.fail("data.modalities", modalities,
                   f"'eog' only with an eye-movement dataset (data.dataset.name one of {sorted(EOG_DATASETS)})")
    elif name is not None:
        c.fail("data.dataset.name", name, "'synthetic' or a moabb.datasets class name")
    return name, kwargs, modalities


def _resolves(c: _Checker, name: str, modalities: list) -> bool:
    """Whether the dataset name gives a class for every modality (the first failure is the problem).
    Imports MOABB, hence only when names are resolved."""
    from .data.datasets import dataset_class

    for modality in modalities:
        try:
            dataset_class(name, modality)
        except ValueError as err:
            c.problems.append(("data.dataset.name", str(err)))
            return False
    return True


def _check_modality(c: _Checker, modality: str) -> None:
    """data.<modality>: band-pass below Nyquist, window length, channels and events."""
    base = f"data.{modality}"
    sfreq = c.number(f"{base}.sfreq", minimum=0, exclusive_min=True)
    c.number(f"{base}.n_times", integer=True, minimum=64)
    c.number(f"{base}.tmin", minimum=0)
    fmin = c.number(f"{base}.fmin", minimum=0)
    fmax = c.number(f"{base}.fmax", minimum=0, exclusive_min=True)
    if fmin is not None and fmax is not None and fmin >= fmax:
        c.fail(f"{base}.fmin", fmin, f"a number below {base}.fmax={fmax}")
    if fmax is not None and sfreq is not None and fmax >= sfreq / 2:
        c.fail(f"{base}.fmax", fmax, f"a number below Nyquist ({base}.sfreq/2 = {sfreq / 2:g})")
    extra = c.get(f"{base}.dataset_kwargs", {}) or {}
    if not isinstance(extra, dict):
        c.fail(f"{base}.dataset_kwargs", extra, "a mapping merged over data.dataset.kwargs")
    for key in ("channels", "events"):
        value = c.get(f"{base}.{key}", None)
        if value is not None and not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            c.fail(f"{base}.{key}", value, "null or a non-empty list of names")
    events = c.get(f"{base}.events", None)
    if isinstance(events, list) and len(events) < 2:
        c.fail(f"{base}.events", events, "at least 2 classes")


def _check_model(c: _Checker, modality: str) -> None:
    """models.<modality>: a known model whose arguments build it (only once its data are valid)."""
    c.choice(f"models.{modality}.name", sorted(MODELS))
    model_kwargs = c.get(f"models.{modality}.kwargs", {}) or {}
    if not isinstance(model_kwargs, dict):
        c.fail(f"models.{modality}.kwargs", model_kwargs, "a mapping of model arguments")
    elif isinstance(model_name := c.get(f"models.{modality}.name", None), str) and model_name in MODELS \
            and not c.problems_under(f"data.{modality}"):
        c.problems += check_constructor(MODELS[model_name], model_kwargs, f"models.{modality}.kwargs",
                                        model_shape(c.params, modality))


def _check_split(c: _Checker) -> None:
    """split: the calibration share of each session."""
    c.number("split.calib_fraction", minimum=0, exclusive_min=True, maximum=0.99)


def _check_pretrain(c: _Checker) -> None:
    """pretrain: the base models' training."""
    c.number("pretrain.epochs", integer=True, minimum=1)
    c.number("pretrain.batch_size", integer=True, minimum=2)
    c.number("pretrain.lr", minimum=0, exclusive_min=True)
    c.number("pretrain.weight_decay", minimum=0)
    c.number("pretrain.workers", integer=True, minimum=1)


def _check_adapt(c: _Checker) -> None:
    """adapt: strategies, seeds, the fine-tuning hyper-parameters and its batching."""
    strategies = c.subset("adapt.strategies", STRATEGIES)
    seeds = c.get("adapt.seeds")
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)) or (
        isinstance(seeds, list) and len(set(seeds)) != len(seeds)
    ):
        if seeds is not None:
            c.fail("adapt.seeds", seeds, "a non-empty list of distinct integers >= 0")
    c.number("adapt.epochs", integer=True, minimum=1)
    c.number("adapt.lr", minimum=0, exclusive_min=True)
    c.number("adapt.momentum", minimum=0, maximum=0.999)
    c.number("adapt.weight_decay", minimum=0)
    batch = c.number("adapt.batch_size", integer=True, minimum=2)
    micro = c.number("adapt.micro_batch", integer=True, minimum=1)
    if batch and micro and batch % micro:
        c.fail("adapt.micro_batch", micro, f"a divisor of adapt.batch_size={batch}")
    if "edge" in strategies and micro and batch and micro > batch:
        c.fail("adapt.micro_batch", micro, f"<= adapt.batch_size={batch}")
    # how the host emulates the strategies: "fast" (fast_loop.py) or today's loop, for comparisons
    c.choice("adapt.host_loop", HOST_LOOPS, default="fast")
    c.number("adapt.retries", integer=True, minimum=0)
    _check_runner(c)


def _check_runner(c: _Checker) -> None:
    """adapt.runner: where the adaptation tasks run; an address only for a cluster runner."""
    runner = c.choice("adapt.runner.name", RUNNERS)
    c.number("adapt.runner.workers", integer=True, minimum=1)
    address = c.get("adapt.runner.address", None)
    if address is not None and not (isinstance(address, str) and address.strip()):
        c.fail("adapt.runner.address", address, "null, or an existing cluster's address (e.g. 'tcp://10.0.0.5:8786')")
    elif address is not None and runner == "threads":
        c.fail("adapt.runner.address", address, "null with adapt.runner.name 'threads' (an address needs 'dask' or 'ray')")
    if c.choice("adapt.runner.allocator", ALLOCATORS, default="auto") == "tcmalloc" and find_tcmalloc() is None:
        c.fail("adapt.runner.allocator", "tcmalloc", f"'auto' or 'system': {missing_tcmalloc()}")


def _check_sweep(c: _Checker) -> None:
    """sweep (optional): a name usable as a folder and a grid that expands to valid points."""
    if "sweep" not in c.params:
        return
    from .study.jobs import expand_grid

    name = c.get("sweep.name")
    if name is not None and not (isinstance(name, str) and name.strip() and "/" not in name):
        c.fail("sweep.name", name, "a non-empty name without '/'")
    grid = c.get("sweep.grid")
    if isinstance(grid, dict):
        try:
            points = expand_grid(grid)
        except ValueError as err:
            c.problems.append(("sweep.grid", str(err)))
        else:
            bad = [p["strategy"] for p in points if "strategy" in p and p["strategy"] not in STRATEGIES]
            if bad:
                c.fail("sweep.grid.strategy", sorted(set(bad)), f"values from {list(STRATEGIES)}")
            for key in ("lr", "epochs", "batch_size", "micro_batch"):
                if any(key in p and not (isinstance(p[key], (int, float)) and p[key] > 0) for p in points):
                    c.fail(f"sweep.grid.{key}", grid[key], "positive numbers")
    elif grid is not None:
        c.fail("sweep.grid", grid, "a mapping of sweepable keys to lists of values")


def _check_device(c: _Checker) -> None:
    """device: the cost backend, where fine-tuning runs (issue 13: PyTorch, or the exported C
    program on a device or emulator) and overrides of the chip's constants."""
    backends = ("gap9-sim", "gap9-board")
    backend = c.choice("device.backend", backends)
    if backend == "gap9-board":
        c.fail("device.backend", backend, "'gap9-sim' (the board backend is not implemented yet)")
    c.choice("device.execute", ("host", "qemu", "gap9-board"), default="host")
    subjects = c.get("device.execute_subjects", None)
    if subjects is not None and not (isinstance(subjects, list) and all(
            isinstance(s, int) and not isinstance(s, bool) for s in subjects)):
        c.fail("device.execute_subjects", subjects, "null (every subject) or a list of subject ids")
    constants = c.get("device.constants", {}) or {}
    if not isinstance(constants, dict):
        c.fail("device.constants", constants, "a mapping of biotrain/device/gap9.yaml keys to values")
    else:
        from .device import load_constants

        try:
            load_constants(constants)
        except ValueError as err:
            c.problems.append(("device.constants", str(err)))


def _check_tracking(c: _Checker) -> None:
    """tracking: where runs are logged."""
    uri = c.get("tracking.uri", None)
    if uri is not None and not isinstance(uri, str):
        c.fail("tracking.uri", uri, "null or a tracking URI string such as sqlite:////abs/path/mlflow.db")
    experiment = c.get("tracking.experiment")
    if experiment is not None and not (isinstance(experiment, str) and experiment.strip()):
        c.fail("tracking.experiment", experiment, "a non-empty name")


def _check_report(c: _Checker) -> None:
    """report: figure resolution."""
    c.number("report.dpi", integer=True, minimum=30, default=120)


def model_shape(params: dict, modality: str) -> dict:
    """A nominal input shape, at the data's rate, to try a model's arguments on before the data exist."""
    cfg = params["data"][modality]
    channels = cfg.get("channels")
    events = cfg.get("events")
    n_chans = 2 if modality == "eog" else (len(channels) if channels else 8)
    n_outputs = len(events) if events else (11 if modality == "eog" else 2)
    return {"n_chans": n_chans, "n_times": cfg.get("n_times"), "n_outputs": n_outputs, "sfreq": cfg.get("sfreq")}
