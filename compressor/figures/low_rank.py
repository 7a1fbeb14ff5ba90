"""Figures of low-rank factorization: where a layer's singular values fall, where the cut is, what it costs.

A rank-r truncated SVD keeps σ_1 ≥ … ≥ σ_r and drops the rest; what it keeps is the energy
Σ_{i≤r} σ_i² / Σ_i σ_i², and what it loses is, by Eckart–Young, the Frobenius error √(Σ_{i>r} σ_i²).
The spectrum plot shows both at a glance: a spectrum that falls fast can be cut early.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from compressor.figures.style import BASELINE, COMPRESSED, SERIES, drawn, styled
from compressor.low_rank import energy_kept


NUMERICALLY_ZERO = 1e-6  # σ ≤ this × σ_max is rounding noise of fp32 weights (eps 1.2e-7), not a direction


class LayerSpectrum(NamedTuple):
    """One layer's singular values and the cut made in them."""

    name: str
    sigmas: np.ndarray  # (k,) descending, k = min(m, n)
    rank: int  # singular values kept, 1..k
    energy: float  # Σ_{i≤r} σ_i² / Σ σ_i²


class SweepPoint(NamedTuple):
    """A configuration placed on the accuracy-vs-parameters plane."""

    params: int
    accuracy: float
    label: str


# ---------------------------------------------------------------- singular-value spectra


def spectrum_info(spectra: Mapping[str, np.ndarray], ranks: Mapping[str, int]) -> list[LayerSpectrum]:
    """The spectra of the layers named in `ranks`, in the order of `spectra`, with the energy each cut keeps."""
    unknown = sorted(set(ranks) - set(spectra))
    if unknown:
        raise ValueError(f"ranks given for layer(s) {', '.join(unknown)} with no spectrum; known: {', '.join(spectra)}")
    info = []
    for name, sigmas in spectra.items():
        if name in ranks:
            sigmas = np.asarray(sigmas, dtype=np.float64)
            info.append(LayerSpectrum(name, sigmas, ranks[name], energy_kept(sigmas, ranks[name])))
    return info


def singular_value_spectra(spectra: Mapping[str, np.ndarray], ranks: Mapping[str, int]) -> go.Figure:
    """σ_i against i for each layer (log scale), kept values solid, dropped ones dotted, the cut marked.

    spectra: layer -> singular values, descending (e.g. `compressor.low_rank.singular_values(model)`);
    ranks: layer -> kept rank r (layers missing from `ranks` are not drawn).
    The legend, below the plot, names each layer's cut and the energy it keeps. Zero singular values (a log axis
    cannot show them) and numerically zero ones (≤ NUMERICALLY_ZERO·σ_max: e.g. inputs that are always zero) are
    left as gaps; the axis spans every other value, so no curve leaves the plot.
    """
    return _spectra_plot(spectrum_info(spectra, ranks))


def _spectra_plot(info: Sequence[LayerSpectrum]) -> go.Figure:
    traces = []
    for i, layer in enumerate(info):
        colour = SERIES[i % len(SERIES)]
        k, r = len(layer.sigmas), layer.rank
        index = np.arange(1, k + 1)
        sigmas = np.where(_shown(layer.sigmas), layer.sigmas, np.nan)
        kept_energy = np.cumsum(layer.sigmas**2) / max(float(np.sum(layer.sigmas**2)), np.finfo(float).tiny)
        hover = "σ<sub>%{x}</sub> = %{y:.3g}<br>energy kept up to here: %{customdata:.1%}<extra>" + layer.name + "</extra>"
        traces.append({
            "type": "scatter", "x": index[:r], "y": sigmas[:r], "customdata": kept_energy[:r], "mode": "lines+markers",
            "line": {"color": colour}, "name": f"{layer.name}: r = {r} of {k}, energy kept {layer.energy:.1%}",
            "legendgroup": layer.name, "hovertemplate": hover,
        })
        if r < k:  # the dropped tail, joined to the last kept value
            traces.append({
                "type": "scatter", "x": index[r - 1:], "y": sigmas[r - 1:], "customdata": kept_energy[r - 1:],
                "mode": "lines+markers", "line": {"color": colour, "dash": "dot"}, "marker": {"symbol": "circle-open"},
                "opacity": 0.6, "name": f"{layer.name}: dropped", "legendgroup": layer.name, "showlegend": False,
                "hovertemplate": hover,
            })
        traces.append({
            "type": "scatter", "x": [r], "y": [sigmas[r - 1]], "mode": "markers",
            "marker": {"color": colour, "size": 16, "symbol": "line-ns-open", "line": {"width": 3, "color": colour}},
            "name": f"{layer.name}: cut", "legendgroup": layer.name, "showlegend": False,
            "hovertemplate": f"cut after σ<sub>{r}</sub><br>energy kept {layer.energy:.1%}<extra>{layer.name}</extra>",
        })
    legend_rows = 22 * len(info)  # the legend goes below the plot, one row per layer: it covers no data
    log_range = _log_range(info)
    return drawn(traces, "Singular values per layer, cut at the kept rank", "index i", "σᵢ (log scale)",
                 height=420 + legend_rows, yaxis={"type": "log", **({"range": log_range} if log_range else {})},
                 legend={"orientation": "v", "yanchor": "top", "y": -0.2,  # under the x title (plot: 300 px)
                         "xanchor": "left", "x": 0.0},
                 margin={"t": 50, "b": 70 + legend_rows})


def _shown(sigmas: np.ndarray) -> np.ndarray:
    """Which singular values the log axis shows: positive and above numerical zero."""
    return sigmas > NUMERICALLY_ZERO * (sigmas.max() if sigmas.size else 0.0)


def _log_range(info: Sequence[LayerSpectrum]) -> list[float] | None:
    """log10 axis range spanning every drawn σ of every layer, with a little room above and below.

    Numerically zero directions (σ ~ 1e-15) are gaps, so they do not squash every spectrum into the top.
    """
    shown = np.concatenate([layer.sigmas[_shown(layer.sigmas)] for layer in info] or [np.zeros(0)])
    if shown.size == 0:
        return None
    low, top = np.log10(shown.min()), np.log10(shown.max())
    pad = max(0.05 * (top - low), 0.1)
    return [low - pad, top + pad]


# ---------------------------------------------------------------- accuracy against parameters


def accuracy_vs_params(
    points: pd.DataFrame,
    current: SweepPoint,
    baseline: SweepPoint,
    metric: str = "accuracy",
) -> go.Figure:
    """Sweep curves of accuracy against parameter count, one per series, with the current setting marked.

    points: columns series (e.g. "rank ratio"), label (e.g. "0.50"), params, accuracy — one row per setting;
    current: the configuration on screen; baseline: the uncompressed model, also drawn as a vertical line:
    points to its right store more parameters than the model they factorize.
    """
    missing = {"series", "label", "params", "accuracy"} - set(points.columns)
    if missing:
        raise ValueError(f"points need the column(s) {', '.join(sorted(missing))}")
    fig = go.Figure()
    for i, (series, rows) in enumerate(points.groupby("series", sort=False)):
        rows = rows.sort_values("params")
        fig.add_trace(go.Scatter(
            x=rows["params"], y=rows["accuracy"], text=rows["label"], mode="lines+markers", name=str(series),
            line={"color": SERIES[i % len(SERIES)]},
            hovertemplate=f"{series} %{{text}}<br>%{{x:,}} parameters<br>{metric} %{{y:.1%}}<extra></extra>",
        ))
    fig.add_vline(x=baseline.params, line={"color": BASELINE, "dash": "dash", "width": 1})
    fig.add_trace(go.Scatter(
        x=[baseline.params], y=[baseline.accuracy], mode="markers", name=baseline.label,
        marker={"color": BASELINE, "size": 12, "symbol": "diamond"},
        hovertemplate=f"{baseline.label}<br>%{{x:,}} parameters<br>{metric} %{{y:.1%}}<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=[current.params], y=[current.accuracy], mode="markers", name=current.label,
        marker={"color": COMPRESSED, "size": 18, "symbol": "star", "line": {"width": 1, "color": "white"}},
        hovertemplate=f"{current.label}<br>%{{x:,}} parameters<br>{metric} %{{y:.1%}}<extra></extra>",
    ))
    fig.update_yaxes(tickformat=".0%")
    fig.update_xaxes(separatethousands=True)
    return styled(fig, f"{metric.capitalize()} against parameters", "parameters (whole model)", metric)
