"""Device constants of the ``gap9-sim`` backend, read from the documented ``gap9.yaml``."""

from __future__ import annotations

import difflib
import math
from pathlib import Path

import yaml

CONSTANTS_FILE = Path(__file__).with_name("gap9.yaml")


def _coerce(key: str, value, default):
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"device constant {key!r} expects a boolean, got {value!r}")
        return bool(value)
    if isinstance(default, (int, float)):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"device constant {key!r} expects a number, got {value!r}") from None
        return int(v) if isinstance(default, int) and v.is_integer() else v
    return value


def load_constants(overrides: dict | None = None) -> dict:
    """The GAP9 constants of ``gap9.yaml``, with ``overrides`` applied (unknown keys are an error)."""
    with open(CONSTANTS_FILE) as fh:
        defaults = yaml.safe_load(fh)  # the documented values: their sign sets each key's range
    consts = dict(defaults)
    for key, value in (overrides or {}).items():
        if key not in consts:
            close = difflib.get_close_matches(str(key), list(consts), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown device constant {key!r}; {hint}valid keys are {sorted(consts)}")
        consts[key] = _coerce(key, value, consts[key])
    for key, value in consts.items():
        _check_range(key, value, defaults[key])
    return consts


def _check_range(key: str, value, default) -> None:
    """Every numeric constant is finite; > 0 unless its documented default is 0 (then >= 0).

    A rate, a frequency or a budget of 0 divides by zero and a negative power or energy is
    silently nonsense, so both are refused naming the key.
    """
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return
    if not math.isfinite(value):
        raise ValueError(f"device constant {key!r} must be a finite number, got {value!r}")
    if default == 0 and value < 0:
        raise ValueError(f"device constant {key!r} must be >= 0, got {value!r}")
    if default != 0 and value <= 0:
        raise ValueError(f"device constant {key!r} must be > 0, got {value!r}")
