"""Figures of knowledge distillation: what the teacher's softened targets look like, and how KD and scratch
training of the same student compare epoch by epoch.

As in Optuna's plots, each builder is two steps: a `*_info` function turns plain data (one example's teacher
logits as a numpy array, training histories as lists of per-epoch records) into a small NamedTuple that tests
check exactly, and the builder only draws it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from compressor.figures.style import ACCENT, BASELINE, COMPRESSED, styled

KD_COLOUR, SCRATCH_COLOUR = COMPRESSED, ACCENT  # the distilled student, the one trained on labels alone
History = Sequence[Mapping[str, float]]  # one record per epoch: epoch, loss, train_accuracy[, test_accuracy]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(z / T) over the last axis, computed stably (the largest logit is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------- a trained student, as a Trade-offs point

TRAININGS = {"distill": "KD", "scratch": "scratch"}  # how a student was trained -> its short name


def training_json(student: str, training: str, settings: Mapping[str, Any]) -> str:
    """A trained student as JSON, where points hold a recipe: its source ("digits-mlp@width=0.4"), how it was
    trained ("distill" or "scratch") and the training settings."""
    if training not in TRAININGS:
        raise ValueError(f"training={training!r} is not one of {', '.join(TRAININGS)}")
    return json.dumps({"student": student, "training": training, **settings})


def training_of(text: str) -> dict[str, Any] | None:
    """The student record in `text` (as `training_json` writes it), or None for anything else (a recipe)."""
    try:
        data = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "student" in data and data.get("training") in TRAININGS else None


def describe_training(text: str) -> str | None:
    """'KD student digits-mlp@width=0.4 (T=4, α=0.9, 20 epochs)'; None when `text` is not a student record."""
    data = training_of(text)
    if data is None:
        return None
    details = [f"T={data['temperature']:g}", f"α={data['alpha']:g}"] if data["training"] == "distill" else []
    if "epochs" in data:
        details.append(f"{data['epochs']} epoch{'s' if data['epochs'] != 1 else ''}")
    return f"{TRAININGS[data['training']]} student {data['student']}" + (f" ({', '.join(details)})" if details else "")


# ---------------------------------------------------------------- the teacher's soft targets


class SoftTargets(NamedTuple):
    """One example's teacher probabilities at T = 1 and at the chosen T, per class."""

    classes: list[int]
    sharp: list[float]  # softmax(z_t): what the teacher predicts
    soft: list[float]  # softmax(z_t / T): the targets the student imitates
    temperature: float
    label: int | None  # the true class, marked on the bars
    image: np.ndarray | None  # (H, W) the input, if it is an image


def soft_targets_info(logits: np.ndarray, temperature: float, label: int | None = None,
                      image: np.ndarray | None = None) -> SoftTargets:
    """From one example's teacher logits (C,), the true label and optionally its pixels (any shape with H·W = a square)."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r} is out of range; allowed: > 0")
    if image is not None:
        pixels = np.asarray(image, dtype=np.float64).reshape(-1)
        side = int(round(np.sqrt(pixels.size)))
        image = pixels.reshape(side, side) if side * side == pixels.size else None
    return SoftTargets(
        classes=list(range(logits.size)),
        sharp=softmax(logits).tolist(),
        soft=softmax(logits, temperature).tolist(),
        temperature=float(temperature),
        label=None if label is None else int(label),
        image=image,
    )


def telling_example(logits: np.ndarray, labels: np.ndarray, runner_up: float = 0.05) -> int:
    """An example that shows what soft targets carry: classified right, and at T = 1 its second most likely class
    has a probability closest to `runner_up` (visible, but small enough that softening makes a difference).

    logits: (N, C) teacher logits; labels: (N,). Falls back to the first example if none is classified right.
    """
    probabilities = softmax(logits)  # (N, C)
    ranked = np.sort(probabilities, axis=-1)  # ascending
    right = probabilities.argmax(axis=-1) == np.asarray(labels).reshape(-1)
    if not right.any():
        return 0
    distance = np.where(right, np.abs(ranked[:, -2] - runner_up), np.inf)
    return int(distance.argmin())


def _class_names(info: SoftTargets) -> list[str]:
    return [f"{c} ✓" if c == info.label else str(c) for c in info.classes]


def soft_targets(logits: np.ndarray, temperature: float, label: int | None = None,
                 image: np.ndarray | None = None) -> go.Figure:
    """Grouped bars: the teacher's probabilities for one example at T = 1 and at T, with the input beside them."""
    info = soft_targets_info(logits, temperature, label, image)
    names = _class_names(info)
    bars = [
        go.Bar(name="T = 1", x=names, y=info.sharp, marker_color=BASELINE,
               hovertemplate="class %{x}: %{y:.1%}<extra>T = 1</extra>"),
        go.Bar(name=f"T = {info.temperature:g}", x=names, y=info.soft, marker_color=KD_COLOUR,
               hovertemplate=f"class %{{x}}: %{{y:.1%}}<extra>T = {info.temperature:g}</extra>"),
    ]
    title = f"The teacher's probabilities for one test example, T = 1 vs T = {info.temperature:g}"
    if info.image is None:
        fig = go.Figure(bars)
    else:
        fig = make_subplots(rows=1, cols=2, column_widths=[0.22, 0.78], horizontal_spacing=0.06)
        fig.add_trace(go.Heatmap(z=info.image, colorscale="gray_r", showscale=False, name="input",
                                 hovertemplate="pixel (%{y}, %{x}): %{z:.2f}<extra></extra>"), row=1, col=1)
        fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, row=1, col=1)
        fig.update_xaxes(showticklabels=False, title_text="input", row=1, col=1)
        for bar in bars:
            fig.add_trace(bar, row=1, col=2)
    axes = {"row": 1, "col": 2} if info.image is not None else {}
    fig.update_yaxes(range=[0, 1], tickformat=".0%", title_text=None if info.image is not None else "probability",
                     **axes)
    fig.update_xaxes(title_text="class (✓ = true label)", type="category", **axes)
    fig.update_layout(barmode="group", bargap=0.2)
    return styled(fig, title, height=330)


# ---------------------------------------------------------------- KD vs scratch, per epoch


class Curves(NamedTuple):
    """One measure per epoch for the KD student and the scratch student (a stopped run's lists are shorter)."""

    kd_epochs: list[float]
    kd: list[float]
    scratch_epochs: list[float]
    scratch: list[float]
    teacher: float | None  # a reference line (the teacher's accuracy), or None
    epochs: int | None  # x axis drawn to this many epochs (fixed while training runs), or None: to the data


def curves_info(kd: History, scratch: History, measure: str, teacher: float | None = None,
                epochs: int | None = None) -> Curves:
    """The `measure` ("test_accuracy", "train_accuracy" or "loss") of each history, against its epoch numbers."""
    return Curves(
        kd_epochs=[float(r["epoch"]) for r in kd], kd=[float(r[measure]) for r in kd],
        scratch_epochs=[float(r["epoch"]) for r in scratch], scratch=[float(r[measure]) for r in scratch],
        teacher=teacher, epochs=epochs,
    )


def _curve_traces(info: Curves, kd_name: str, scratch_name: str, fmt: str) -> list[go.Scatter]:
    return [
        go.Scatter(name=kd_name, x=info.kd_epochs, y=info.kd, mode="lines+markers", marker_size=5,
                   line={"color": KD_COLOUR, "width": 3}, hovertemplate=f"epoch %{{x:g}}: %{{y:{fmt}}}<extra>KD</extra>"),
        go.Scatter(name=scratch_name, x=info.scratch_epochs, y=info.scratch, mode="lines+markers", marker_size=5,
                   line={"color": SCRATCH_COLOUR, "width": 3},
                   hovertemplate=f"epoch %{{x:g}}: %{{y:{fmt}}}<extra>scratch</extra>"),
    ]


def _x_range(fig: go.Figure, info: Curves) -> None:
    if info.epochs is not None:
        fig.update_xaxes(range=[0, info.epochs + 0.5])


def accuracy_curves(kd: History, scratch: History, teacher_accuracy: float | None = None,
                    epochs: int | None = None) -> go.Figure:
    """Test accuracy per epoch of the distilled and the scratch student, with the teacher's as a dashed line."""
    info = curves_info(kd, scratch, "test_accuracy", teacher_accuracy, epochs)
    fig = go.Figure(_curve_traces(info, "KD student", "scratch student", ".1%"))
    if info.teacher is not None:
        fig.add_hline(y=info.teacher, line={"color": BASELINE, "dash": "dash"},
                      annotation_text=f"teacher {info.teacher:.1%}", annotation_position="top left")
    _x_range(fig, info)
    fig.update_yaxes(tickformat=".0%")
    return styled(fig, "Test accuracy per epoch: KD vs scratch", "epoch", "test accuracy")


def loss_curves(kd: History, scratch: History, epochs: int | None = None) -> go.Figure:
    """Training loss per epoch (log scale). Each student minimises its own objective, so read the shapes, not
    the levels: KD's loss includes the α·T²·KL term, scratch's is the cross-entropy alone."""
    info = curves_info(kd, scratch, "loss", None, epochs)
    fig = go.Figure(_curve_traces(info, "KD loss α·T²·KL + (1−α)·CE", "scratch loss CE", ".3f"))
    _x_range(fig, info)
    fig.update_yaxes(type="log", tickformat=".2g", dtick="D2")  # ticks at 1, 2, 5 × powers of ten
    return styled(fig, "Training loss per epoch (each its own objective)", "epoch", "loss (log scale)")
