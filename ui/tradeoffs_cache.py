"""The Trade-offs page's quick grid: a small, latency-timed set of configurations, recorded as session points.

A page opened first (say from a shared deep link) has no points to plot; the quick grid gives it some, and it is
timed, because the latency axis only teaches something when latency is measured.

Each configuration is evaluated through `ui.cache.report` (cached per model + recipe, shared with every page and
session), one at a time, so the progress bar is driven from outside the cached call: an element updated from
inside an `st.cache_data` function is replayed on a cache hit, and replaying onto a bar created outside the
function raises `CacheReplayClosureError`.
"""
from __future__ import annotations

import streamlit as st

import compressor as cz
from ui import cache, points
from ui.session import POINTS, display_name

GRID_PAGE = "Trade-offs"  # the `page` of the grid's points
GRID_AMOUNTS = (0.5, 0.8, 0.9)  # unstructured pruning (one global threshold): fraction of weights set to zero
GRID_BITS = (8, 4, 2)  # then quantized to this many bits
GRID_CHANNELS = (0.25, 0.5, 0.75)  # structured pruning: fraction of neurons/channels removed (the ones that speed up)


def quick_grid() -> dict[str, cz.Recipe]:
    """Zeros × bits (smaller files, same latency) plus structured pruning (smaller layers, faster)."""
    grid = {
        f"{amount:.0%} zeros + {bits}-bit": cz.Recipe((
            cz.Prune(amount=amount, scope="global"), cz.Quantize(bits=bits, granularity="channel"),
        ))
        for amount in GRID_AMOUNTS
        for bits in GRID_BITS
    }
    grid |= {f"{amount:.0%} channels removed": cz.Recipe((cz.Prune(amount=amount, structured=True),))
             for amount in GRID_CHANNELS}
    return grid


def grid_recorded(name: str) -> bool:
    """True when every configuration of the quick grid is already a point of this model."""
    recorded = st.session_state.get(POINTS, {})
    return all((name, cache.recipe_key(recipe)) in recorded for recipe in quick_grid().values())


def add_quick_grid(name: str) -> None:
    """Evaluate (latency timed) and record every grid configuration, with a progress bar; cached ones are instant."""
    grid = quick_grid()
    message = f"Evaluating and timing {len(grid)} configurations of {display_name(name)}"
    bar = st.progress(0.0, text=message)
    try:
        for i, (label, recipe) in enumerate(grid.items()):
            recipe_json = cache.recipe_key(recipe)
            points.record(name, recipe_json, cache.report(name, recipe_json, timed=True), GRID_PAGE, label)
            bar.progress((i + 1) / len(grid), text=f"{message} ({label})")
    finally:
        bar.empty()
