"""Pruning figures: the data behind each figure is checked exactly, then the figure is checked to draw it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from compressor import prune, prune_channels
from compressor.figures.pruning import (
    KEPT, REMOVED_COLUMN, REMOVED_ROW, ZEROED, amount_sweep, amount_sweep_info, as_matrix, kept_positions,
    histogram_bins, layer_changes, layer_removal, layer_removal_info, mask_heatmap, mask_info, weight_histogram, weight_histogram_info,
)


def row(name: str, params: int, nonzero: int, macs: int = 1) -> dict:
    return {"name": name, "params": params, "nonzero": nonzero, "macs": macs}


def test_layer_removal_separates_zeroed_from_removed():
    before = [row("fc1", 100, 100), row("bn", 10, 10, macs=0), row("fc2", 40, 40)]
    after = [row("fc1", 100, 25), row("bn", 10, 10, macs=0), row("fc2", 20, 15)]
    info = layer_removal_info(before, after)
    assert info.names == ["fc1", "fc2"]  # layers without MACs (BatchNorm) are not drawn
    assert info.zeroed == [0.75, 5 / 40]
    assert info.removed == [0.0, 0.5]
    fig = layer_removal(before, after)
    assert [list(t.y) for t in fig.data] == [info.zeroed, info.removed]
    assert fig.layout.barmode == "stack"


def test_layer_changes_lists_shapes_zeros_and_macs_of_weighted_layers():
    before = [{**row("fc1", 100, 100, macs=90), "shape": "9×10"}, {**row("bn", 4, 4, macs=0), "shape": "4"}]
    after = [{**row("fc1", 50, 25, macs=40), "shape": "4×10", "sparsity": 0.5}, {**row("bn", 4, 4, macs=0), "shape": "4", "sparsity": 0.0}]
    table = layer_changes(before, after)
    assert table.to_dict("records") == [{"layer": "fc1", "shape": "9×10 → 4×10", "zeros": "50%", "MACs": "90 → 40"}]


def test_weight_histogram_counts_zeros_apart_and_removed_weights():
    before = np.array([-0.9, -0.6, -0.1, 0.1, 0.6, 0.9])  # bin edges -0.9, -0.45, 0, 0.45, 0.9
    after = np.array([-0.9, 0.0, 0.0, 0.9])  # two pruned to zero, two removed with a channel
    info = weight_histogram_info(before, after, bins=4)
    np.testing.assert_allclose(info.centers, [-0.675, -0.225, 0.225, 0.675])
    assert info.before.tolist() == [2, 1, 1, 2]
    assert info.after.tolist() == [1, 0, 0, 1]
    assert (info.zeros, info.removed) == (2, 2)
    fig = weight_histogram(before, after, "fc1", bins=4)
    zero_bar = fig.data[-1]
    assert list(zero_bar.x) == [0.0] and list(zero_bar.y) == [2]
    assert fig.layout.yaxis.type == "log"
    assert "2 removed" in fig.layout.title.text


def test_weight_histogram_of_magnitude_pruning_empties_the_middle(residual_cnn):
    pruned = prune(residual_cnn, 0.5)
    before = residual_cnn.head.weight.detach().numpy()
    info = weight_histogram_info(before, pruned.head.weight.detach().numpy(), bins=40)
    assert info.zeros == round(0.5 * before.size) and info.removed == 0
    threshold = np.sort(np.abs(before).ravel())[info.zeros - 1]
    inner = np.abs(info.centers) + info.width / 2 < threshold  # bins entirely inside the pruned band
    assert inner.any() and info.after[inner].sum() == 0
    assert info.after.sum() + info.zeros == before.size


def test_histogram_bins_grow_with_the_number_of_weights_within_bounds():
    assert [histogram_bins(n) for n in (9, 54, 400, 30000)] == [10, 15, 40, 60]


def test_as_matrix_flattens_conv_kernels():
    assert as_matrix(np.zeros((16, 6, 3, 3))).shape == (16, 54)
    assert as_matrix(np.zeros((10, 84))).shape == (10, 84)


def test_kept_positions_recovers_a_submatrix_with_repeated_values():
    rng = np.random.default_rng(0)
    before = rng.normal(size=(8, 10))
    before[:, 0] = 0.0  # a repeated value: its positions are ambiguous
    rows, columns = np.array([1, 2, 6]), np.array([0, 3, 4, 9])
    found = kept_positions(before, before[np.ix_(rows, columns)])
    assert found is not None
    assert found[0].tolist() == rows.tolist() and found[1].tolist() == columns.tolist()
    assert kept_positions(before, rng.normal(size=(3, 4))) is None  # not a submatrix


def test_mask_of_unstructured_pruning_marks_zeros():
    before = np.array([[1.0, -2.0], [0.5, 3.0]])
    after = np.array([[0.0, -2.0], [0.0, 3.0]])
    info = mask_info(before, after)
    assert info.cells.tolist() == [[ZEROED, KEPT], [ZEROED, KEPT]]
    fig = mask_heatmap(before, after, "fc")
    assert np.asarray(fig.data[0].z).tolist() == [[1, 0], [1, 0]]  # states present, in order kept, pruned
    assert list(fig.data[0].colorbar.ticktext) == ["kept", "pruned (zero)"]
    assert "2 of 4 weights kept" in fig.layout.title.text


def test_mask_of_channel_pruning_shows_removed_rows_and_columns():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3)  # (6, 4, 3, 3)
    kept_out, kept_in = [0, 2, 3, 5], [1, 2]
    shrunk = conv.weight.detach()[kept_out][:, kept_in]  # what channel surgery leaves: (4, 2, 3, 3)
    info = mask_info(conv.weight.detach().numpy(), shrunk.numpy())
    assert info.cells.shape == (6, 36)
    assert info.kept_rows.tolist() == kept_out
    assert info.kept_columns.tolist() == list(range(9, 27))  # input channels 1 and 2, 9 kernel positions each
    assert (info.cells[[1, 4]] == REMOVED_ROW).all()
    assert (info.cells[np.ix_(kept_out, range(9))] == REMOVED_COLUMN).all()
    assert (info.cells[np.ix_(kept_out, range(9, 27))] == KEPT).all()
    fig = mask_heatmap(conv.weight.detach().numpy(), shrunk.numpy(), "conv")
    assert fig.layout.yaxis.autorange == "reversed"
    assert list(fig.data[0].colorbar.ticktext) == ["kept", "removed output channel", "removed input (upstream channel)"]


def test_mask_follows_real_channel_pruning(residual_cnn, cnn_input):
    pruned = prune_channels(residual_cnn, 0.5, cnn_input)
    before, after = residual_cnn.stem[0].weight.detach().numpy(), pruned.stem[0].weight.detach().numpy()
    info = mask_info(before, after)
    assert info.kept_rows is not None and len(info.kept_rows) == after.shape[0] < before.shape[0]
    assert (info.cells == REMOVED_ROW).sum() == (before.shape[0] - after.shape[0]) * as_matrix(before).shape[1]


def sweep_table() -> pd.DataFrame:
    return pd.DataFrame({
        "criterion": ["magnitude", "magnitude", "magnitude", "random", "random", "random"],
        "amount": [0.5, 0.0, 0.9, 0.0, 0.5, 0.9],
        "accuracy": [0.97, 0.98, 0.60, 0.98, 0.70, 0.10],
        "macs": [50, 100, 10, 100, 50, 10],
    })


def test_amount_sweep_info_sorts_curves_and_keeps_the_current_point():
    info = amount_sweep_info(sweep_table(), "magnitude", 0.55, 0.96, baseline_macs=100)
    assert info.curves == {"magnitude": ([0.0, 0.5, 0.9], [0.98, 0.97, 0.60]), "random": ([0.0, 0.5, 0.9], [0.98, 0.70, 0.10])}
    assert info.macs == ([0.0, 0.5, 0.9], [1.0, 0.5, 0.1])
    assert info.current == (0.55, 0.96)


def test_amount_sweep_marks_the_current_point_and_highlights_its_criterion():
    fig = amount_sweep(sweep_table(), "random", 0.55, 0.66, baseline_macs=100)
    by_name = {trace.name: trace for trace in fig.data}
    assert set(by_name) == {"magnitude", "random", "MACs computed", "current"}
    assert (list(by_name["current"].x), list(by_name["current"].y)) == ([0.55], [0.66])
    assert by_name["random"].line.width > by_name["magnitude"].line.width
    assert by_name["MACs computed"].yaxis == "y2" and list(by_name["MACs computed"].y) == [1.0, 0.5, 0.1]
    assert fig.layout.yaxis2.overlaying == "y"
    assert isinstance(fig, go.Figure) and fig.to_json()  # renders


@pytest.mark.parametrize("layer", ["fc1", "fc2"])
def test_figures_render_on_a_sample(layer):
    from compressor import load_sample

    sample = load_sample("digits-mlp")
    pruned = prune_channels(sample.model, 0.5, sample.data.example_input)
    before = sample.model.get_submodule(layer).weight.detach().numpy()
    after = pruned.get_submodule(layer).weight.detach().numpy()
    assert mask_info(before, after).kept_rows is not None
    assert mask_heatmap(before, after, layer).to_json() and weight_histogram(before, after, layer).to_json()
