"""Figures of a compression pipeline: what each stage of a recipe does to the file size and the accuracy.

A recipe is a composition, f_n ∘ … ∘ f_1: each stage starts from the model the stage before it left.
The waterfall shows the exported size after each stage as a step down (or up) from the one before,
so it is plain which step pays for the size: in Deep Compression, pruning removes weights and
k-means quantization shrinks the bits of those left.
"""
from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go

from compressor.figures.style import ACCENT, BASELINE, COMPRESSED, FRONT, drawn
from compressor.units import format_bytes


class Stage(NamedTuple):
    """The model after one stage of a recipe (the first stage is the uncompressed model)."""

    label: str  # unique per stage, e.g. "2 · quantize 5-bit k-means"
    bytes: int  # size of the model as stored after this stage
    accuracy: float  # on held-out data, as a fraction


def stage_info(stages: pd.DataFrame) -> list[Stage]:
    """Validated stages from a table with columns stage, bytes, accuracy (one row per stage, in order)."""
    missing = {"stage", "bytes", "accuracy"} - set(stages.columns)
    if missing:
        raise ValueError(f"stages need the column(s) {', '.join(sorted(missing))}")
    if stages.empty:
        raise ValueError("stages need at least one row: the uncompressed model")
    if stages["stage"].duplicated().any():
        raise ValueError(f"stage labels must be unique, got {list(stages['stage'])}")
    return [Stage(str(s), int(b), float(a)) for s, b, a in stages[["stage", "bytes", "accuracy"]].itertuples(index=False)]


def size_waterfall(stages: pd.DataFrame) -> go.Figure:
    """The size after each stage as a waterfall: the first bar absolute, then one step per stage, then the total.

    Step i is bytes_i − bytes_{i−1}; the labels give the change and the factor bytes_{i−1} / bytes_i.
    """
    info = stage_info(stages)
    first, rest = info[0], info[1:]
    measure = ["absolute"] + ["relative"] * len(rest)
    x = [s.label for s in info]
    y = [first.bytes] + [after.bytes - before.bytes for before, after in zip(info, rest)]
    text = [format_bytes(first.bytes)] + [
        f"{'+' if after.bytes > before.bytes else '−'}{format_bytes(abs(after.bytes - before.bytes))} "
        f"(÷{before.bytes / after.bytes:.2g})" for before, after in zip(info, rest)
    ]
    if rest:
        measure.append("total")
        x.append("final file")
        y.append(0)  # ignored for a total bar: plotly draws the running sum
        text.append(format_bytes(info[-1].bytes))
    waterfall = {
        "type": "waterfall", "x": x, "y": y, "measure": measure, "text": text, "textposition": "outside",
        "decreasing": {"marker": {"color": FRONT}}, "increasing": {"marker": {"color": COMPRESSED}},
        "totals": {"marker": {"color": ACCENT}}, "connector": {"line": {"color": BASELINE, "dash": "dot"}},
        "hovertemplate": "%{x}<br>%{text}<extra></extra>",
    }
    return drawn([waterfall], "Size after each stage", None, "bytes", showlegend=False,
                 yaxis={"rangemode": "tozero", "separatethousands": True})


def stage_accuracy(stages: pd.DataFrame, metric: str = "accuracy") -> go.Figure:
    """Accuracy after each stage, with the uncompressed model's as a dashed line."""
    info = stage_info(stages)
    line = {
        "type": "scatter", "x": [s.label for s in info], "y": [s.accuracy for s in info], "mode": "lines+markers+text",
        "text": [f"{s.accuracy:.1%}" for s in info], "textposition": "top center",
        "line": {"color": COMPRESSED}, "marker": {"size": 10}, "name": metric,
        "hovertemplate": f"%{{x}}<br>{metric} %{{y:.1%}}<extra></extra>",
    }
    baseline = {"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": info[0].accuracy,
                "y1": info[0].accuracy, "line": {"color": BASELINE, "dash": "dash", "width": 1}}  # what add_hline draws
    low = min(s.accuracy for s in info)
    return drawn([line], f"{metric.capitalize()} after each stage", None, metric, showlegend=False, shapes=[baseline],
                 yaxis={"tickformat": ".0%", "range": [max(0.0, low - 0.1), 1.04]})
