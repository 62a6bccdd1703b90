"""Reading a parameters file: the one loader every entry point uses (the stages, the command line,
the benchmarks), so a file is checked the same way wherever it is read."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..study.config import StudyConfig
from .checks import ParamsError, validate_params

PARAMS_ENV = "BIOTRAIN_PARAMS"  # a parameters file other than ./params.yaml


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


def read_params(path: str | os.PathLike) -> dict:
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


def params_path(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$BIOTRAIN_PARAMS``, else ``params.yaml`` in the working directory."""
    return Path(path or os.environ.get(PARAMS_ENV, "params.yaml"))


def load_params(path: str | os.PathLike | None = None, datasets: bool = True) -> dict:
    """Parse and validate a parameters file and check the tracking store answers (a UserError if
    not); declared defaults are filled in.

    ``datasets=False``: the stages after ``data`` (they read window files) skip resolving the
    dataset, which imports MOABB; ``recordings``, ``data`` and ``biotrain run`` check it first."""
    from ..tracking import check_tracking, default_tracking_uri

    path = params_path(path)
    params = validate_params(read_params(path), datasets)
    check_tracking(params["tracking"]["uri"] or default_tracking_uri(path.resolve().parent))
    return params


def load_study(path: str | os.PathLike | None = None, datasets: bool = True) -> StudyConfig:
    """The study's typed settings from a checked parameters file (a default tracking store beside it)."""
    return StudyConfig.from_params(load_params(path, datasets), params_path(path).resolve().parent)
