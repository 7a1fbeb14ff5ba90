"""Figures of pruning: what was removed, where, and what it cost in accuracy.

Each public builder is two steps, as in Optuna's plots: a `*_info` function turns plain data (weights as
numpy arrays, rows of a report's per-layer table, a sweep table) into a small NamedTuple that tests can
check exactly, and the builder draws it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from compressor.figures.style import ACCENT, BASELINE, COMPRESSED, SERIES, drawn, styled

KEPT, ZEROED, REMOVED_ROW, REMOVED_COLUMN = 0, 1, 2, 3  # cell states of a mask heatmap
CELL_NAMES = {
    KEPT: "kept",
    ZEROED: "pruned (zero)",
    REMOVED_ROW: "removed output channel",
    REMOVED_COLUMN: "removed input (upstream channel)",
}
CELL_COLOURS = {KEPT: ACCENT, ZEROED: "#e8e8e8", REMOVED_ROW: COMPRESSED, REMOVED_COLUMN: "#f3a712"}
CRITERION_COLOURS = {"magnitude": SERIES[0], "taylor": SERIES[2], "random": SERIES[4]}  # red stays for "current"


def histogram_bins(n: int) -> int:
    """Bins for a histogram of n values: about 2·√n, between 10 and 60 (a 54-weight conv and a 30k-weight layer both read)."""
    return int(np.clip(round(2 * np.sqrt(n)), 10, 60))


def as_matrix(weight: np.ndarray) -> np.ndarray:
    """A weight as one row per output channel: Linear (out, in) stays, Conv (out, in, k, k) -> (out, in·k·k)."""
    weight = np.asarray(weight)
    return weight.reshape(weight.shape[0], -1) if weight.ndim > 1 else weight.reshape(-1, 1)


# ---------------------------------------------------------------- per-layer removal


class LayerRemoval(NamedTuple):
    """How much of each layer's parameters pruning took, as fractions of the layer's original count."""

    names: list[str]
    zeroed: list[float]  # still stored and computed, but exactly zero (unstructured)
    removed: list[float]  # gone with their channel: the layer really shrank (structured)


def layer_removal_info(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> LayerRemoval:
    """From two per-layer tables (report.layers of the baseline and of the pruned model), weighted layers only."""
    after_by_name = {row["name"]: row for row in after}
    names, zeroed, removed = [], [], []
    for row in before:
        if not row["macs"] or row["name"] not in after_by_name:
            continue
        new = after_by_name[row["name"]]
        names.append(row["name"])
        zeroed.append((new["params"] - new["nonzero"]) / row["params"])
        removed.append((row["params"] - new["params"]) / row["params"])
    return LayerRemoval(names, zeroed, removed)


def layer_removal(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Stacked bars per layer: the share of its parameters zeroed and the share removed with their channels."""
    info = layer_removal_info(before, after)
    bars = [
        {"type": "bar", "name": "zeroed (still computed)", "x": info.names, "y": info.zeroed, "marker": {"color": BASELINE},
         "text": [f"{z:.0%}" if z else "" for z in info.zeroed], "textposition": "inside"},
        {"type": "bar", "name": "removed (layer shrank)", "x": info.names, "y": info.removed, "marker": {"color": COMPRESSED},
         "text": [f"{r:.0%}" if r else "" for r in info.removed], "textposition": "inside"},
    ]
    return drawn(bars, "Share of each layer's parameters pruned", "layer", "of the layer's parameters",
                 barmode="stack", yaxis={"range": [0, 1], "tickformat": ".0%"})


def layer_changes(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A small table of each weighted layer's shape, zeros and MACs, before → after (strings, for display)."""
    old = {row["name"]: row for row in before}
    return pd.DataFrame(
        [{"layer": row["name"], "shape": f"{old[row['name']]['shape']} → {row['shape']}", "zeros": f"{row['sparsity']:.0%}",
          "MACs": f"{old[row['name']]['macs']:,} → {row['macs']:,}"}
         for row in after if row["name"] in old and old[row["name"]]["macs"]],
        columns=["layer", "shape", "zeros", "MACs"],
    )


# ---------------------------------------------------------------- weight histogram


class WeightHistogram(NamedTuple):
    """Counts of one layer's weights before and after pruning, on shared bins."""

    centers: np.ndarray  # (bins,)
    width: float
    before: np.ndarray  # (bins,) counts of the original weights
    after: np.ndarray  # (bins,) counts of the non-zero weights left
    zeros: int  # weights left that are exactly zero (pruned in place)
    removed: int  # weights gone with their channel (structured)


def weight_histogram_info(before: np.ndarray, after: np.ndarray, bins: int | None = None) -> WeightHistogram:
    """Bins span the original weights; exact zeros of the pruned layer are counted apart (they would hide in a bin)."""
    before = np.asarray(before, dtype=np.float64).reshape(-1)
    after = np.asarray(after, dtype=np.float64).reshape(-1)
    edges = np.histogram_bin_edges(before, bins=bins or histogram_bins(before.size))
    before_counts, _ = np.histogram(before, bins=edges)
    after_counts, _ = np.histogram(after[after != 0], bins=edges)
    return WeightHistogram(
        centers=(edges[:-1] + edges[1:]) / 2, width=float(edges[1] - edges[0]), before=before_counts,
        after=after_counts, zeros=int((after == 0).sum()), removed=before.size - after.size,
    )


def weight_histogram(before: np.ndarray, after: np.ndarray, layer: str, bins: int | None = None) -> go.Figure:
    """One layer's weight distribution before and after pruning (log counts: the pruned zeros tower over the rest)."""
    info = weight_histogram_info(before, after, bins)
    bars = [
        {"type": "bar", "name": f"before ({int(info.before.sum()):,})", "x": info.centers, "y": info.before,
         "width": info.width, "marker": {"color": BASELINE}, "opacity": 0.55},
        {"type": "bar", "name": f"after, non-zero ({int(info.after.sum()):,})", "x": info.centers, "y": info.after,
         "width": info.width, "marker": {"color": ACCENT}, "opacity": 0.8},
    ]
    if info.zeros:
        bars.append({"type": "bar", "name": f"after, exactly 0 ({info.zeros:,})", "x": [0.0], "y": [info.zeros],
                     "width": info.width, "marker": {"color": COMPRESSED}})
    title = f"Weights of {layer}" + (f" — {info.removed:,} removed with their channels" if info.removed else "")
    return drawn(bars, title, "weight value", "count (log)", barmode="overlay", bargap=0, yaxis={"type": "log"})


# ---------------------------------------------------------------- mask heatmap


class MaskGrid(NamedTuple):
    """The pruned layer drawn on its original (out, in·k·k) grid, one cell state per weight."""

    cells: np.ndarray  # (out, in·k·k) int: KEPT, ZEROED, REMOVED_ROW or REMOVED_COLUMN
    kept_rows: np.ndarray | None  # original indices of the output channels left (None: could not be told)
    kept_columns: np.ndarray | None  # original indices of the input columns left


def kept_positions(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Which rows and columns of `before` (2-D) survive in `after`, a submatrix of it, or None if it isn't one.

    Channel surgery copies the kept weights bit for bit, in order, so each value of `after` is found in
    `before`; its row (column) there is the original index of its row (column). A value that occurs more
    than once (e.g. exact zeros) can point at the wrong place, so each row and column takes the index most
    of its values point at, and the result is checked: before[rows][:, columns] must equal after exactly.
    """
    order = np.argsort(before, axis=None, kind="stable")
    flat = before.reshape(-1)[order]  # (O·N,) sorted
    at = np.clip(np.searchsorted(flat, after.reshape(-1)), 0, flat.size - 1)
    rows, columns = np.divmod(order[at].reshape(after.shape), before.shape[1])  # (O', N') each
    kept_rows = np.array([np.bincount(r).argmax() for r in rows], dtype=np.int64)
    kept_columns = np.array([np.bincount(c).argmax() for c in columns.T], dtype=np.int64)
    if not np.array_equal(before[np.ix_(kept_rows, kept_columns)], after):
        return None
    return kept_rows, kept_columns


def mask_info(before: np.ndarray, after: np.ndarray) -> MaskGrid:
    """Cell states of a layer after pruning, from its weight before and after (any shapes, as_matrix'ed)."""
    before, after = as_matrix(before), as_matrix(after)
    if before.shape == after.shape:
        cells = np.where(after == 0, ZEROED, KEPT)
        return MaskGrid(cells, np.arange(before.shape[0]), np.arange(before.shape[1]))
    found = kept_positions(before, after)
    cells = np.full(before.shape, REMOVED_ROW)
    if found is None:
        return MaskGrid(cells, None, None)
    rows, columns = found
    cells[:, np.setdiff1d(np.arange(before.shape[1]), columns)] = REMOVED_COLUMN
    cells[np.setdiff1d(np.arange(before.shape[0]), rows)] = REMOVED_ROW
    cells[np.ix_(rows, columns)] = np.where(after == 0, ZEROED, KEPT)
    return MaskGrid(cells, rows, columns)


def mask_heatmap(before: np.ndarray, after: np.ndarray, layer: str) -> go.Figure:
    """The weights of one layer as a grid (rows: output channels), coloured by kept, zeroed or removed."""
    info = mask_info(before, after)
    states = sorted(np.unique(info.cells).tolist())
    index = np.searchsorted(states, info.cells)  # consecutive 0..len(states)-1 for a discrete colour scale
    n = len(states)
    scale = [item for i, state in enumerate(states) for item in ((i / n, CELL_COLOURS[state]), ((i + 1) / n, CELL_COLOURS[state]))]
    heatmap = {
        "type": "heatmap", "z": index.astype(np.int8), "zmin": -0.5, "zmax": n - 0.5, "colorscale": scale,
        "hovertemplate": "output %{y}, input %{x}<extra></extra>",  # the colour says the state (per-cell labels are slow)
        "colorbar": {"tickvals": list(range(n)), "ticktext": [CELL_NAMES[s] for s in states], "thickness": 14},
    }
    kept = int((info.cells == KEPT).sum())
    title = f"Mask of {layer}: {kept:,} of {info.cells.size:,} weights kept"
    if info.kept_rows is None and before.shape != after.shape:
        title = f"{layer}: shrank from {as_matrix(before).shape} to {as_matrix(after).shape} (positions unknown)"
    return drawn([heatmap], title, "input (in · k · k)" if np.ndim(before) > 2 else "input", "output channel",
                 yaxis={"autorange": "reversed"})


# ---------------------------------------------------------------- sweep


class AmountSweep(NamedTuple):
    """Accuracy against amount, one curve per criterion, with the current configuration."""

    curves: dict[str, tuple[list[float], list[float]]]  # criterion -> (amounts, accuracies), by amount
    macs: tuple[list[float], list[float]]  # (amounts, dense MACs as a fraction of the baseline's) of `current_criterion`
    current: tuple[float, float]  # (amount, accuracy)
    current_criterion: str


def amount_sweep_info(
    table: pd.DataFrame, current_criterion: str, current_amount: float, current_accuracy: float, baseline_macs: int
) -> AmountSweep:
    """From a sweep table with columns criterion, amount, accuracy, macs."""
    table = table.sort_values(["criterion", "amount"], kind="stable")
    curves = {c: (rows["amount"].tolist(), rows["accuracy"].tolist()) for c, rows in table.groupby("criterion", sort=False)}
    own = table[table["criterion"] == current_criterion]
    macs = (own["amount"].tolist(), (own["macs"] / baseline_macs).tolist())
    return AmountSweep(curves, macs, (current_amount, current_accuracy), current_criterion)


def amount_sweep(
    table: pd.DataFrame, current_criterion: str, current_amount: float, current_accuracy: float, baseline_macs: int
) -> go.Figure:
    """Accuracy vs pruned amount for each criterion; dense MACs on a second axis; the current point marked."""
    info = amount_sweep_info(table, current_criterion, current_amount, current_accuracy, baseline_macs)
    fig = go.Figure()
    for criterion, (x, y) in info.curves.items():
        mine = criterion == info.current_criterion
        colour = CRITERION_COLOURS.get(criterion, SERIES[3])
        fig.add_trace(go.Scatter(x=x, y=y, name=criterion, mode="lines+markers", line={"color": colour, "width": 3 if mine else 1.5},
                                 opacity=1.0 if mine else 0.7, hovertemplate="amount %{x:.2f}: %{y:.1%}"))
    fig.add_trace(go.Scatter(x=info.macs[0], y=info.macs[1], name="MACs computed", yaxis="y2", mode="lines",
                             line={"color": BASELINE, "dash": "dot"}, hovertemplate="amount %{x:.2f}: %{y:.0%} of the MACs"))
    fig.add_trace(go.Scatter(x=[info.current[0]], y=[info.current[1]], name="current", mode="markers",
                             marker={"color": COMPRESSED, "size": 15, "symbol": "star", "line": {"color": "black", "width": 1}},
                             hovertemplate="current: amount %{x:.2f}, %{y:.1%}<extra></extra>"))
    fig.update_xaxes(range=[-0.02, 1.0])
    styled(fig, "Accuracy vs amount pruned", "amount pruned")
    fig.update_layout(  # both axes 0-105%, so the grid lines serve both
        yaxis={"title": "accuracy", "tickformat": ".0%", "range": [0, 1.05]},
        yaxis2={"title": "MACs computed (dense)", "overlaying": "y", "side": "right", "range": [0, 1.05],
                "tickformat": ".0%", "showgrid": False},
        legend={"orientation": "h", "yanchor": "top", "y": -0.25, "xanchor": "left", "x": 0.0},
        margin={"b": 90},
    )
    return fig
