"""One look for every figure: readable on a projector, the same colours for the same meaning."""
from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

pio.templates.default = "plotly_white"  # set once: assigning a template per figure costs ~15 ms

BASELINE = "#7f7f7f"  # the uncompressed model
COMPRESSED = "#e4572e"  # the current configuration
ACCENT = "#2e86ab"  # a second series
FRONT = "#17a398"  # Pareto-optimal points
SERIES = ("#2e86ab", "#e4572e", "#f3a712", "#17a398", "#6c4f9e", "#a8c686")  # one per criterion/layer


def styled(fig: go.Figure, title: str, x: str | None = None, y: str | None = None, height: int = 380) -> go.Figure:
    """Apply the shared layout: white template, large type, legend on top, titled axes."""
    layout = dict(
        title={"text": title, "x": 0.0, "xanchor": "left", "y": 0.98, "yanchor": "top"},
        font={"size": 14},
        height=height,
        margin={"l": 60, "r": 20, "t": 90, "b": 50},  # room for the title line and, below it, the legend
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0.0},
    )
    if x is not None:
        layout["xaxis_title_text"] = x
    if y is not None:
        layout["yaxis_title_text"] = y
    return fig.update_layout(**layout)
