"""Figures of recovery training: loss and accuracy per epoch, and what fine-tuning wins back over one-shot compression.

One-shot compression loses accuracy; a few epochs of fine-tuning with the compression held (masks, QAT) win most
of it back, and gradual pruning (AGP) interleaves the two. These builders show that story from plain data: the
per-epoch histories `compressor.training.finetune` and `compressor.schedules.gradual_prune` return, and the
measured accuracies of each variant.

As in Optuna's plots, each builder is two steps: a `*_info` function turns the data into a small NamedTuple that
tests check exactly, and the builder only draws it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import plotly.graph_objects as go

from compressor.figures.style import BASELINE, COMPRESSED, SERIES, styled

History = Sequence[Mapping[str, float]]  # one record per epoch: epoch, loss, train_accuracy[, test_accuracy, sparsity]
RUN_COLOURS = (SERIES[3], "#3d405b", SERIES[5], SERIES[2])  # one per training run, apart from the sweeps' criteria
# horizontal lines on the accuracy panel (others grey): the uncompressed model, and the model training starts from
REFERENCE_COLOURS = {"baseline": BASELINE, "one-shot": COMPRESSED, "post-training": COMPRESSED}


def run_colour(i: int) -> str:
    """The colour of the i-th training run, the same in every recovery figure (red stays for one-shot)."""
    return RUN_COLOURS[i % len(RUN_COLOURS)]


# ---------------------------------------------------------------- loss and accuracy per epoch


class Curve(NamedTuple):
    """One training run, one value per (possibly fractional, when stopped) epoch."""

    label: str
    epoch: list[float]
    loss: list[float]
    train_accuracy: list[float]
    test_accuracy: list[float] | None  # None: the run was not scored on held-out data
    sparsity: list[float] | None  # gradual pruning: the sparsity target of the epoch's pruning step


class TrainingCurves(NamedTuple):
    curves: list[Curve]
    epochs: float | None  # x axis drawn from 0 to this (the planned epochs, fixed while a run is live); None: the data
    references: dict[str, float]  # horizontal lines on the accuracy panel, e.g. {"baseline": 0.989, "one-shot": 0.62}


def _column(history: History, key: str) -> list[float] | None:
    """The values of `key` in every record, or None when the records do not have it."""
    if not history or any(key not in record for record in history):
        return None
    return [float(record[key]) for record in history]


def curves_info(histories: Mapping[str, History], epochs: float | None = None,
                references: Mapping[str, float] | None = None) -> TrainingCurves:
    """From {run label: history}; a run with no record yet is kept (an empty curve, so its legend entry stays)."""
    curves = []
    for label, history in histories.items():
        for key in ("epoch", "loss"):  # embedding models record no accuracy: their loss is 1 − cosine
            if history and _column(history, key) is None:
                raise ValueError(f"history of {label!r} needs {key!r} in every record")
        curves.append(Curve(
            label=str(label),
            epoch=_column(history, "epoch") or [],
            loss=_column(history, "loss") or [],
            train_accuracy=_column(history, "train_accuracy") or [],
            test_accuracy=_column(history, "test_accuracy"),
            sparsity=_column(history, "sparsity"),
        ))
    if epochs is not None and epochs <= 0:
        raise ValueError(f"epochs={epochs!r} must be positive")
    return TrainingCurves(curves, None if epochs is None else float(epochs), dict(references or {}))


def _hover(curve: Curve, fmt: str) -> tuple[str, list[str] | None]:
    """Hover template (and per-point text: the sparsity of a gradual run)."""
    if curve.sparsity is None:
        return f"epoch %{{x:.3g}}: %{{y:{fmt}}}<extra>{curve.label}</extra>", None
    text = [f"sparsity {s:.0%}" for s in curve.sparsity]
    return f"epoch %{{x:.3g}}: %{{y:{fmt}}}, %{{text}}<extra>{curve.label}</extra>", text


def training_curves(histories: Mapping[str, History], epochs: float | None = None,
                    references: Mapping[str, float] | None = None, height: int = 360) -> go.Figure:
    """Two panels per epoch: training loss (left) and accuracy (right: held-out solid, training dotted).

    One colour per run; `references` are dashed horizontal lines on the accuracy panel (the uncompressed
    baseline, the one-shot model training starts from). With `epochs` the x axis is fixed to the planned
    length, so a chart redrawn after every epoch does not rescale. Built in one go (no make_subplots, no
    per-trace updates): a live chart is redrawn after every epoch.
    """
    info = curves_info(histories, epochs, references)
    traces = []
    for i, curve in enumerate(info.curves):
        colour = run_colour(i)
        template, text = _hover(curve, ".3f")
        traces.append(go.Scatter(name=curve.label, legendgroup=curve.label, x=curve.epoch, y=curve.loss,
                                 xaxis="x", yaxis="y", mode="lines+markers", marker_size=5,
                                 line={"color": colour, "width": 2.5},
                                 text=text, hovertemplate=template))
        template, text = _hover(curve, ".1%")
        if curve.test_accuracy is not None:
            traces.append(go.Scatter(name=f"{curve.label} (test)", legendgroup=curve.label, showlegend=False,
                                     x=curve.epoch, y=curve.test_accuracy, xaxis="x2", yaxis="y2",
                                     mode="lines+markers", marker_size=5, line={"color": colour, "width": 2.5},
                                     text=text, hovertemplate=template.replace("<extra>", "<extra>test, ")))
        traces.append(go.Scatter(name=f"{curve.label} (train)", legendgroup=curve.label, showlegend=False,
                                 x=curve.epoch, y=curve.train_accuracy, xaxis="x2", yaxis="y2", mode="lines",
                                 opacity=0.6, line={"color": colour, "width": 1.5, "dash": "dot"}, text=text,
                                 hovertemplate=template.replace("<extra>", "<extra>train, ")))
    shapes, notes = [], []
    for i, (name, value) in enumerate(info.references.items()):  # labels alternate sides, so close lines stay legible
        colour = REFERENCE_COLOURS.get(name, BASELINE)
        shapes.append({"type": "line", "xref": "x2 domain", "yref": "y2", "x0": 0, "x1": 1, "y0": value, "y1": value,
                       "line": {"color": colour, "dash": "dash", "width": 1.5}})
        above = i % 2 == 0
        notes.append({"xref": "x2 domain", "yref": "y2", "x": 0 if above else 1, "y": value, "showarrow": False,
                      "text": f"{name} {value:.1%}", "font": {"color": colour},
                      "xanchor": "left" if above else "right", "yanchor": "bottom" if above else "top"})
    for x, title in ((0.225, "Training loss"), (0.775, "Accuracy")):  # panel titles
        notes.append({"xref": "paper", "yref": "paper", "x": x, "y": 1.0, "showarrow": False, "text": title,
                      "xanchor": "center", "yanchor": "bottom", "font": {"size": 16}})
    x_range = None if info.epochs is None else [0, info.epochs + 0.3]
    axis = {"title": {"text": "epoch"}, "range": x_range}
    fig = go.Figure(traces, {
        "xaxis": {**axis, "domain": [0.0, 0.45]}, "xaxis2": {**axis, "domain": [0.55, 1.0], "anchor": "y2"},
        "yaxis": {"anchor": "x"}, "yaxis2": {"anchor": "x2", "tickformat": ".0%"},
        "shapes": shapes, "annotations": notes,
    })
    styled(fig, "Recovery training per epoch (accuracy: test solid, train dotted)", height=height)
    return fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.27, "xanchor": "left", "x": 0.0},
                             margin={"b": 90, "t": 80})


# ---------------------------------------------------------------- one-shot vs recovered


class Comparison(NamedTuple):
    """The accuracy of each variant and its change against the one it is compared with (one-shot)."""

    labels: list[str]  # the uncompressed baseline first, when given
    accuracy: list[float]
    change_points: list[float | None]  # (accuracy − reference accuracy) × 100; None: the baseline, the reference
    reference: str


BASELINE_LABEL = "uncompressed"


def comparison_info(accuracies: Mapping[str, float], reference: str = "one-shot",
                    baseline: float | None = None) -> Comparison:
    """From {variant: accuracy} in display order; `reference` must be one of them; the baseline goes first."""
    if reference not in accuracies:
        raise ValueError(f"reference {reference!r} is not one of the variants {list(accuracies)}")
    base = accuracies[reference]
    labels = list(map(str, accuracies))
    accuracy = [float(a) for a in accuracies.values()]
    change = [None if label == reference else round(100 * (value - base), 6) for label, value in zip(labels, accuracy)]
    if baseline is not None:
        labels, accuracy, change = [BASELINE_LABEL, *labels], [float(baseline), *accuracy], [None, *change]
    return Comparison(labels, accuracy, change, reference)


def recovery_comparison(accuracies: Mapping[str, float], reference: str = "one-shot",
                        baseline: float | None = None, height: int = 300) -> go.Figure:
    """Horizontal bars of accuracy per variant (the uncompressed baseline first, grey), each recovered one
    labelled with its change against `reference` in points. The axis runs from 0 to 100%: bar lengths are
    proportional to accuracy (an axis cut near the lowest bar would make a 1-point gap look like a doubling);
    the gaps are in the labels."""
    info = comparison_info(accuracies, reference, baseline)
    others = iter(range(len(info.labels)))
    colours = [BASELINE if label == BASELINE_LABEL and baseline is not None else
               COMPRESSED if label == info.reference else run_colour(next(others)) for label in info.labels]
    text = [f"{a:.1%}" if c is None else f"{a:.1%}  ({c:+.1f} pts)" for a, c in zip(info.accuracy, info.change_points)]
    fig = go.Figure(
        go.Bar(x=info.accuracy, y=info.labels, orientation="h", marker_color=colours, text=text, textposition="inside",
               insidetextanchor="end", textfont={"color": "white"}, hovertemplate="%{y}: %{x:.2%}<extra></extra>"),
        {"xaxis": {"range": [0.0, 1.0], "tickformat": ".0%"},
         "yaxis": {"autorange": "reversed"}},
    )
    return styled(fig, f"What recovery wins back over {info.reference}", "accuracy", height=height)


def add_recovered(fig: go.Figure, x: Sequence[float], accuracy: Sequence[float], name: str,
                  colour: str = RUN_COLOURS[0], current: bool = False) -> go.Figure:
    """Overlay a recovered series on an accuracy sweep (x = amount or bits, left y axis = accuracy).

    current=True draws one marked point (the configuration on screen, fine-tuned); otherwise a dashed curve.
    """
    if len(x) != len(accuracy):
        raise ValueError(f"x has {len(x)} values but accuracy has {len(accuracy)}")
    if current:
        trace = go.Scatter(x=list(x), y=list(accuracy), name=name, mode="markers",
                           marker={"color": colour, "size": 11, "symbol": "diamond",
                                   "line": {"color": "black", "width": 1}},
                           hovertemplate=f"{name}: %{{x:g}}, %{{y:.1%}}<extra></extra>")
    else:
        trace = go.Scatter(x=list(x), y=list(accuracy), name=name, mode="lines+markers",
                           line={"color": colour, "width": 3, "dash": "dash"},
                           hovertemplate=f"{name}: %{{x:g}}, %{{y:.1%}}<extra></extra>")
    return fig.add_trace(trace)
