"""Sensitivity figures: one curve per layer and technique, and a layer × setting heatmap of the quality drop.

Input is the table `compressor.sensitivity.sensitivity` returns (layer, kind, setting, quality, drop, bytes,
metric). As in Optuna's `_pareto_front.py`: `*_info` builds plain, testable data, `_plot_*` only draws it.
"""
from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from compressor.figures.style import SERIES, styled
from compressor.policy import FP32
from compressor.sensitivity import KINDS, setting_label

TITLES = {"prune": "pruned fraction", "quantize": "bits per weight", "low_rank": "rank ratio kept"}


class Curve(NamedTuple):
    layer: str
    kind: str
    settings: tuple  # x, in the order a layer is compressed more and more
    quality: tuple


def _order(kind: str, settings: pd.Series) -> list:
    """Less compression first: amounts up, bits down (fp32 first), rank ratios down."""
    values = list(dict.fromkeys(settings))
    if kind == "prune":
        return sorted(values)
    return sorted(values, key=lambda s: -(FP32 + 1) if isinstance(s, str) else -s)


def curves_info(table: pd.DataFrame) -> list[Curve]:
    curves = []
    for kind in KINDS:
        rows = table[table["kind"] == kind]
        for layer in dict.fromkeys(rows["layer"]):
            mine = rows[rows["layer"] == layer].set_index("setting")
            order = _order(kind, mine.index.to_series())
            curves.append(Curve(layer, kind, tuple(order), tuple(float(mine.loc[s, "quality"]) for s in order)))
    return curves


def sensitivity_curves(table: pd.DataFrame, baseline_quality: float, metric: str = "accuracy") -> go.Figure:
    """Quality when one layer alone is compressed, per technique (one panel each), one line per layer."""
    return _plot_curves(curves_info(table), baseline_quality, metric)


def _plot_curves(curves: list[Curve], baseline: float, metric: str) -> go.Figure:
    kinds = [k for k in KINDS if any(c.kind == k for c in curves)] or ["prune"]
    fig = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, subplot_titles=[TITLES[k] for k in kinds])
    layers = list(dict.fromkeys(c.layer for c in curves))
    for curve in curves:
        col = kinds.index(curve.kind) + 1
        color = SERIES[layers.index(curve.layer) % len(SERIES)]
        fig.add_trace(go.Scatter(x=[str(s) if curve.kind == "quantize" else s for s in curve.settings], y=curve.quality,
                                 mode="lines+markers", name=curve.layer, legendgroup=curve.layer,
                                 showlegend=col == 1, line={"color": color}), row=1, col=col)
    for col in range(1, len(kinds) + 1):
        fig.add_hline(y=baseline, line={"dash": "dot", "color": "#7f7f7f"}, row=1, col=col)
    fig.update_yaxes(tickformat=".0%", title_text=f"{metric} (one layer compressed)", row=1, col=1)
    if "quantize" in kinds:
        fig.update_xaxes(type="category", row=1, col=kinds.index("quantize") + 1)
    if "low_rank" in kinds:  # more compression to the right in every panel
        fig.update_xaxes(autorange="reversed", row=1, col=kinds.index("low_rank") + 1)
    fig = styled(fig, f"Per-layer sensitivity: {metric} when only that layer is compressed (dotted: baseline)",
                 height=440)
    return fig.update_layout(margin={"t": 120}, legend={"y": 1.14})


class Heatmap(NamedTuple):
    layers: tuple[str, ...]
    columns: tuple[str, ...]  # "prune 90%", "4-bit", "rank 0.25", ...
    drop: tuple[tuple[float | None, ...], ...]  # [layer][column], None where not measured


def heatmap_info(table: pd.DataFrame) -> Heatmap:
    columns = [(kind, s) for kind in KINDS for s in _order(kind, table.loc[table["kind"] == kind, "setting"])]
    layers = tuple(dict.fromkeys(table["layer"]))
    cells = {(r.layer, r.kind, r.setting): float(r.drop) for r in table.itertuples()}
    drop = tuple(tuple(cells.get((layer, kind, s)) for kind, s in columns) for layer in layers)
    return Heatmap(layers, tuple(setting_label(kind, s) for kind, s in columns), drop)


def sensitivity_heatmap(table: pd.DataFrame, metric: str = "accuracy") -> go.Figure:
    """Layers × settings, coloured by the quality drop when only that layer is compressed."""
    return _plot_heatmap(heatmap_info(table), metric)


def _plot_heatmap(info: Heatmap, metric: str) -> go.Figure:
    z = [[None if v is None else 100 * v for v in row] for row in info.drop]
    text = [["" if v is None else f"{v:.1f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=list(info.columns), y=list(info.layers), colorscale="Reds", zmin=0,
                               text=text, texttemplate="%{text}", colorbar={"title": {"text": "drop, pts"}},
                               hovertemplate="%{y} · %{x}: drop %{z:.2f} points<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return styled(fig, f"{metric} drop in points, one layer at a time", x="technique and setting", y="layer",
                  height=max(300, 120 + 40 * len(info.layers)))
