"""Low-rank figures: the data they draw (spectra, cuts, energy kept, sweep curves, the marked points)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from compressor.figures.low_rank import (
    LayerSpectrum, SweepPoint, accuracy_vs_params, singular_value_spectra, spectrum_info,
)
from compressor.low_rank import rank_for, singular_values
from sample_models import load

SPECTRA = {"fc1": np.array([4.0, 2.0, 1.0, 0.5]), "fc2": np.array([3.0, 0.0])}


def traces(fig: go.Figure, suffix: str) -> dict[str, go.Scatter]:
    return {t.legendgroup: t for t in fig.data if t.name.endswith(suffix)}


def test_spectrum_info_computes_energy_kept_independently():
    info = spectrum_info(SPECTRA, {"fc1": 2, "fc2": 1})
    assert [layer.name for layer in info] == ["fc1", "fc2"]
    assert info[0].rank == 2
    assert info[0].energy == pytest.approx((16 + 4) / (16 + 4 + 1 + 0.25))
    assert info[1].energy == pytest.approx(1.0)
    assert isinstance(info[0], LayerSpectrum)


def test_spectrum_info_draws_only_layers_with_a_rank_and_rejects_unknown_ones():
    assert [layer.name for layer in spectrum_info(SPECTRA, {"fc2": 1})] == ["fc2"]
    with pytest.raises(ValueError, match="fc9"):
        spectrum_info(SPECTRA, {"fc9": 1})
    with pytest.raises(ValueError, match="rank"):
        spectrum_info(SPECTRA, {"fc1": 5})


def test_spectra_split_kept_and_dropped_values_at_the_cut():
    fig = singular_value_spectra(SPECTRA, {"fc1": 2, "fc2": 2})
    kept = {t.legendgroup: t for t in fig.data if t.showlegend is not False}
    assert list(kept["fc1"].x) == [1, 2] and list(kept["fc1"].y) == [4.0, 2.0]
    assert "r = 2 of 4" in kept["fc1"].name and "energy kept 94.1%" in kept["fc1"].name
    dropped = traces(fig, "dropped")
    assert list(dropped["fc1"].x) == [2, 3, 4] and list(dropped["fc1"].y) == [2.0, 1.0, 0.5]
    assert "fc2" not in dropped  # fc2 keeps everything: nothing dropped
    cuts = traces(fig, "cut")
    assert (list(cuts["fc1"].x), list(cuts["fc1"].y)) == ([2], [2.0])
    assert fig.layout.yaxis.type == "log"


def test_zero_singular_values_are_gaps_on_the_log_axis():
    fig = singular_value_spectra(SPECTRA, {"fc2": 2})
    kept = next(t for t in fig.data if t.showlegend is not False)
    assert kept.y[0] == 3.0 and np.isnan(kept.y[1])


def test_spectra_of_a_sample_cnn_mark_the_rank_low_rank_would_pick():
    model = load("digits-cnn").model
    spectra = singular_values(model)
    ranks = {name: rank_for(s, energy=0.9) for name, s in spectra.items()}
    fig = singular_value_spectra(spectra, ranks)
    cuts = traces(fig, "cut")
    assert set(cuts) == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    for name, trace in cuts.items():
        assert trace.x[0] == ranks[name]
        assert trace.y[0] == pytest.approx(spectra[name][ranks[name] - 1])


def sweep_points() -> pd.DataFrame:
    return pd.DataFrame({
        "series": ["rank ratio", "rank ratio", "energy", "energy"],
        "label": ["0.5", "0.1", "0.9", "0.99"],
        "params": [30_000, 8_000, 20_000, 40_000],
        "accuracy": [0.90, 0.40, 0.85, 0.97],
    })


def test_accuracy_vs_params_draws_one_sorted_curve_per_series_and_marks_points():
    fig = accuracy_vs_params(sweep_points(), SweepPoint(25_000, 0.88, "this setting"), SweepPoint(50_000, 0.98, "base"))
    curves = {t.name: t for t in fig.data}
    assert list(curves["rank ratio"].x) == [8_000, 30_000] and list(curves["rank ratio"].y) == [0.40, 0.90]
    assert list(curves["rank ratio"].text) == ["0.1", "0.5"]
    assert list(curves["energy"].x) == [20_000, 40_000]
    assert (list(curves["this setting"].x), list(curves["this setting"].y)) == ([25_000], [0.88])
    assert (list(curves["base"].x), list(curves["base"].y)) == ([50_000], [0.98])
    assert [shape.x0 for shape in fig.layout.shapes] == [50_000]  # the baseline's parameter count


def test_accuracy_vs_params_names_missing_columns():
    with pytest.raises(ValueError, match="series"):
        accuracy_vs_params(sweep_points().drop(columns="series"), SweepPoint(1, 1.0, "a"), SweepPoint(1, 1.0, "b"))


def test_numerically_zero_directions_are_gaps_and_every_other_value_stays_on_the_log_axis():
    spectra = {"fc1": np.array([10.0, 1.0, 1e-4, 1e-15]), "fc2": np.array([2.0, 0.5])}
    fig = singular_value_spectra(spectra, {"fc1": 2, "fc2": 1})
    low, high = fig.layout.yaxis.range
    assert low < -4 < 1 < high  # 1e-4 (5 decades below σ_max) is on the axis ...
    assert low > -5  # ... 1e-15 (numerically zero: ≤ 1e-6·σ_max) is not allowed to squash it
    dropped = traces(fig, "dropped")["fc1"]
    assert list(dropped.x) == [2, 3, 4] and dropped.y[1] == 1e-4 and np.isnan(dropped.y[2])
    drawn = [y for t in fig.data for y in t.y if y is not None and np.isfinite(y)]
    assert all(low <= np.log10(y) <= high for y in drawn)
    assert fig.layout.legend.y < 0  # below the plot, not over the spectra


