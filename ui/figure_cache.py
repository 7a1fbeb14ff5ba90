"""Figures shared by every session: each is built once per input and then handed out read-only.

Building a Plotly `go.Figure` validates every property in pure Python: 10–110 ms a figure on this machine,
holding the GIL while the room's other sessions wait. A room moving sliders asks for the same few hundred
figures again and again, so a page names what a figure depends on (the model, the recipe JSON, the layer…)
and `shared` builds it only the first time anyone asks. The build runs in the asking page's script, so it may
compute what the figure needs (a sweep with its progress bar) and show errors; a later look-up is one
dictionary access under a lock (`st.cache_resource` would hash the key and replay the build's elements).
Showing a figure never changes it; a page that wants to add traces takes `private_copy` first.

Showing one is not free either: `st.plotly_chart` turns the figure into plain data (`to_dict`: a deep copy that
re-encodes every array as base64) on every rerun, 40% of a Pruning rerun's time before figures were `Frozen`,
which make that copy once and hand it out again.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import plotly.graph_objects as go

from ui.owned import Gone, on_forget

MAX_FIGURES = 512  # tens of KB each: the slider stops of a few pages × models × layers
_figures: OrderedDict[tuple[Hashable, ...], object] = OrderedDict()  # least recently used first
_lock = threading.Lock()  # sessions run in their own threads
Built = TypeVar("Built")  # a figure, or a figure with the facts its captions need


class Frozen(go.Figure):
    """A figure nobody changes once it is shared: its plain data (what `st.plotly_chart` sends) is made once.

    The dict `to_dict` returns is the same object every time; callers read it (Streamlit serializes it to JSON)
    and never change it, as nobody changes the figure. `private_copy` gives a figure that may be changed.
    """

    _plain: dict | None = None

    def to_dict(self) -> dict:
        if self._plain is None:  # two sessions may both build it: the same data, either copy will do
            self._plain = super().to_dict()
        return self._plain


def _frozen(built: Built) -> Built:
    """`built`, its figures made `Frozen` in place (copying one would validate it again: tens of milliseconds): the
    value itself if a figure, or the figures in a tuple of a figure and the facts its captions need; other values as
    they are. Only for what a build just made, which nobody else holds yet."""
    for value in built if isinstance(built, tuple) else (built,):
        if type(value) is go.Figure:
            value.__class__ = Frozen
    return built


def shared(key: tuple[Hashable, ...], build: Callable[[], Built]) -> Built:
    """The figure `build()` draws, built once for every session. `key` must name everything it depends on
    (start it with the figure's name, e.g. ("prune_sweep", model, recipe_json)). Read it, never change it."""
    with _lock:
        figure = _figures.get(key)
        if figure is not None:
            _figures.move_to_end(key)
            return figure
    figure = _frozen(build())  # outside the lock: two sessions may build the same figure once each, nobody waits
    with _lock:
        _figures[key] = figure
        while len(_figures) > MAX_FIGURES:
            _figures.popitem(last=False)
    return figure


def moved(figure: go.Figure, trace: str, x: float, y: float) -> go.Figure:
    """A shared figure with its trace named `trace` (a one-point marker, e.g. "current") moved to (x, y).

    For a curve that stays the same while a slider moves the marker along it: the curve is built (and validated)
    once, each position is a copy of its plain data (which a `Frozen` figure keeps) with two numbers changed, made
    into a figure without validating again (about a millisecond, where building it anew takes tens of milliseconds
    and the sweep behind it is looked up again). A copy: the shared figure is not changed. Share the result too
    (under a key that names the position), so a setting seen before costs nothing.
    """
    data = copy.deepcopy(figure.to_dict())
    markers = [t for t in data["data"] if t.get("name") == trace]
    if len(markers) != 1:
        raise ValueError(f"the figure has {len(markers)} traces named {trace!r}; expected one")
    markers[0]["x"], markers[0]["y"] = [x], [y]
    return go.Figure(data, _validate=False)  # validated when it was built; only two numbers changed


def private_copy(figure: go.Figure) -> go.Figure:
    """A copy this session may add traces to (the shared one stays as it was)."""
    return go.Figure(figure)


def clear() -> None:
    """Forget every figure (tests)."""
    with _lock:
        _figures.clear()


def forget(gone: Gone) -> None:
    """Drop the figures whose key names a model `gone` says is gone (at any depth of the key: grids nest tuples)."""
    with _lock:
        for key in [key for key in _figures if _names(key, gone)]:
            del _figures[key]


def _names(key: object, gone: Gone) -> bool:
    return any(_names(part, gone) for part in key) if isinstance(key, tuple) else gone(key)


on_forget(forget)
