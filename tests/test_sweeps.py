"""Sweeps evaluate each configuration as evaluate() would; the Pareto front matches a brute-force check."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from compressor import Prune, Quantize, Recipe, compress, evaluate, load_sample
from compressor.sweeps import pareto_front, pareto_mask, sweep


def test_pareto_mask_hand_computed_case():
    # (accuracy ↑, bytes ↓): b dominates d; a, b, c trade off; e equals b so neither dominates the other
    points = np.array([[0.99, 100], [0.95, 40], [0.90, 10], [0.94, 50], [0.95, 40]])
    assert pareto_mask(points, [True, False]).tolist() == [True, True, True, False, True]


def test_pareto_mask_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    points = rng.integers(0, 6, size=(40, 3)).astype(float)
    maximize = [True, False, False]
    signed = points * np.array([-1, 1, 1])
    expected = [
        not any(np.all(signed[j] <= signed[i]) and np.any(signed[j] < signed[i]) for j in range(len(points)))
        for i in range(len(points))
    ]
    assert pareto_mask(points, maximize).tolist() == expected


def test_pareto_front_checks_its_objectives():
    frame = pd.DataFrame({"accuracy": [0.9, 0.8], "compressed_bytes": [10, 20]})
    assert pareto_front(frame, {"accuracy": "max", "compressed_bytes": "min"}).tolist() == [True, False]
    with pytest.raises(ValueError, match="'latency_ms' is not a column"):
        pareto_front(frame, {"latency_ms": "min"})
    with pytest.raises(ValueError, match="sense 'up'"):
        pareto_front(frame, {"accuracy": "up"})


def test_sweep_rows_equal_individual_reports_and_report_progress():
    sample = load_sample("digits-mlp")
    recipes = {(a, b): [Prune(amount=a), Quantize(bits=b)] for a, b in itertools.product((0.5, 0.9), (2, 8))}
    seen = []
    table = sweep(sample.model, sample.data, recipes, progress=lambda f, label: seen.append(f))
    assert seen == [0.25, 0.5, 0.75, 1.0]
    assert len(table) == 4
    row = table.set_index("label").loc[[(0.9, 2)]].iloc[0]
    recipe = Recipe(tuple(recipes[(0.9, 2)]))
    small = compress(sample.model, recipe, sample.data)
    direct = evaluate(small, sample.data, sample.model, latency=None, recipe=recipe.to_dict())
    assert row["accuracy"] == direct.accuracy and row["compressed_bytes"] == direct.compressed_bytes
    assert table["latency_ms"].isna().all()
