"""Quantization figures: levels drawn where the core's grid is, errors and sweeps drawn from their data."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from compressor import quantize
from compressor.figures.quantization import (
    DB_PER_BIT, bits_sweep, bits_sweep_info, layer_error, layer_error_info, levels_histogram, levels_histogram_info,
)
from compressor.quantization import quantization_error, quantization_levels


def test_levels_histogram_info_counts_weights_and_sorts_levels():
    weights = np.array([-1.0, -0.2, 0.1, 0.3, 0.9, 1.0])
    info = levels_histogram_info(weights, np.array([0.5, -0.5, 0.0]), bins=2)
    assert info.counts.tolist() == [2, 4]  # edges -1, 0, 1
    np.testing.assert_allclose(info.centers, [-0.5, 0.5])
    assert info.width == 1.0
    assert info.levels.tolist() == [-0.5, 0.0, 0.5]


@pytest.mark.parametrize("scheme, bits, expected_levels", [("symmetric", 2, 3), ("affine", 3, 8)])
def test_levels_drawn_are_the_core_grid_of_a_quantized_layer(residual_cnn, scheme, bits, expected_levels):
    quantized = quantize(residual_cnn, bits=bits, scheme=scheme)
    levels = quantization_levels(quantized.head).numpy()
    assert len(levels) == expected_levels
    fig = levels_histogram(residual_cnn.head.weight.detach().numpy(), levels, "head")
    bars, lines = fig.data
    xs = [x for x in lines.x if x is not None]
    assert xs == [v for level in np.sort(levels) for v in (level, level)]  # one vertical segment per level
    assert [y for y in lines.y if y is not None] == [0.0, max(bars.y) * 1.05] * len(levels)
    assert lines.name == f"{expected_levels} levels"
    assert sum(bars.y) == residual_cnn.head.weight.numel()
    snapped = quantized.head.weight.detach().numpy()
    assert np.isin(snapped, levels).all()  # every quantized weight sits on a drawn line


def test_kmeans_levels_are_the_codebook(tiny_transformer):
    quantized = quantize(tiny_transformer, bits=2, method="kmeans")
    module = quantized.get_submodule("embed")
    levels = quantization_levels(module).numpy()
    fig = levels_histogram(tiny_transformer.embed.weight.detach().numpy(), levels, "embed")
    drawn = sorted({x for x in fig.data[1].x if x is not None})
    np.testing.assert_array_equal(drawn, np.sort(module.weight_quant.codebook.numpy()))


def test_layer_error_labels_exact_and_clips_infinite_heights():
    info = layer_error_info({"a": 20.0, "b": math.inf, "c": 8.5})
    assert info.names == ["a", "b", "c"]
    assert info.heights == [20.0, 20.0, 8.5]
    assert info.labels == ["20.0 dB", "exact", "8.5 dB"]
    fig = layer_error({"a": 20.0, "b": math.inf, "c": 8.5})
    assert list(fig.data[0].y) == info.heights and list(fig.data[0].text) == info.labels


def test_layer_error_of_a_real_quantization_grows_about_six_db_per_bit(residual_cnn):
    low = quantization_error(residual_cnn, quantize(residual_cnn, bits=4, scheme="symmetric", granularity="channel"))
    high = quantization_error(residual_cnn, quantize(residual_cnn, bits=6, scheme="symmetric", granularity="channel"))
    gains = [high[name] - low[name] for name in low]
    assert np.median(gains) == pytest.approx(2 * DB_PER_BIT, abs=1.5)
    fig = layer_error(low)
    assert list(fig.data[0].x) == list(low)


def sweep_table() -> pd.DataFrame:
    return pd.DataFrame({"bits": [3, 1, 2], "accuracy": [0.9, 0.1, 0.5], "compressed_bytes": [3000, 1000, 2000]})


def test_bits_sweep_info_sorts_by_bits_and_converts_sizes():
    info = bits_sweep_info(sweep_table(), 2, 0.5, 2000, baseline_accuracy=0.95, baseline_bytes=40000)
    assert info.bits == [1, 2, 3]
    assert info.accuracy == [0.1, 0.5, 0.9]
    assert info.size_kb == [1.0, 2.0, 3.0]
    assert info.current == (2, 0.5, 2.0)
    assert info.baseline == (0.95, 40.0)


def test_bits_sweep_marks_the_current_point_and_puts_size_on_a_second_axis():
    fig = bits_sweep(sweep_table(), 3, 0.88, 3000, baseline_accuracy=0.95, baseline_bytes=40000)
    by_name = {trace.name: trace for trace in fig.data}
    assert (list(by_name["current"].x), list(by_name["current"].y)) == ([3], [0.88])
    assert by_name["size (kB)"].yaxis == "y2" and list(by_name["size (kB)"].y) == [1.0, 2.0, 3.0]
    assert fig.layout.shapes[0].y0 == 0.95  # the fp32 baseline line
    assert "fp32: 40" in fig.layout.yaxis2.title.text
    assert fig.to_json()


def test_a_larger_file_at_fewer_bits_is_explained_on_the_figure():
    table = pd.DataFrame({"bits": [6, 7, 8], "accuracy": [0.9, 0.95, 0.96], "compressed_bytes": [30333, 38714, 38228]})
    info = bits_sweep_info(table, 7, 0.95, 38714, baseline_accuracy=0.96, baseline_bytes=202440)
    assert info.larger_than_next == (7,)
    fig = bits_sweep(table, 7, 0.95, 38714, baseline_accuracy=0.96, baseline_bytes=202440)
    (note,) = fig.layout.annotations[1:]  # after the fp32 line's label
    assert note.text.startswith("7-bit file > 8-bit") and "byte" in note.hovertext
    assert fig.layout.yaxis2.range[0] == 0 and fig.layout.yaxis2.tickmode == "auto"
    assert bits_sweep_info(sweep_table(), 2, 0.5, 2000, 0.95, 40000).larger_than_next == ()


def test_levels_histogram_of_one_channel_uses_that_channels_grid():
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 3)
    with torch.no_grad():
        layer.weight[1] *= 10  # channel 1 has a ten times wider range
    model = torch.nn.Sequential(layer)
    quantized = quantize(model, bits=2, scheme="symmetric", granularity="channel")
    narrow, wide = (quantization_levels(quantized[0], channel).numpy() for channel in (0, 1))
    assert wide.max() > 5 * narrow.max()
    info = levels_histogram_info(layer.weight[1].detach().numpy(), wide)
    assert info.counts.sum() == 6 and info.levels.tolist() == sorted(wide.tolist())
