"""One validator per kind of argument: each raises ValueError naming the value and what is allowed."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return `value` if it is one of `allowed`, else raise naming both."""
    allowed = tuple(allowed)
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {options}")
    return value


def check_fraction(name: str, value: Any, low: float, high: float) -> float:
    """Return `value` as a float in the closed range [low, high], else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} must be a number in [{low}, {high}]")
    if not low <= float(value) <= high:
        raise ValueError(f"{name}={value!r} is out of range; allowed: {low} to {high}")
    return float(value)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Return `value` if it is an int in [low, high] (high=None: no upper bound), else raise."""
    upper = "" if high is None else f" to {high}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}={value!r} must be a whole number from {low}{upper}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name}={value!r} is out of range; allowed: {low}{upper}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return `value` if it is a bool, else raise (no truthiness guessing)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be true or false")
    return value


def check_positive(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number above 0 (a learning rate, a temperature), else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} must be a number above 0")
    if not 0 < float(value) < float("inf"):
        raise ValueError(f"{name}={value!r} is out of range; allowed: a finite number above 0")
    return float(value)
