"""Trade-off figures: the info objects hold the right points, front and baseline; the figures draw exactly them."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from compressor import LowRank, Prune, Quantize, Recipe
from compressor.recipe import Finetune
from compressor.figures.style import FRONT
from compressor.figures.tradeoffs import (
    AXES,
    VIEWS,
    describe_recipe,
    front_3d,
    hover_text,
    scatter3d_info,
    scatter_info,
    tradeoff_3d,
    tradeoff_scatter,
)

EMPTY = Recipe().to_json(indent=None)
PRUNE = Recipe((Prune(amount=0.8),)).to_json(indent=None)
PRUNE_Q4 = Recipe((Prune(amount=0.8), Quantize(bits=4, granularity="channel"))).to_json(indent=None)
STRUCT = Recipe((Prune(amount=0.5, structured=True),)).to_json(indent=None)
Q2 = Recipe((Quantize(bits=2),)).to_json(indent=None)


def points() -> pd.DataFrame:
    """Five configurations with hand-checkable fronts (accuracy ↑, bytes ↓, latency ↓)."""
    return pd.DataFrame({
        "label": ["baseline", "prune", "prune+q4", "structured", "q2"],
        "page": ["Trade-offs", "Pruning", "Pipeline", "Pruning", "Quantization"],
        "accuracy": [0.98, 0.95, 0.93, 0.90, 0.60],
        "compressed_bytes": [180_000, 40_000, 12_000, 90_000, 50_000],
        "latency_ms": [0.10, 0.11, 0.10, 0.05, 0.10],
        "baseline_latency_ms": [0.10, 0.10, 0.10, 0.10, 0.10],  # latency axis: latency_ms / baseline_latency_ms
        "recipe": [EMPTY, PRUNE, PRUNE_Q4, STRUCT, Q2],
    })


def test_accuracy_vs_size_front_is_the_staircase_of_non_dominated_points():
    info = scatter_info(points(), "size", "accuracy")
    assert info.x == [180_000, 40_000, 12_000, 90_000, 50_000]
    assert info.y == [0.98, 0.95, 0.93, 0.90, 0.60]
    # structured (90 kB, 90%) is beaten by prune (40 kB, 95%); q2 by prune too; the rest trade off
    assert info.front == [2, 1, 0]  # sorted by size: 12 kB, 40 kB, 180 kB
    assert info.front_shape == "hv"  # size is lower-is-better: the best accuracy holds until the next point
    assert info.baseline == [0]
    assert info.skipped == 0
    assert info.groups == ["Trade-offs", "Pruning", "Pipeline", "Pruning", "Quantization"]


def test_latency_views_use_their_own_two_objectives():
    acc_lat = scatter_info(points(), "latency", "accuracy")
    assert acc_lat.front == [3, 0]  # structured is fastest, baseline most accurate; ties at 0.10 ms lose to baseline
    size_lat = scatter_info(points(), "latency", "size")
    assert size_lat.front == [3, 2]  # fastest (structured) and smallest (prune+q4)
    assert size_lat.front_shape == "hv"
    acc_x = scatter_info(points(), "accuracy", "size")  # accuracy on x is higher-is-better: step before the run
    assert acc_x.front_shape == "vh"


def test_fronts_agree_with_brute_force_on_random_points():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({
        "label": [f"p{i}" for i in range(30)],
        "accuracy": rng.integers(50, 100, 30) / 100,
        "compressed_bytes": rng.integers(1, 20, 30) * 1000,
        "latency_ms": rng.integers(1, 10, 30) / 100,
        "baseline_latency_ms": 0.05,
        "recipe": [PRUNE] * 30,
    })
    costs = np.column_stack([-frame["accuracy"], frame["compressed_bytes"], frame["latency_ms"]])

    def brute(columns: list[int]) -> set[int]:
        c = costs[:, columns]
        dominated = [any((c[j] <= c[i]).all() and (c[j] < c[i]).any() for j in range(len(c))) for i in range(len(c))]
        return {i for i in range(len(c)) if not dominated[i]}

    assert set(scatter_info(frame, "size", "accuracy").front) == brute([0, 1])
    assert set(scatter_info(frame, "latency", "accuracy").front) == brute([0, 2])
    assert set(scatter_info(frame, "latency", "size").front) == brute([1, 2])
    assert set(scatter3d_info(frame).front) == brute([0, 1, 2])


def test_latency_is_plotted_relative_to_the_baseline_timed_with_it():
    frame = points()
    frame["baseline_latency_ms"] = [0.10, 0.20, 0.10, 0.10, 0.05]  # load drifted between measurements
    info = scatter_info(frame, "latency", "accuracy")
    assert info.x == pytest.approx([1.0, 0.55, 1.0, 0.5, 2.0])
    assert info.front == [3, 1, 0]  # prune: 0.11 ms, but measured next to a 0.20 ms baseline: 0.55× the baseline
    assert front_3d(frame).tolist() == [True, True, True, True, False]


def test_points_without_latency_are_left_out_of_latency_views_only():
    untimed = points().drop(columns=["latency_ms", "baseline_latency_ms"])  # e.g. a sweep table built by hand
    assert len(scatter_info(untimed, "size", "accuracy").x) == 5
    assert scatter_info(untimed, "latency", "accuracy").skipped == 5 and not front_3d(untimed).any()
    frame = points()
    frame.loc[4, "latency_ms"] = None
    assert scatter_info(frame, "size", "accuracy").skipped == 0
    info = scatter_info(frame, "latency", "accuracy")
    assert info.skipped == 1 and len(info.x) == 4
    assert scatter3d_info(frame).skipped == 1


def test_scatter_figure_draws_groups_front_line_and_baseline_star():
    fig = tradeoff_scatter(points(), "size", "accuracy", title="Accuracy vs size")
    assert isinstance(fig, go.Figure)
    traces = {trace.name: trace for trace in fig.data}
    assert set(traces) == {"Pipeline", "Pruning", "Quantization", "Pareto front", "baseline"}
    assert list(traces["Pruning"].x) == [40_000, 90_000]  # the baseline row is drawn only as the star
    assert FRONT not in {traces[group].marker.color for group in ("Pipeline", "Pruning", "Quantization")}
    front = traces["Pareto front"]
    assert list(front.x) == [12_000, 40_000, 180_000] and list(front.y) == [0.93, 0.95, 0.98]
    assert front.mode == "lines+markers" and front.line.shape == "hv"
    star = traces["baseline"]
    assert list(star.x) == [180_000] and star.marker.symbol == "star"
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.tickformat == ".0%"
    assert fig.layout.title.text == "Accuracy vs size"


def test_every_view_renders():
    for title, (x, y) in VIEWS.items():
        fig = tradeoff_scatter(points(), x, y, title=title)
        assert fig.layout.xaxis.title.text == AXES[x].title and fig.layout.yaxis.title.text == AXES[y].title
        fig.to_dict()  # validates every trace


def test_3d_figure_splits_dominated_front_and_baseline():
    info = scatter3d_info(points())
    # with latency as a third objective, prune (95%, 40 kB, 0.11 ms) is no longer beaten: nothing is as accurate
    # and as small; only q2 stays dominated (by prune+q4: more accurate, smaller, as fast)
    assert info.front == [0, 1, 2, 3]
    fig = tradeoff_3d(points())
    traces = {trace.name: trace for trace in fig.data}
    assert all(isinstance(trace, go.Scatter3d) for trace in fig.data)
    assert list(traces["dominated"].x) == [50_000]
    assert list(traces["Pareto front"].z) == [0.95, 0.93, 0.90]  # the baseline is drawn as its own marker
    assert list(traces["baseline"].y) == [1.0]  # latency relative to the baseline's


def test_hover_shows_the_recipe_in_words_and_as_json():
    text = hover_text(points().iloc[2])
    assert "<b>prune+q4</b> · Pipeline" in text
    assert "accuracy 93.0% · 12,000 bytes · 0.100 ms (1.00× the baseline's)" in text
    assert "prune 80% magnitude, per layer → quantize 4-bit affine, per channel" in text
    steps = Recipe.from_json(PRUNE_Q4).to_dict()["steps"]
    assert all(json.dumps(step) in text for step in steps)
    untimed = dict(points().iloc[1], latency_ms=float("nan"))
    assert "latency not timed" in hover_text(untimed)


@pytest.mark.parametrize(("recipe", "words"), [
    (Recipe(), "baseline (no compression)"),
    (Recipe((Prune(amount=0.5, structured=True, scope="global", criterion="taylor"),)),
     "prune 50% taylor, global, structured L2"),
    (Recipe((Quantize(bits=3, method="kmeans", activations=True),)), "quantize 3-bit k-means, 8-bit activations"),
    (Recipe((LowRank(energy=0.9, layers=("fc1", "fc2"), overrides={"fc1": {"energy": 0.95}}),)),
     "low-rank 90% energy on fc1, fc2 (+1 override)"),
    (Recipe((LowRank(rank_ratio=0.25),)), "low-rank rank ratio 0.25"),
    (Recipe((Prune(amount=0.9, schedule="agp", steps=3, epochs_per_step=1), Finetune(epochs=1))),
     "prune 90% magnitude, per layer, gradual (AGP 3 steps × 1 epoch, lr 0.001) → fine-tune 1 epoch, lr 0.001, batch 64"),
    (Recipe((LowRank(rank=4), Quantize(bits=8, scheme="symmetric"))),
     "low-rank rank 4 → quantize 8-bit symmetric, per tensor"),
])
def test_describe_recipe(recipe, words):
    assert describe_recipe(recipe.to_json()) == words


def test_axes_pad_every_point_off_the_edge_and_keep_accuracy_within_0_and_100_percent():
    from compressor.figures.tradeoffs import AXES, axis_range

    accuracy = axis_range([0.5, 0.9, 1.0], AXES["accuracy"])
    assert accuracy[0] == pytest.approx(0.5 - 0.06 * 0.5) and accuracy[1] == 1.0  # clamped, not 150%
    assert axis_range([0.0, 0.02], AXES["accuracy"])[0] == 0.0
    one = axis_range([0.989], AXES["accuracy"])  # one point: ten points of accuracy around it, whole-% ticks apart
    assert one[0] < 0.94 and one[1] == 1.0
    size = axis_range([1_000, 100_000], AXES["size"])  # log10 units: 3..5, padded
    assert size == pytest.approx([3 - 0.12, 5 + 0.12])
    assert axis_range([183_053], AXES["size"]) == pytest.approx([np.log10(183_053) - 0.56, np.log10(183_053) + 0.56])
    latency = axis_range([1.0, 1.0], AXES["latency"])
    assert latency[0] < 1.0 < latency[1]  # one value: still not on the edge
    assert axis_range([float("nan")], AXES["latency"]) is None
