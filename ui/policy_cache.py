"""Measures of per-layer policies for the Sensitivity and Search pages, cached per server.

One cached unit per recipe (model name + recipe JSON), shared by every session and by both pages: a sensitivity
probe or a search trial that anyone has measured before costs a cache look-up. The page's `Evaluator` adds a
session-level dict on top (the core's own cache), so a replay after Stop knows which probes it already has.
"""
from __future__ import annotations

from dataclasses import asdict

import streamlit as st

import compressor as cz
from compressor.policy import Evaluator, Int8Deployment, Measures, report_measures
from ui import cache, points
from ui.owned import forgettable


@forgettable(st.cache_data(max_entries=8192, show_spinner=False))
def measures(name: str, recipe_json: str) -> dict:
    """Quality, exported bytes and effective MACs of one recipe (no latency timing)."""
    s = cache.sample(name)
    return asdict(report_measures(s.model, s.data, cz.Recipe.from_json(recipe_json)))


@st.cache_resource(max_entries=4, show_spinner="Exporting the model to ONNX once for this server…")
def deployment(name: str) -> Int8Deployment:
    """The model's ONNX Runtime deployment (fp32 graph exported once, re-quantized per policy), one per server."""
    s = cache.sample(name)
    return Int8Deployment(s.model, s.data)


def evaluator(name: str, session_cache: dict | None = None, deployed: bool = False) -> Evaluator:
    """The core's Evaluator for a sample, measuring through the server-wide cache; `deployed`: every policy deployed
    on ONNX Runtime (int8-deployed layers as dynamic int8, latency timed), remembered in `session_cache` only (its
    latency is this moment's)."""
    s = cache.sample(name)
    session_cache = session_cache if session_cache is not None else {}
    if deployed:
        return Evaluator(s.model, s.data, measure_deployed=deployment(name), cache=session_cache)
    return Evaluator(s.model, s.data, measure=lambda recipe: Measures(**measures(name, cache.recipe_key(recipe))),
                     cache=session_cache)


def record_point(name: str, recipe_json: str, page: str, label: str) -> None:
    """Make a recipe a Trade-offs point (its report untimed: a search measures hundreds of recipes)."""
    points.record(name, recipe_json, cache.report(name, recipe_json, timed=False), page=page, label=label)


def apply_recipe(recipe_json: str) -> None:
    """Make `recipe_json` the current recipe of the Pipeline page (and so of Export)."""
    from ui import pipeline_editor

    pipeline_editor.set_recipe(cz.Recipe.from_json(recipe_json))
