"""Sweeps with a progress bar, cached point by point.

`ui.cache.run_sweep` passes a progress callback into an `st.cache_data` function; on a cache hit Streamlit
replays the bar updates recorded inside it onto a block that no longer exists (CacheReplayClosureError on
every rerun after the first). Here the cached unit is one configuration, so the bar lives outside any
cached function, a sweep that shares points with an earlier one (same amount, another scope) reuses them,
and a fully cached sweep only costs cache look-ups.
"""
from __future__ import annotations

import time
from collections.abc import Mapping

import pandas as pd
import streamlit as st

import compressor as cz
from compressor.sweeps import sweep
from ui import disk_cache
from ui.cache import is_embedding, recipe_key, reference, sample
from ui.owned import forgettable

CACHE_HIT_S = 0.02  # a point that took longer was computed, not read from the cache: show the bar from then on


@forgettable(st.cache_data(max_entries=4096, show_spinner=False))
def sweep_row(name: str, recipe_json: str) -> dict:
    """One configuration's headline numbers (no latency timing), as a row of `compressor.sweeps.sweep`."""
    def measure() -> dict:
        s = sample(name)
        return sweep(s.model, s.data, {"": cz.Recipe.from_json(recipe_json)},
                     reference=reference(name)).iloc[0].drop("label").to_dict()

    return disk_cache.fetch("sweep_row", (name, recipe_json), measure)


def run_sweep(name: str, recipes: Mapping[str, cz.Recipe], message: str) -> pd.DataFrame:
    """One row per labelled recipe (columns as `compressor.sweeps.sweep`), with st.progress while it computes.

    The bar appears at the first point that is not cached, so a cached sweep does not flash one.
    """
    slot = st.empty()
    rows, shown = [], False
    try:
        for i, (label, recipe) in enumerate(recipes.items()):
            start = time.perf_counter()
            rows.append({"label": label, **sweep_row(name, recipe_key(recipe))})
            shown = shown or time.perf_counter() - start > CACHE_HIT_S
            if shown:
                slot.progress((i + 1) / len(recipes), text=f"{message} ({label})")
    finally:
        slot.empty()
    return pd.DataFrame(rows)


def sweep_wanted(name: str, count: int, key: str) -> bool:
    """Whether to run a page's sweep now: always for the small samples; on request for an embedding model.

    A minilm-l6 point takes seconds (compress, embed the held-out sentences, write the file), so its sweep
    waits for a toggle that says how long it will take; computed points are cached for every session.
    """
    if not is_embedding(name):
        return True
    return st.toggle(f"Compute the sweep ({count} configurations of seconds each the first time, then cached "
                     "for everyone)", key=key,
                     help="Each point compresses the 22.7M-parameter model, embeds the held-out sentences and "
                          "writes its file; a progress bar shows how far it got.")
