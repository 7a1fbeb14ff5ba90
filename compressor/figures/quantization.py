"""Figures of quantization: the grid the weights snap to, the error it makes, and what each bit buys.

As in `figures/pruning.py`, each builder draws a small NamedTuple made by a `*_info` function from plain
data (numpy arrays, {layer: dB} mappings, a sweep table), so tests check the data without rendering.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from compressor.figures.pruning import histogram_bins
from compressor.figures.style import ACCENT, BASELINE, COMPRESSED, drawn, styled

DB_PER_BIT = 20 * math.log10(2)  # ≈ 6.02 dB: one more bit halves a uniform grid's step


# ---------------------------------------------------------------- weights and their grid


class LevelsHistogram(NamedTuple):
    """A weight histogram with the values the quantized weights can take."""

    centers: np.ndarray  # (bins,)
    width: float
    counts: np.ndarray  # (bins,) original weights per bin
    levels: np.ndarray  # (L,) sorted grid values (uniform grid or k-means codebook)


def levels_histogram_info(weights: np.ndarray, levels: np.ndarray, bins: int | None = None) -> LevelsHistogram:
    """Counts of the original weights on bins spanning them, and the sorted levels."""
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    counts, edges = np.histogram(weights, bins=bins or histogram_bins(weights.size))
    return LevelsHistogram((edges[:-1] + edges[1:]) / 2, float(edges[1] - edges[0]), counts,
                           np.sort(np.asarray(levels, dtype=np.float64).reshape(-1)))


def levels_histogram(weights: np.ndarray, levels: np.ndarray, title: str, bins: int | None = None) -> go.Figure:
    """Original weights as bars, each representable value as a vertical line: every weight snaps to its nearest line."""
    info = levels_histogram_info(weights, levels, bins)
    top = float(info.counts.max()) * 1.05 if info.counts.size else 1.0
    xs = [v for level in info.levels for v in (level, level, None)]  # one trace, segments split by None
    ys = [v for _ in info.levels for v in (0.0, top, None)]
    traces = [
        {"type": "bar", "name": "original weights", "x": info.centers, "y": info.counts, "width": info.width,
         "marker": {"color": BASELINE}, "opacity": 0.6, "hovertemplate": "%{x:.3f}: %{y} weights<extra></extra>"},
        {"type": "scatter", "name": f"{len(info.levels)} levels", "x": xs, "y": ys, "mode": "lines", "hoverinfo": "x",
         "line": {"color": COMPRESSED, "width": 1.5 if len(info.levels) <= 32 else 0.6}},
    ]
    return drawn(traces, title, "weight value", "count", bargap=0)


# ---------------------------------------------------------------- error per layer


class LayerError(NamedTuple):
    """SQNR per quantized layer; inf (exact) is drawn as a labelled bar at the largest finite height."""

    names: list[str]
    db: list[float]  # as measured (may be inf)
    heights: list[float]  # bar heights: inf and -inf clipped to the finite range
    labels: list[str]


def layer_error_info(errors: Mapping[str, float]) -> LayerError:
    """From {layer: SQNR in dB} as `compressor.quantization.quantization_error` returns it."""
    names, db = list(errors), [float(v) for v in errors.values()]
    finite = [v for v in db if math.isfinite(v)]
    high, low = (max(finite), min(min(finite), 0.0)) if finite else (1.0, 0.0)
    heights = [v if math.isfinite(v) else (high if v > 0 else low) for v in db]
    labels = [f"{v:.1f} dB" if math.isfinite(v) else ("exact" if v > 0 else "all zero") for v in db]
    return LayerError(names, db, heights, labels)


def layer_error(errors: Mapping[str, float]) -> go.Figure:
    """Signal-to-quantization-noise ratio of each layer: higher is better, each extra uniform bit adds ≈ 6 dB."""
    info = layer_error_info(errors)
    bars = {"type": "bar", "x": info.names, "y": info.heights, "text": info.labels, "textposition": "outside",
            "marker": {"color": ACCENT}, "cliponaxis": False, "hovertemplate": "%{x}: %{text}<extra></extra>"}
    return drawn([bars], f"Error per layer: SQNR (+{DB_PER_BIT:.1f} dB per bit)", "layer", "SQNR (dB), higher is better")


# ---------------------------------------------------------------- what each bit buys


class BitsSweep(NamedTuple):
    """Accuracy and file size against bit width, with the current configuration."""

    bits: list[int]
    accuracy: list[float]
    size_kb: list[float]  # exported file, kilobytes
    current: tuple[int, float, float]  # (bits, accuracy, size in kB)
    baseline: tuple[float, float]  # (accuracy, fp32 size in kB)
    larger_than_next: tuple[int, ...] = ()  # bit widths whose file is larger than the next width's


BYTE_ALIGNED_NOTE = (
    "{bits}-bit file > {next}-bit: the file entropy-codes its codes byte by byte (Huffman); "
    "8-bit codes fill whole bytes, so their skewed distribution compresses, "
    "while {bits}-bit codes straddle bytes and barely do"
)


def bits_sweep_info(
    table: pd.DataFrame, current_bits: int, current_accuracy: float, current_bytes: int,
    baseline_accuracy: float, baseline_bytes: int,
) -> BitsSweep:
    """From a sweep table with columns bits, accuracy, compressed_bytes."""
    table = table.sort_values("bits", kind="stable")
    bits, size = table["bits"].astype(int).tolist(), table["compressed_bytes"].tolist()
    larger = tuple(b for b, s, s_next in zip(bits, size, size[1:]) if s > s_next)
    return BitsSweep(
        bits, table["accuracy"].tolist(), [s / 1000 for s in size],
        (current_bits, current_accuracy, current_bytes / 1000), (baseline_accuracy, baseline_bytes / 1000), larger,
    )


def bits_sweep(
    table: pd.DataFrame, current_bits: int, current_accuracy: float, current_bytes: int,
    baseline_accuracy: float, baseline_bytes: int,
) -> go.Figure:
    """Accuracy vs bits (left axis) and exported size vs bits (right axis); fp32 baseline dotted; current marked."""
    info = bits_sweep_info(table, current_bits, current_accuracy, current_bytes, baseline_accuracy, baseline_bytes)
    fig = go.Figure([
        go.Scatter(name="accuracy", x=info.bits, y=info.accuracy, mode="lines+markers", line={"color": ACCENT, "width": 3},
                   hovertemplate="%{x} bits: %{y:.1%}<extra></extra>"),
        go.Scatter(name="size (kB)", x=info.bits, y=info.size_kb, yaxis="y2", mode="lines+markers",
                   line={"color": BASELINE, "dash": "dot"}, hovertemplate="%{x} bits: %{y:.1f} kB<extra></extra>"),
        go.Scatter(name="current", x=[info.current[0]], y=[info.current[1]], mode="markers",
                   marker={"color": COMPRESSED, "size": 15, "symbol": "star", "line": {"color": "black", "width": 1}},
                   hovertemplate="current: %{x} bits, %{y:.1%}<extra></extra>"),
    ])
    fig.add_hline(y=info.baseline[0], line={"color": ACCENT, "dash": "dash", "width": 1},
                  annotation_text=f"fp32 {info.baseline[0]:.1%}", annotation_position="bottom left")
    for bits in info.larger_than_next:  # more bits, smaller file: say why where it happens
        i = info.bits.index(bits)
        fig.add_annotation(x=bits, y=info.size_kb[i], yref="y2", text=f"{bits}-bit file > {info.bits[i + 1]}-bit:<br>whole bytes compress better",
                           hovertext=BYTE_ALIGNED_NOTE.format(bits=bits, next=info.bits[i + 1]), showarrow=True,
                           arrowhead=0, ax=-40, ay=-28, font={"size": 11, "color": BASELINE})
    fig.update_xaxes(tickvals=list(range(1, 9)), range=[0.7, 8.3])
    styled(fig, "Accuracy and size vs bits", "bits per weight")
    top = max(info.size_kb, default=1.0) * 1.15
    fig.update_layout(
        yaxis={"title": "accuracy", "tickformat": ".0%"},
        yaxis2={"title": f"exported size, kB (fp32: {info.baseline[1]:.0f})", "overlaying": "y", "side": "right",
                "range": [0, top], "tickmode": "auto", "nticks": 6, "showgrid": False},
    )
    return fig
