"""Sensitivity and search figures: the data they draw, then a smoke render."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from compressor.figures.search import front_info, search_front
from compressor.figures.sensitivity import curves_info, heatmap_info, sensitivity_curves, sensitivity_heatmap

TABLE = pd.DataFrame([
    {"layer": "fc1", "kind": "prune", "setting": 0.9, "quality": 0.90, "drop": 0.09},
    {"layer": "fc1", "kind": "prune", "setting": 0.5, "quality": 0.99, "drop": 0.0},
    {"layer": "fc1", "kind": "quantize", "setting": 2, "quality": 0.95, "drop": 0.04},
    {"layer": "fc1", "kind": "quantize", "setting": 8, "quality": 0.99, "drop": 0.0},
    {"layer": "fc2", "kind": "prune", "setting": 0.5, "quality": 0.98, "drop": 0.01},
])
TABLE["setting"] = pd.Series([0.9, 0.5, 2, 8, 0.5], dtype=object)


def test_curves_run_from_least_to_most_compression():
    curves = {(c.layer, c.kind): c for c in curves_info(TABLE)}
    assert curves["fc1", "prune"].settings == (0.5, 0.9) and curves["fc1", "prune"].quality == (0.99, 0.90)
    assert curves["fc1", "quantize"].settings == (8, 2)
    assert ("fc2", "quantize") not in curves
    assert isinstance(sensitivity_curves(TABLE, 0.99), go.Figure)


def test_heatmap_has_one_cell_per_layer_and_setting():
    info = heatmap_info(TABLE)
    assert info.layers == ("fc1", "fc2")
    assert info.columns == ("prune 50%", "prune 90%", "8-bit", "2-bit")
    assert info.drop == ((0.0, 0.09, 0.0, 0.04), (0.01, None, None, None))
    assert isinstance(sensitivity_heatmap(TABLE), go.Figure)


def test_front_replays_generations():
    frame = pd.DataFrame([
        {"number": 0, "generation": 0, "quality": 0.9, "baseline_quality": 0.99, "bytes": 100, "feasible": True},
        {"number": 1, "generation": 0, "quality": 0.8, "baseline_quality": 0.99, "bytes": 200, "feasible": True},
        {"number": 2, "generation": 1, "quality": 0.95, "baseline_quality": 0.99, "bytes": 90, "feasible": True},
        {"number": 3, "generation": 1, "quality": 0.99, "baseline_quality": 0.99, "bytes": 50, "feasible": False},
    ]).assign(metric="accuracy", policy="p", recipe=lambda f: f["number"].astype(str))
    assert front_info(frame, 0).front["number"].tolist() == [0]
    later = front_info(frame, 1)
    assert later.front["number"].tolist() == [2] and len(later.tried) == 4  # the infeasible one is drawn, not on the front
    assert isinstance(search_front(frame, 1), go.Figure)


def test_front_against_deployed_latency():
    frame = pd.DataFrame([  # the same file size (a deployed graph), different latencies
        {"number": 0, "generation": 0, "quality": 0.99, "bytes": 100, "latency_ms": 9.0},
        {"number": 1, "generation": 0, "quality": 0.97, "bytes": 100, "latency_ms": 4.0},
        {"number": 2, "generation": 0, "quality": 0.96, "bytes": 100, "latency_ms": 5.0},
    ]).assign(baseline_quality=1.0, feasible=True, metric="mean cosine", policy=lambda f: f["number"].astype(str),
              recipe="{}")
    info = front_info(frame, cost="latency_ms")
    assert info.front["number"].tolist() == [1, 0]  # fastest first; trial 2 is slower and worse than trial 1
    assert front_info(frame).front["number"].tolist() == [0]  # by bytes, only the best quality
    assert search_front(frame, cost="latency_ms").layout.xaxis.title.text.startswith("deployed latency")
