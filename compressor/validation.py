"""One validator per kind of argument: each raises ValueError naming the value and what is allowed.

A value is echoed through `short_repr`, so a pasted megabyte (or a list nested a thousand deep) gives a
one-line message, never a wall of text or a RecursionError.
"""
from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Iterable
from typing import Any

REPR_LIMIT = 80  # characters of a value shown in an error message
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, REPR_LIMIT, REPR_LIMIT, 6, 4


def short_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """repr(value) cut to `limit` characters (and to a few levels of nesting), for error messages."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return `value` if it is one of `allowed` (same type too: True is not 1, 2.0 is not 2), else raise naming both."""
    allowed = tuple(allowed)
    if not any(type(value) is type(a) and value == a for a in allowed):
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={short_repr(value)} is not allowed; choose one of {options}")
    return value


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    """Return `value` as a float in [low, high] ((low, high] with low_open), else raise; NaN and ±inf never pass.

    Any real number is accepted (1, 1.0, Fraction(1, 2), numpy floats) and returned as a plain float, so
    one value has one spelling: 0.5 and 1/2 give the same float, -0.0 becomes 0.0.
    """
    allowed = f"{'above ' if low_open else ''}{low:g}{' up' if low_open else ''} to {high:g}"
    if not _is_real(value):
        raise ValueError(f"{name}={short_repr(value)} must be a number; allowed: {allowed}")
    number = float(value) + 0.0
    if not math.isfinite(number):
        raise ValueError(f"{name}={short_repr(value)} must be a finite number; allowed: {allowed}")
    if not (low < number if low_open else low <= number) or number > high:
        raise ValueError(f"{name}={short_repr(value)} is out of range; allowed: {allowed}")
    return number


def check_fraction(name: str, value: Any, low: float, high: float) -> float:
    """Return `value` as a float in the closed range [low, high], else raise."""
    if not _is_real(value):
        raise ValueError(f"{name}={short_repr(value)} must be a number in [{low}, {high}]")
    number = float(value) + 0.0
    if not low <= number <= high:  # NaN fails every comparison
        raise ValueError(f"{name}={short_repr(value)} is out of range; allowed: {low} to {high}")
    return number


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Return `value` as an int in [low, high] (high=None: no upper bound), else raise.

    Whole numbers only: a bool (true is not 1) and a float (3.0 epochs) are refused, numpy integers accepted.
    """
    upper = "" if high is None else f" to {high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={short_repr(value)} must be a whole number from {low}{upper}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name}={short_repr(value)} is out of range; allowed: {low}{upper}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """Return `value` if it is a bool, else raise (no truthiness guessing)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={short_repr(value)} must be true or false")
    return value


def check_positive(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number above 0 (a learning rate, a temperature), else raise."""
    if not _is_real(value):
        raise ValueError(f"{name}={short_repr(value)} must be a number above 0")
    if not 0 < float(value) < float("inf"):
        raise ValueError(f"{name}={short_repr(value)} is out of range; allowed: a finite number above 0")
    return float(value)
