"""Figures shared by every session: each is built once per input and then handed out read-only.

Building a Plotly `go.Figure` validates every property in pure Python: 10–110 ms a figure on this machine,
holding the GIL while the room's other sessions wait. A room moving sliders asks for the same few hundred
figures again and again, so a page names what a figure depends on (the model, the recipe JSON, the layer…)
and `shared` builds it only the first time anyone asks. Streamlit still copies the figure into its message
(`to_dict`, about 1 ms), so the cached object itself is never changed by showing it; a page that wants to add
traces to one takes `private_copy` first.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable

import plotly.graph_objects as go
import streamlit as st

MAX_FIGURES = 512  # tens of KB each: the slider stops of a few pages × models × layers


@st.cache_resource(max_entries=MAX_FIGURES, show_spinner=False)
def _built(key: tuple[Hashable, ...], _build: Callable[[], go.Figure]) -> go.Figure:
    return _build()


def shared(key: tuple[Hashable, ...], build: Callable[[], go.Figure]) -> go.Figure:
    """The figure `build()` draws, built once for every session. `key` must name everything it depends on
    (start it with the figure's name, e.g. ("prune_sweep", model, recipe_json)). Read it, never change it."""
    return _built(key, build)


def private_copy(figure: go.Figure) -> go.Figure:
    """A copy this session may add traces to (the shared one stays as it was)."""
    return go.Figure(figure)
