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


def _read() -> tuple[dict, str, dict]:
    """(shared constants, default program, {program: its constants}) as written in ``gap9.yaml``."""
    with open(CONSTANTS_FILE) as fh:
        raw = yaml.safe_load(fh)  # the documented values: their sign sets each key's range
    programs = raw.pop("programs")
    default = raw.pop("program")
    return raw, default, programs


def programs() -> tuple[str, ...]:
    """The costed programs of ``gap9.yaml`` (``paper-toolchain``, ``exported``)."""
    return tuple(_read()[2])


def default_program() -> str:
    """The program estimate_step, the CLI and the study cost when none is named."""
    return _read()[1]


def check_program(program: str) -> str:
    """``program`` itself, or one error naming the value and the valid choices."""
    names = programs()
    if program not in names:
        raise ValueError(f"unknown device program {program!r}; choose one of {list(names)}")
    return program


def load_constants(overrides: dict | None = None, program: str | None = None) -> dict:
    """The GAP9 constants of ``gap9.yaml`` for ``program`` (default: the file's ``program``): the
    shared keys plus that program's block, with ``overrides`` applied (unknown keys are an error).
    The result names its program under ``"program"``."""
    shared, default, blocks = _read()
    name = check_program(default if program is None else program)
    consts = {**shared, **blocks[name]}
    for key, value in (overrides or {}).items():
        if key == "program":
            raise ValueError("'program' is not a device constant: pick it with estimate_step(program=...), "
                             f"--program or device.program (one of {list(blocks)})")
        if key not in consts:
            close = difflib.get_close_matches(str(key), list(consts), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown device constant {key!r}; {hint}valid keys are {sorted(consts)}")
        consts[key] = _coerce(key, value, consts[key])
    validate(consts)
    consts["program"] = name
    return consts


MAX_CORES = 8  # BRIEF section 5: 8 compute cores (+1 orchestrating)
POSITIVE = ("power_train_mw", "freq_mhz", "voltage_v", "n_cores", "dma_bytes_per_cycle", "l3_bytes_per_cycle", "l1_budget_bytes",
            "l2_budget_bytes", "simd16_speedup_mac", "simd16_speedup_elementwise", "simd16_speedup_norm")


def validate(consts: dict) -> None:
    """Throughputs, budgets and the operating point must be > 0; costs and energies >= 0."""
    for key, v in consts.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v):
            raise ValueError(f"device constant {key!r} must be a finite number, got {v!r}")
        strict = key in POSITIVE or key.startswith("mac_per_cycle_")
        if (strict and v <= 0) or v < 0:
            raise ValueError(f"device constant {key!r} must be {'> 0' if strict else '>= 0'}, got {v!r}")
    if not consts["power_spread"] < 1:
        raise ValueError(f"device constant 'power_spread' must be a fraction below 1, got {consts['power_spread']!r}")
    if consts["power_leak_mw"] > consts["power_train_mw"]:
        raise ValueError("device constant 'power_leak_mw' must not exceed 'power_train_mw' "
                         f"({consts['power_leak_mw']!r} > {consts['power_train_mw']!r})")
    if int(consts["n_cores"]) != consts["n_cores"] or not 1 <= consts["n_cores"] <= MAX_CORES:
        raise ValueError(f"device constant 'n_cores' must be a whole number of cores from 1 to {MAX_CORES} "
                         f"(the GAP9 cluster's compute cores), got {consts['n_cores']!r}")
