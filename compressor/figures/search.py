"""Search figures: the measured trials and their Pareto front after a chosen generation.

Input is `compressor.search.trials_frame` (one row per complete trial with its generation, quality, bytes,
effective MACs, feasibility and recipe). Replaying generations means drawing `front_info(frame, g)` for
g = 0, 1, ...: the front can only move outwards. `*_info` builds plain data, `_plot_*` only draws it.
"""
from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go

from compressor.figures.style import BASELINE, FRONT, SERIES, styled
from compressor.search import front


COST_AXIS = {"bytes": "exported file, bytes (lower is better)",
             "latency_ms": "deployed latency, ms (lower is better)"}


class FrontInfo(NamedTuple):
    generation: int
    tried: pd.DataFrame  # every complete trial up to the generation
    front: pd.DataFrame  # its feasible non-dominated trials (quality, cost), cheapest first
    baseline_quality: float
    metric: str
    cost: str = "bytes"  # the x axis: a column of COST_AXIS


def front_info(frame: pd.DataFrame, generation: int | None = None, cost: str = "bytes") -> FrontInfo:
    generation = int(frame["generation"].max()) if generation is None else generation
    tried = frame[frame["generation"] <= generation]
    found = front(frame, ("quality", cost), generation).sort_values(cost).reset_index(drop=True)
    return FrontInfo(generation, tried, found, float(frame["baseline_quality"].iloc[0]), str(frame["metric"].iloc[0]),
                     cost)


def search_front(frame: pd.DataFrame, generation: int | None = None, cost: str = "bytes") -> go.Figure:
    """Quality vs `cost` (exported size, or deployed latency) of every trial up to `generation`, the front as a
    staircase."""
    return _plot_front(front_info(frame, generation, cost))


def _plot_front(info: FrontInfo) -> go.Figure:
    fig = go.Figure()
    for feasible, name, color in ((True, "feasible trial", SERIES[0]), (False, "violates a constraint", BASELINE)):
        rows = info.tried[info.tried["feasible"] == feasible]
        if len(rows):
            fig.add_trace(go.Scatter(x=rows[info.cost], y=rows["quality"], mode="markers", name=name,
                                     marker={"color": color, "size": 7, "opacity": 0.6},
                                     customdata=rows[["number", "generation", "policy"]].to_numpy(),
                                     hovertemplate="trial %{customdata[0]} (generation %{customdata[1]})<br>"
                                                   f"%{{customdata[2]}}<br>%{{x:,}} {'B' if info.cost == 'bytes' else 'ms'}"
                                                   " · %{y:.2%}<extra></extra>"))
    if len(info.front):
        fig.add_trace(go.Scatter(x=info.front[info.cost], y=info.front["quality"], mode="lines+markers",
                                 line={"shape": "vh", "color": FRONT, "width": 3}, marker={"size": 10},
                                 name=f"Pareto front ({len(info.front)})"))
    fig.add_hline(y=info.baseline_quality, line={"dash": "dot", "color": BASELINE},
                  annotation_text="baseline", annotation_position="bottom right")
    fig.update_xaxes(type="log", **({"dtick": "D2", "tickformat": "~s"} if info.cost == "bytes" else {}))
    fig.update_yaxes(tickformat=".0%")
    return styled(fig, f"Search after generation {info.generation}: {len(info.tried)} trials",
                  x=COST_AXIS[info.cost], y=f"{info.metric} (higher is better)", height=440)
