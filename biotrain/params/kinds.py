"""What a parameter's value may be: each kind checks a value and says, in words, what is allowed.

A kind knows nothing of other keys; relations between keys (fmin below fmax, a micro-batch that
divides the batch) are rules in ``checks.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Kind:
    """A value's type and range. ``allowed`` is the message's "allowed: ..." part."""

    allowed = "any value"
    python_type: type | tuple = object

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        """None if ``value`` is allowed, else what would be."""
        return None if self.ok(value) else self.allowed


@dataclass(frozen=True)
class Number(Kind):
    """A number (``integer``: an int) within bounds."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False
    integer: bool = False

    @property
    def allowed(self) -> str:
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive_min else '>='} {self.minimum}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum}")
        return f"{'an integer' if self.integer else 'a number'} {' and '.join(bounds)}".strip()

    def ok(self, value: Any) -> bool:
        if not (_is_int(value) if self.integer else _is_number(value)):
            return False
        if self.minimum is not None and not (value > self.minimum if self.exclusive_min else value >= self.minimum):
            return False
        return self.maximum is None or value <= self.maximum


def Int(minimum: int | None = None, maximum: int | None = None) -> Number:  # noqa: N802 - reads as a type
    return Number(minimum, maximum, integer=True)


def Positive() -> Number:  # noqa: N802
    return Number(0, exclusive_min=True)


Options = Iterable[Any] | Callable[[], Iterable[Any]]


def _options(options: Options) -> list:
    """Options may be given lazily (a function), when listing them needs an import."""
    return list(options() if callable(options) else options)


@dataclass(frozen=True)
class Choice(Kind):
    """One of a list of values."""

    options: Options

    @property
    def allowed(self) -> str:
        return f"one of {_options(self.options)}"

    def ok(self, value: Any) -> bool:
        return value in _options(self.options)


@dataclass(frozen=True)
class Subset(Kind):
    """A non-empty list of distinct values drawn from a list."""

    options: Options

    @property
    def allowed(self) -> str:
        return f"a non-empty list drawn from {_options(self.options)}"

    def problem(self, value: Any) -> str | None:
        options = _options(self.options)
        if not isinstance(value, list) or not value:
            return self.allowed
        bad = [v for v in value if v not in options]
        if bad:
            return f"a list drawn from {options} ({bad} unknown)"
        if len(set(map(str, value))) != len(value):
            return "a list without duplicates"
        return None


@dataclass(frozen=True)
class IntList(Kind):
    """A non-empty list of distinct integers >= ``minimum`` (seeds)."""

    minimum: int = 0

    @property
    def allowed(self) -> str:
        return f"a non-empty list of distinct integers >= {self.minimum}"

    def ok(self, value: Any) -> bool:
        return (isinstance(value, list) and bool(value) and all(_is_int(v) and v >= self.minimum for v in value)
                and len(set(value)) == len(value))


@dataclass(frozen=True)
class Names(Kind):
    """A non-empty list of names (channels, events)."""

    allowed = "a non-empty list of names"

    def ok(self, value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True)
class IdList(Kind):
    """A list of integer ids (subjects)."""

    allowed = "a list of subject ids"

    def ok(self, value: Any) -> bool:
        return isinstance(value, list) and all(_is_int(v) for v in value)


@dataclass(frozen=True)
class Text(Kind):
    """A non-empty string; ``no_slash``: usable as one folder name."""

    what: str = "a non-empty name"
    no_slash: bool = False

    @property
    def allowed(self) -> str:
        return self.what

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip()) and not (self.no_slash and "/" in value)


@dataclass(frozen=True)
class Mapping(Kind):
    """A mapping whose keys are checked elsewhere (constructor arguments, chip constants, a grid)."""

    what: str = "a mapping"

    @property
    def allowed(self) -> str:
        return self.what

    def ok(self, value: Any) -> bool:
        return isinstance(value, dict)
