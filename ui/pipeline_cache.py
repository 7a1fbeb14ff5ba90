"""The Pipeline page's cached measurement: size and accuracy after each stage of a recipe."""
from __future__ import annotations

import pandas as pd
import streamlit as st

import compressor as cz
from ui import cache, disk_cache


@st.cache_data(max_entries=128, show_spinner=False)
def stages(name: str, recipe_json: str) -> pd.DataFrame:
    """One row per stage: the fp32 model (4 bytes per parameter), the same model exported losslessly, then the
    model after each step. Sizes are exported-file bytes (the stage's recipe prefix in the header, so the last
    row equals the full recipe's report); latency is not timed here."""
    def measure() -> list[dict]:
        s = cache.sample(name)
        recipe = cz.Recipe.from_json(recipe_json)
        reference = cache.reference(name)  # embedding models: the uncompressed embeddings, computed once per server
        packed = cz.evaluate(s.model, s.data, latency=None, recipe=cz.Recipe().to_dict(), reference=reference)
        rows = [
            _row("fp32", "uncompressed, 4 bytes per parameter", packed, packed.baseline_dense_bytes),
            _row("packed", "exported losslessly (no step yet)", packed, packed.compressed_bytes),
        ]
        models = cache.stage_models(name, recipe_json)  # shared with the page's report: trained once
        for i in range(1, len(recipe.steps) + 1):
            prefix = cz.Recipe(recipe.steps[:i])
            report = cz.evaluate(models[i], s.data, baseline=s.model, latency=None, recipe=prefix.to_dict(),
                                 reference=reference)
            rows.append(_row(f"{i} · {recipe.steps[i - 1].type}", recipe.steps[i - 1].describe(), report,
                             report.compressed_bytes))
        return rows

    return pd.DataFrame(disk_cache.fetch("pipeline_stages", (name, recipe_json), measure))


def _row(stage: str, step: str, report: cz.Report, size: int) -> dict:
    return {"stage": stage, "step": step, "bytes": size, "accuracy": report.accuracy, "params": report.params,
            "nonzero_params": report.nonzero_params, "macs": report.macs}
