"""One look for every figure: readable on a projector, the same colours for the same meaning.

Two ways to draw, one look. `styled` dresses a figure built with Plotly's validating classes (`go.Scatter`,
`update_layout`); `drawn` makes a figure from Plotly's plain data, the dicts its JSON is made of, without
validating it. Validation is pure Python and costs 10–70 ms a figure on this machine, while the plain data takes
about one; the figures a slider page draws anew at every stop (a room of thirty asks for hundreds of them) are
drawn, the rest styled. Plotly validates every drawn figure in the tests instead (tests/test_figures_drawn.py),
where a misspelt property fails the suite rather than a room.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

pio.templates.default = "plotly_white"  # set once: assigning a template per figure costs ~15 ms

BASELINE = "#7f7f7f"  # the uncompressed model
COMPRESSED = "#e4572e"  # the current configuration
ACCENT = "#2e86ab"  # a second series
FRONT = "#17a398"  # Pareto-optimal points
SERIES = ("#2e86ab", "#e4572e", "#f3a712", "#17a398", "#6c4f9e", "#a8c686")  # one per criterion/layer


def look(title: str, x: str | None = None, y: str | None = None, height: int = 380) -> dict[str, Any]:
    """The shared layout as plain data: white template, large type, legend on top, titled axes."""
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0.0, "xanchor": "left", "y": 0.98, "yanchor": "top"},
        "font": {"size": 14},
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 90, "b": 50},  # room for the title line and, below it, the legend
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0.0},
    }
    for axis, text in (("xaxis", x), ("yaxis", y)):
        if text is not None:
            layout[axis] = {"title": {"text": text}}
    return layout


def styled(fig: go.Figure, title: str, x: str | None = None, y: str | None = None, height: int = 380) -> go.Figure:
    """Apply the shared layout (`look`) to a figure built with Plotly's classes."""
    return fig.update_layout(**look(title, x, y, height))


def drawn(traces: Iterable[dict[str, Any]], title: str, x: str | None = None, y: str | None = None,
          height: int = 380, **layout: Any) -> go.Figure:
    """A figure in the shared look from Plotly's plain data, not validated: each trace a dict whose `type` names it
    ("bar", "scatter", …), `layout` the figure's own layout keys. A dict given for a key the look sets too (an
    axis) is merged into it, one level deep."""
    merged = look(title, x, y, height)
    for key, value in layout.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return go.Figure({"data": list(traces), "layout": merged}, _validate=False)
