"""Recovery figures: curves per epoch from training histories, one-shot vs recovered bars, series on a sweep."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest

import compressor as cz
from compressor.figures.style import BASELINE, COMPRESSED
from compressor.figures.training import (
    Comparison, Curve, add_recovered, comparison_info, curves_info, recovery_comparison, run_colour, training_curves,
)
from compressor.training import finetune

TUNED = [
    {"epoch": 1.0, "loss": 0.9, "train_accuracy": 0.7, "test_accuracy": 0.8},
    {"epoch": 2.0, "loss": 0.5, "train_accuracy": 0.85, "test_accuracy": 0.9},
]
GRADUAL = [
    {"epoch": 1.0, "loss": 0.4, "train_accuracy": 0.9, "test_accuracy": 0.95, "sparsity": 0.5},
    {"epoch": 1.5, "loss": 0.6, "train_accuracy": 0.8, "test_accuracy": 0.88, "sparsity": 0.9},  # stopped mid-epoch
]


def test_curves_info_reads_every_column_of_each_history():
    info = curves_info({"fine-tuned": TUNED, "gradual (AGP)": GRADUAL}, epochs=2,
                       references={"baseline": 0.99, "one-shot": 0.6})
    assert info.curves[0] == Curve("fine-tuned", [1.0, 2.0], [0.9, 0.5], [0.7, 0.85], [0.8, 0.9], None)
    assert info.curves[1].epoch == [1.0, 1.5] and info.curves[1].sparsity == [0.5, 0.9]
    assert info.epochs == 2.0 and info.references == {"baseline": 0.99, "one-shot": 0.6}


def test_a_run_without_records_yet_keeps_an_empty_curve_and_one_without_test_scores_has_none():
    info = curves_info({"starting": [], "no test": [{"epoch": 1, "loss": 1.0, "train_accuracy": 0.5}]})
    assert info.curves[0] == Curve("starting", [], [], [], None, None)
    assert info.curves[1].test_accuracy is None


def test_curves_info_accepts_a_history_without_accuracy():
    """Embedding models train on 1 − cosine and record no accuracy: their curve has a loss panel only."""
    info = curves_info({"distilled": [{"epoch": 1.0, "loss": 0.2}, {"epoch": 2.0, "loss": 0.1}]})
    assert info.curves[0].loss == [0.2, 0.1] and info.curves[0].train_accuracy == []


@pytest.mark.parametrize("histories, epochs, match", [
    ({"a": [{"epoch": 1, "train_accuracy": 0.5}]}, None, "loss"),
    ({"a": TUNED}, 0, "epochs=0"),
])
def test_curves_info_rejects_bad_input(histories, epochs, match):
    with pytest.raises(ValueError, match=match):
        curves_info(histories, epochs)


def test_training_curves_draws_loss_left_and_accuracy_right_with_reference_lines():
    fig = training_curves({"fine-tuned": TUNED, "gradual (AGP)": GRADUAL}, epochs=5,
                          references={"baseline": 0.99, "one-shot": 0.6})
    by_name = {trace.name: trace for trace in fig.data}
    loss, test, train = by_name["fine-tuned"], by_name["fine-tuned (test)"], by_name["fine-tuned (train)"]
    assert (list(loss.x), list(loss.y), loss.xaxis) == ([1.0, 2.0], [0.9, 0.5], "x")
    assert (list(test.y), test.xaxis, test.line.dash) == ([0.8, 0.9], "x2", None)
    assert (list(train.y), train.line.dash) == ([0.7, 0.85], "dot")
    assert loss.line.color == test.line.color == run_colour(0) != by_name["gradual (AGP)"].line.color
    assert list(by_name["gradual (AGP) (test)"].text) == ["sparsity 50%", "sparsity 90%"]
    lines = {shape.y0: shape.line.color for shape in fig.layout.shapes}
    assert lines[0.6] == COMPRESSED and set(lines) == {0.99, 0.6}
    assert all(shape.xref.startswith("x2") for shape in fig.layout.shapes)
    assert list(fig.layout.xaxis.range) == list(fig.layout.xaxis2.range) == [0, 5.3]  # fixed while a run is live


def test_comparison_info_gives_points_against_the_reference():
    info = comparison_info({"one-shot": 0.672, "fine-tuned": 0.965, "gradual (AGP)": 0.95}, baseline=0.989)
    assert info == Comparison(["uncompressed", "one-shot", "fine-tuned", "gradual (AGP)"], [0.989, 0.672, 0.965, 0.95],
                              [None, None, 29.3, 27.8], "one-shot")
    with pytest.raises(ValueError, match="reference 'PTQ'"):
        comparison_info({"one-shot": 0.5}, reference="PTQ")


def test_recovery_comparison_bars_are_labelled_with_their_change():
    fig = recovery_comparison({"one-shot": 0.5, "fine-tuned": 0.9}, baseline=0.99)
    bars = fig.data[0]
    assert list(bars.y) == ["uncompressed", "one-shot", "fine-tuned"] and list(bars.x) == [0.99, 0.5, 0.9]
    assert list(bars.text) == ["99.0%", "50.0%", "90.0%  (+40.0 pts)"]
    assert list(bars.marker.color) == [BASELINE, COMPRESSED, run_colour(0)]
    assert list(fig.layout.xaxis.range) == [0, 1]  # bar lengths proportional to accuracy


def test_add_recovered_overlays_a_curve_or_marks_the_current_point():
    fig = add_recovered(go.Figure(), [0.5, 0.9], [0.98, 0.96], "magnitude, fine-tuned")
    fig = add_recovered(fig, [0.9], [0.96], "fine-tuned", current=True)
    curve, point = fig.data
    assert (list(curve.x), list(curve.y), curve.mode, curve.line.dash) == ([0.5, 0.9], [0.98, 0.96], "lines+markers", "dash")
    assert (list(point.x), list(point.y), point.mode) == ([0.9], [0.96], "markers")
    with pytest.raises(ValueError, match="x has 2 values"):
        add_recovered(fig, [1, 2], [0.5], "bad")


def test_training_curves_draw_a_real_finetune_history():
    sample = cz.load_sample("digits-mlp")
    pruned = cz.prune(sample.model, 0.9)
    _, history = finetune(pruned, sample.data.train, epochs=2, test=sample.data.test)
    fig = training_curves({"fine-tuned": history}, epochs=2)
    test = next(t for t in fig.data if t.name == "fine-tuned (test)")
    assert list(test.x) == [1.0, 2.0] and list(test.y) == [r["test_accuracy"] for r in history]
