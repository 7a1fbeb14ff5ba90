"""Cached calls into the core. Models are cached as shared resources (never mutated: techniques copy),
reports as data keyed on model name + recipe JSON, with bounded size (sweeps: ui/sweeps.py)."""
from __future__ import annotations

import streamlit as st
from torch import nn

import compressor as cz
from compressor.pipeline import RecipeLike, as_recipe


def recipe_key(recipe: RecipeLike) -> str:
    """The canonical JSON that identifies a recipe (a Recipe, a step or a list of steps) in caches."""
    return as_recipe(recipe).to_json(indent=None)


@st.cache_resource(show_spinner=False)
def sample(name: str) -> cz.Sample:
    return cz.load_sample(name)


@st.cache_resource(max_entries=64, show_spinner=False)
def stage(name: str, recipe_json: str, _before: nn.Module) -> nn.Module:
    """The model of a recipe, made by its last step from `_before`, the model of the steps before it (not part of
    the cache key: the recipe JSON names it)."""
    s = sample(name)
    recipe = cz.Recipe.from_json(recipe_json)
    if not recipe.steps:
        return cz.compress(s.model, recipe, s.data)
    return cz.compress(_before, recipe.steps[-1], s.data)  # a new model carrying the whole recipe


def compressed(name: str, recipe_json: str) -> nn.Module:
    """The compressed model (shared between sessions: read it, never change it).

    Built stage by stage, each stage's model cached under its recipe prefix, so every prefix of a recipe is
    computed once: the Pipeline page's stages are these same models. A loop, not recursion: a recipe of
    hundreds of steps must not reach Python's recursion limit.
    """
    return stage_models(name, recipe_json)[-1]


def stage_models(name: str, recipe_json: str) -> list[nn.Module]:
    """The model after each stage of a recipe: [no step (losslessly packed), after step 1, ..., after step n]."""
    steps = cz.Recipe.from_json(recipe_json).steps
    models = [stage(name, recipe_key(cz.Recipe()), None)]
    for i in range(1, len(steps) + 1):
        models.append(stage(name, recipe_key(steps[:i]), models[-1]))
    return models


@st.cache_data(max_entries=512, show_spinner=False)
def report(name: str, recipe_json: str, timed: bool = True) -> cz.Report:
    """The measured report of a recipe; latency is timed once per configuration and then reused."""
    s = sample(name)
    recipe = cz.Recipe.from_json(recipe_json)
    latency = cz.LatencyConfig() if timed else None
    return cz.evaluate(compressed(name, recipe_json), s.data, baseline=s.model, latency=latency, recipe=recipe.to_dict())
