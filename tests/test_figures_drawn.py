"""Figures drawn from plain data (`style.drawn`) skip Plotly's validation when they are made; here Plotly validates
each one, on inputs that reach every branch: a misspelt property or a value of the wrong kind fails the suite."""
from __future__ import annotations

import inspect
import json
import math
import pkgutil
from collections.abc import Callable
from importlib import import_module

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import compressor.figures
from compressor.figures.low_rank import singular_value_spectra
from compressor.figures.pipeline import size_waterfall, stage_accuracy
from compressor.figures.pruning import layer_removal, mask_heatmap, weight_histogram
from compressor.figures.quantization import layer_error, levels_histogram
from compressor.figures.style import drawn, styled

RNG = np.random.default_rng(0)
WEIGHT = RNG.normal(size=(6, 4, 3, 3))
PRUNED = np.where(np.abs(WEIGHT) < 0.5, 0.0, WEIGHT)
SHRUNK = PRUNED[[0, 2, 5]][:, [1, 3]]  # three output channels and two input channels left
ROWS_BEFORE = [{"name": "conv", "params": 216, "nonzero": 216, "macs": 9}, {"name": "fc", "params": 40, "nonzero": 40, "macs": 4}]
ROWS_AFTER = [{"name": "conv", "params": 54, "nonzero": 40, "macs": 3}, {"name": "fc", "params": 40, "nonzero": 10, "macs": 4}]
STAGES = pd.DataFrame({"stage": ["fp32", "packed", "1 · prune", "2 · quantize"], "bytes": [200_000, 176_000, 22_000, 24_000],
                       "accuracy": [0.98, 0.98, 0.77, 0.76]})

CASES: dict[str, list[Callable[[], go.Figure]]] = {
    "layer_removal": [lambda: layer_removal(ROWS_BEFORE, ROWS_AFTER)],
    "weight_histogram": [lambda: weight_histogram(WEIGHT, PRUNED, "conv"), lambda: weight_histogram(WEIGHT, SHRUNK, "conv"),
                         lambda: weight_histogram(WEIGHT, WEIGHT, "conv")],
    "mask_heatmap": [lambda: mask_heatmap(WEIGHT, PRUNED, "conv"), lambda: mask_heatmap(WEIGHT, SHRUNK, "conv"),
                     lambda: mask_heatmap(WEIGHT[:, :, 0, 0], RNG.normal(size=(2, 2)), "fc")],  # positions unknown
    "levels_histogram": [lambda: levels_histogram(WEIGHT, np.linspace(-2, 2, 16), "4-bit"),
                         lambda: levels_histogram(WEIGHT, np.linspace(-2, 2, 256), "8-bit")],
    "layer_error": [lambda: layer_error({"conv": 24.5, "fc": math.inf, "head": -math.inf})],
    "size_waterfall": [lambda: size_waterfall(STAGES), lambda: size_waterfall(STAGES.iloc[:1])],
    "stage_accuracy": [lambda: stage_accuracy(STAGES, "fidelity")],
    "singular_value_spectra": [lambda: singular_value_spectra({"fc1": np.array([4.0, 2.0, 1.0, 1e-18]), "fc2": np.array([3.0, 0.0])},
                                                              {"fc1": 2, "fc2": 2})],
}


def plain(fig: go.Figure) -> dict:
    """What the browser gets: the figure's JSON, read back."""
    return json.loads(fig.to_json())


@pytest.mark.parametrize("build", [b for builds in CASES.values() for b in builds],
                         ids=[f"{name}-{i}" for name, builds in CASES.items() for i in range(len(builds))])
def test_plotly_validates_each_drawn_figure_and_changes_nothing(build):
    fig = build()
    checked = go.Figure(fig.to_dict())  # validating: an unknown property or a bad value raises here
    assert plain(checked) == plain(fig)


def test_every_builder_that_draws_from_plain_data_is_validated_here():
    drawing = set()
    for module in pkgutil.iter_modules(compressor.figures.__path__):
        for name, function in inspect.getmembers(import_module(f"compressor.figures.{module.name}"), inspect.isfunction):
            if function.__module__.startswith("compressor.figures.") and "drawn(" in inspect.getsource(function):
                drawing.add(name)
    drawing.discard("drawn")
    assert drawing, "the scan found no builder: it looks in the wrong place"
    assert drawing <= set(CASES) | {"_spectra_plot"}, f"add cases for {sorted(drawing - set(CASES) - {'_spectra_plot'})}"


def test_drawn_layout_merges_like_update_layout():
    fig = drawn([{"type": "bar", "x": [1], "y": [2]}], "Title", "x label", "y label", height=300, barmode="stack",
                yaxis={"type": "log"}, margin={"t": 10})
    reference = styled(go.Figure(go.Bar(x=[1], y=[2])), "Title", "x label", "y label", height=300)
    reference.update_layout(barmode="stack", margin={"t": 10}).update_yaxes(type="log")
    assert plain(fig) == plain(reference)
