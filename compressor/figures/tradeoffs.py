"""Trade-off figures: every evaluated configuration as a point, with its Pareto front.

Input is a table with one row per configuration, as `compressor.sweeps.sweep` and the dashboard's session points
produce: columns `label`, `accuracy`, `compressed_bytes`, `latency_ms`, `baseline_latency_ms`, `recipe` (JSON) and
optionally `page` (which page recorded it; it colours the points). A row whose recipe has no steps is the baseline
(drawn as a star).

Latency is plotted relative to the baseline, latency_ms / baseline_latency_ms (= 1 / speedup): each configuration is
timed interleaved with the uncompressed model, so the ratio holds while the machine's load drifts between
measurements (thirty workshop sessions on one server), where raw milliseconds taken minutes apart do not compare.

A configuration is on the Pareto front when no other is at least as good in every objective and better in one
(`compressor.sweeps.pareto_front`). In 2-D the front of the two objectives on the axes is drawn as a staircase: the
boundary of what the measured points make attainable. As in Optuna's `_pareto_front.py`, each figure is two
calls: `*_info(...)` computes plain, testable data, `_plot_*` only draws it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from compressor.figures.distillation import describe_training
from compressor.figures.style import BASELINE, FRONT, SERIES, styled
from compressor.recipe import Recipe
from compressor.sweeps import pareto_front


class Axis(NamedTuple):
    """One objective: its column, which way is better, and how to show it."""

    column: str
    sense: str  # "max" or "min": better is higher or lower
    title: str
    log: bool  # logarithmic axis (sizes span orders of magnitude)
    tickformat: str  # d3 format for ticks


AXES: dict[str, Axis] = {
    "accuracy": Axis("accuracy", "max", "accuracy (higher is better)", False, ".0%"),
    "size": Axis("compressed_bytes", "min", "exported file, bytes (lower is better)", True, "~s"),
    "latency": Axis("latency_ratio", "min", "latency, × the baseline's (lower is better)", False, ".2f"),
}
LOG_TICKS = "D2"  # log axes: ticks at 1, 2 and 5 times the powers of ten
VIEWS: dict[str, tuple[str, str]] = {  # title -> (x axis, y axis): "y vs x"
    "Accuracy vs size": ("size", "accuracy"),
    "Accuracy vs latency": ("latency", "accuracy"),
    "Size vs latency": ("latency", "size"),
}


# ---- recipes in words ---------------------------------------------------------------------------------------


def describe_recipe(recipe_json: str) -> str:
    """A recipe in a few words, as its steps describe themselves (`Recipe.describe`).

    A point of the Distillation page holds a trained student's record instead of a recipe: 'KD student …'.
    """
    student = describe_training(recipe_json)
    return student if student is not None else Recipe.from_json(recipe_json).describe()


def recipe_lines(recipe_json: str) -> str:
    """The recipe JSON with one step per line (readable in a hover box); a student's record as it is."""
    if describe_training(recipe_json) is not None:
        return recipe_json
    steps = Recipe.from_json(recipe_json).to_dict()["steps"]
    if not steps:
        return '{"steps": []}'
    return '{"steps": [<br>  ' + ",<br>  ".join(json.dumps(step) for step in steps) + "<br>]}"


def is_baseline(recipe_json: str) -> bool:
    return describe_training(recipe_json) is None and not Recipe.from_json(recipe_json).steps


def hover_text(row: pd.Series | dict[str, Any]) -> str:
    """What a point says on hover: its label, measured numbers, the recipe in words and as JSON."""
    latency, base = row.get("latency_ms"), row.get("baseline_latency_ms")
    timed = "latency not timed"
    if latency is not None and pd.notna(latency):
        timed = f"{latency:.3f} ms ({latency / base:.2f}× the baseline's)"
    page = f" · {row['page']}" if row.get("page") else ""
    return (
        f"<b>{row['label']}</b>{page}<br>"
        f"accuracy {row['accuracy']:.1%} · {int(row['compressed_bytes']):,} bytes · {timed}<br>"
        f"{describe_recipe(row['recipe'])}<br>"
        f"<span style='font-family:monospace;font-size:11px'>{recipe_lines(row['recipe'])}</span>"
    )


# ---- objectives -----------------------------------------------------------------------------------------------


def with_latency_ratio(points: pd.DataFrame) -> pd.DataFrame:
    """The table with `latency_ratio` = latency_ms / baseline_latency_ms (NaN where latency was not timed)."""
    if not {"latency_ms", "baseline_latency_ms"} <= set(points.columns):
        return points.assign(latency_ratio=float("nan"))
    latency = pd.to_numeric(points["latency_ms"], errors="coerce")
    return points.assign(latency_ratio=latency / pd.to_numeric(points["baseline_latency_ms"], errors="coerce"))


def front_3d(points: pd.DataFrame) -> pd.Series:
    """True for rows on the front of all three objectives (rows without latency are never on it)."""
    axes = [AXES["size"], AXES["latency"], AXES["accuracy"]]
    timed = with_latency_ratio(points).dropna(subset=[a.column for a in axes])
    on_front = pareto_front(timed, {a.column: a.sense for a in axes})
    return on_front.reindex(points.index, fill_value=False).astype(bool)


# ---- 2-D: two objectives --------------------------------------------------------------------------------------


class ScatterInfo(NamedTuple):
    """Everything a 2-D trade-off figure draws (positions refer to the rows kept, in table order)."""

    x_axis: Axis
    y_axis: Axis
    x: list[float]
    y: list[float]
    groups: list[str]  # the page (or "points") of each kept row
    paged: bool  # whether groups are pages
    hover: list[str]
    baseline: list[int]  # positions of baseline rows
    front: list[int]  # positions on the 2-objective Pareto front, sorted by x
    front_shape: str  # plotly line_shape of the staircase through the front
    skipped: int  # rows without a value on an axis (e.g. latency not timed)


def scatter_info(points: pd.DataFrame, x: str, y: str) -> ScatterInfo:
    """Plain data of a 2-D view: rows with both values, their Pareto front of (x, y), the baseline."""
    x_axis, y_axis = AXES[x], AXES[y]
    kept = with_latency_ratio(points).dropna(subset=[x_axis.column, y_axis.column]).reset_index(drop=True)
    on_front = pareto_front(kept, {x_axis.column: x_axis.sense, y_axis.column: y_axis.sense})
    front = sorted(kept.index[on_front], key=lambda i: (kept.at[i, x_axis.column], kept.at[i, y_axis.column]))
    return ScatterInfo(
        x_axis=x_axis,
        y_axis=y_axis,
        x=kept[x_axis.column].astype(float).tolist(),
        y=kept[y_axis.column].astype(float).tolist(),
        groups=[str(g) for g in kept["page"]] if "page" in kept else ["points"] * len(kept),
        paged="page" in kept,
        hover=[hover_text(row) for _, row in kept.iterrows()],
        baseline=[i for i in kept.index if is_baseline(kept.at[i, "recipe"])],
        front=[int(i) for i in front],
        # Sorted by x, the best attainable y holds until the next front point: for a lower-is-better x the step
        # comes after the horizontal run ("hv"), for a higher-is-better x before it ("vh").
        front_shape="hv" if x_axis.sense == "min" else "vh",
        skipped=len(points) - len(kept),
    )


def _group_colors(groups: Sequence[str]) -> dict[str, str]:
    """One colour per group, never the front's (the front must stand out)."""
    palette = [color for color in SERIES if color != FRONT]
    return {group: palette[i % len(palette)] for i, group in enumerate(sorted(set(groups)))}


AXIS_PAD = 0.06  # of the data's span, on each side: no point sits on the plot's edge


def axis_range(values: Sequence[float], axis: Axis, pad: float = AXIS_PAD) -> list[float] | None:
    """The axis range showing every value with room around it (log10 units on a log axis); accuracy is clamped
    to [0, 100%], where a point at the limit still shows (markers are not clipped). None: nothing to show."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v) and (v > 0 or not axis.log)], float)
    if finite.size == 0:
        return None
    data = np.log10(finite) if axis.log else finite
    low, high = float(data.min()), float(data.max())
    least = 1.0 if axis.log else 0.1 if axis.column == "accuracy" else max(abs(high) * 0.1, 0.01)  # ticks need room
    if high - low < least:  # one point, or a few close ones: widen about their middle
        middle = (low + high) / 2
        low, high = middle - least / 2, middle + least / 2
    span = high - low
    low, high = low - pad * span, high + pad * span
    if axis.column == "accuracy":
        low, high = max(low, 0.0), min(high, 1.0)
    return [low, high]


def _plot_scatter(info: ScatterInfo, title: str, height: int) -> go.Figure:
    fig = go.Figure()
    others = [i for i in range(len(info.x)) if i not in info.baseline]
    colors = _group_colors([info.groups[i] for i in others])
    for group, color in colors.items():
        rows = [i for i in others if info.groups[i] == group]
        fig.add_trace(go.Scatter(
            x=[info.x[i] for i in rows], y=[info.y[i] for i in rows], mode="markers", name=group,
            marker={"size": 10, "color": color, "opacity": 0.85}, hovertext=[info.hover[i] for i in rows],
            hoverinfo="text",
        ))
    fig.add_trace(go.Scatter(
        x=[info.x[i] for i in info.front], y=[info.y[i] for i in info.front], mode="lines+markers",
        name="Pareto front", line={"color": FRONT, "width": 2.5, "shape": info.front_shape},
        marker={"size": 17, "symbol": "circle-open", "color": FRONT, "line": {"width": 3}}, hoverinfo="skip",
    ))
    fig.update_traces(cliponaxis=False)  # a point at 100% accuracy, the axis' end, is drawn whole
    if info.baseline:
        fig.add_trace(go.Scatter(
            x=[info.x[i] for i in info.baseline], y=[info.y[i] for i in info.baseline], mode="markers",
            name="baseline", marker={"size": 16, "symbol": "star", "color": BASELINE, "line": {"width": 1}},
            hovertext=[info.hover[i] for i in info.baseline], hoverinfo="text",
        ))
    styled(fig, title, info.x_axis.title, info.y_axis.title, height=height)
    for axis, values, update in ((info.x_axis, info.x, fig.update_xaxes), (info.y_axis, info.y, fig.update_yaxes)):
        update(type="log" if axis.log else "linear", tickformat=axis.tickformat, dtick=LOG_TICKS if axis.log else None,
               range=axis_range(values, axis))
    fig.update_layout(hoverlabel={"align": "left"}, legend_title_text="points by page:" if info.paged else None)
    return fig


def tradeoff_scatter(points: pd.DataFrame, x: str, y: str, title: str | None = None, height: int = 460) -> go.Figure:
    """Points of two objectives (keys of AXES: "accuracy", "size", "latency") with their Pareto front."""
    title = title or f"{y.capitalize()} vs {x}"
    return _plot_scatter(scatter_info(points, x, y), title, height)


# ---- 3-D: all three objectives ---------------------------------------------------------------------------------


class Scatter3dInfo(NamedTuple):
    """Everything the 3-D view draws: x = size, y = latency, z = accuracy."""

    x: list[float]
    y: list[float]
    z: list[float]
    hover: list[str]
    baseline: list[int]
    front: list[int]  # positions on the 3-objective front (accuracy max, bytes min, latency min)
    skipped: int


def scatter3d_info(points: pd.DataFrame) -> Scatter3dInfo:
    axes = [AXES["size"], AXES["latency"], AXES["accuracy"]]
    kept = with_latency_ratio(points).dropna(subset=[a.column for a in axes]).reset_index(drop=True)
    on_front = pareto_front(kept, {a.column: a.sense for a in axes})
    x, y, z = (kept[a.column].astype(float).tolist() for a in axes)
    return Scatter3dInfo(
        x=x, y=y, z=z,
        hover=[hover_text(row) for _, row in kept.iterrows()],
        baseline=[i for i in kept.index if is_baseline(kept.at[i, "recipe"])],
        front=[int(i) for i in kept.index[on_front]],
        skipped=len(points) - len(kept),
    )


def _plot_3d(info: Scatter3dInfo, title: str, height: int) -> go.Figure:
    fig = go.Figure()
    kinds = (
        ("dominated", [i for i in range(len(info.x)) if i not in info.front and i not in info.baseline],
         {"size": 5, "color": SERIES[0], "opacity": 0.6}),
        ("Pareto front", [i for i in info.front if i not in info.baseline], {"size": 8, "color": FRONT}),
        ("baseline", info.baseline, {"size": 8, "color": BASELINE, "symbol": "diamond"}),
    )
    for name, rows, marker in kinds:
        fig.add_trace(go.Scatter3d(
            x=[info.x[i] for i in rows], y=[info.y[i] for i in rows], z=[info.z[i] for i in rows], mode="markers",
            name=name, marker=marker, hovertext=[info.hover[i] for i in rows], hoverinfo="text",
        ))
    size, latency, accuracy = AXES["size"], AXES["latency"], AXES["accuracy"]
    styled(fig, title, height=height)
    fig.update_layout(
        scene={
            "xaxis": {"title": {"text": "file bytes"}, "type": "log", "tickformat": size.tickformat, "dtick": LOG_TICKS},
            "yaxis": {"title": {"text": "latency × baseline"}, "tickformat": latency.tickformat},
            "zaxis": {"title": {"text": "accuracy"}, "tickformat": accuracy.tickformat,
                      "range": axis_range(info.z, accuracy)},
            "aspectmode": "cube",
            "camera": {"eye": {"x": 1.6, "y": -1.6, "z": 0.8}},  # small files in front, accuracy up
        },
        margin={"l": 0, "r": 0, "t": 60, "b": 0},
        hoverlabel={"align": "left"},
    )
    return fig


def tradeoff_3d(
    points: pd.DataFrame, title: str = "Accuracy, size and latency together", height: int = 560
) -> go.Figure:
    """All three objectives in one rotatable view, the 3-objective Pareto front highlighted."""
    return _plot_3d(scatter3d_info(points), title, height)
