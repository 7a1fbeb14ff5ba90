"""Cached calls into the core. Models are cached as shared resources (never mutated: techniques copy),
reports as data keyed on model name + recipe JSON, with bounded size (sweeps: ui/sweeps.py)."""
from __future__ import annotations

import streamlit as st
from torch import nn

import compressor as cz
from compressor import fidelity
from compressor.pipeline import RecipeLike, as_recipe


def recipe_key(recipe: RecipeLike) -> str:
    """The canonical JSON that identifies a recipe (a Recipe, a step or a list of steps) in caches."""
    return as_recipe(recipe).to_json(indent=None)


@st.cache_resource(show_spinner="Loading the model…")
def sample(name: str) -> cz.Sample:
    return cz.load_sample(name)


def is_embedding(name: str) -> bool:
    """True for a sample whose outputs are embeddings (scored by fidelity, not accuracy), e.g. minilm-l6."""
    return sample(name).data.kind == "embedding"


@st.cache_resource(show_spinner="Embedding the held-out sentences with the uncompressed model (once per server)…")
def reference(name: str) -> fidelity.Reference | None:
    """The uncompressed model's embeddings and topic centroids, computed once per server; None for classifiers."""
    s = sample(name)
    return fidelity.reference(s.model, s.data) if s.data.kind == "embedding" else None


@st.cache_resource(max_entries=64, show_spinner="Compressing the model…")  # shown after 0.5 s only
def compressed(name: str, recipe_json: str) -> nn.Module:
    """The compressed model (shared between sessions: read it, never change it).

    Built by applying the last step to the cached model of the recipe without it, so every prefix of a
    recipe is computed once: the Pipeline page's stages are these same models.
    """
    s = sample(name)
    recipe = cz.Recipe.from_json(recipe_json)
    if not recipe.steps:
        return cz.compress(s.model, recipe, s.data)
    before = compressed(name, recipe_key(recipe.steps[:-1]))
    return cz.compress(before, recipe.steps[-1], s.data)  # a new model carrying the whole recipe


@st.cache_data(max_entries=512, show_spinner="Measuring: fidelity or accuracy, file size, latency…")
def report(name: str, recipe_json: str, timed: bool = True) -> cz.Report:
    """The measured report of a recipe; latency is timed once per configuration and then reused."""
    s = sample(name)
    recipe = cz.Recipe.from_json(recipe_json)
    latency = cz.LatencyConfig() if timed else None
    return cz.evaluate(compressed(name, recipe_json), s.data, baseline=s.model, latency=latency, recipe=recipe.to_dict(),
                       reference=reference(name))
