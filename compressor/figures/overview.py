"""Figures of a model's anatomy: where its parameters and computation live."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from compressor.figures.style import ACCENT, COMPRESSED, styled


def layer_share(layers: Sequence[dict[str, Any]]) -> go.Figure:
    """Parameters and MACs per layer as grouped bars (rows of a report's per-layer table)."""
    rows = [row for row in layers if row["params"] or row["macs"]]
    names = [row["name"] for row in rows]
    fig = go.Figure(
        [
            go.Bar(name="parameters", x=names, y=[row["params"] for row in rows], marker_color=ACCENT),
            go.Bar(name="MACs per example", x=names, y=[row["macs"] for row in rows], marker_color=COMPRESSED),
        ]
    )
    fig.update_layout(barmode="group")
    return styled(fig, "Where the parameters and the computation are", "layer", "count")
