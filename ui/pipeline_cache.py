"""The Pipeline page's cached measurement: size and accuracy after each stage of a recipe."""
from __future__ import annotations

import pandas as pd
import streamlit as st

import compressor as cz
from ui import cache
from ui.owned import forgettable


@forgettable(st.cache_data(max_entries=128, show_spinner=False))
def stages(name: str, recipe_json: str) -> pd.DataFrame:
    """One row per stage: the fp32 model (4 bytes per parameter), the same model exported losslessly, then the
    model after each step. Sizes are exported-file bytes (the stage's recipe prefix in the header, so the last
    row equals the full recipe's report). Each row is the measured report of its recipe prefix (`cache.measured`,
    untimed), so stages shared by recipes, and the page's own report of the whole recipe, are measured once."""
    recipe = cz.Recipe.from_json(recipe_json)
    packed = cache.measured(name, cache.recipe_key(cz.Recipe()), timed=False)
    rows = [
        _row("fp32", "uncompressed, 4 bytes per parameter", packed, packed.baseline_dense_bytes),
        _row("packed", "exported losslessly (no step yet)", packed, packed.compressed_bytes),
    ]
    for i, step in enumerate(recipe.steps, start=1):
        last = i == len(recipe.steps)  # the whole recipe: the page's own (timed) report, accuracy and size alike
        report = cache.measured(name, recipe_json if last else cache.recipe_key(recipe.steps[:i]), timed=last)
        rows.append(_row(f"{i} · {step.type}", step.describe(), report, report.compressed_bytes))
    return pd.DataFrame(rows)


def _row(stage: str, step: str, report: cz.Report, size: int) -> dict:
    return {"stage": stage, "step": step, "bytes": size, "accuracy": report.accuracy, "params": report.params,
            "nonzero_params": report.nonzero_params, "macs": report.macs}
