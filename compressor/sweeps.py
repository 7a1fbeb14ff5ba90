"""Evaluate many configurations and compare them: sweep tables and the Pareto front."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from compressor.data import DataSplits
from compressor.fidelity import Reference
from compressor.fidelity import reference as fidelity_reference
from compressor.latency import LatencyConfig
from compressor.pipeline import RecipeLike, as_recipe, compress
from compressor.report import Report, evaluate

SUMMARY_KEYS = (
    "accuracy", "baseline_accuracy", "accuracy_drop", "macro_f1", "params", "nonzero_params", "compressed_bytes",
    "compression_ratio", "macs", "effective_macs", "latency_ms", "baseline_latency_ms", "speedup",
    "deployed_latency_ms", "deployed_baseline_latency_ms", "deployed_speedup",
)


def summary(report: Report) -> dict[str, Any]:
    """The headline numbers of a report, one flat row; `kernel` says how it was deployed ("simulated": no native
    kernel, fp32 latency; None: not deployed) and `deployed_accuracy` is the deployed model's own."""
    deployment = report.deployment
    return {key: getattr(report, key) for key in SUMMARY_KEYS} | {
        "kernel": deployment and deployment.kernel,
        "deployed_accuracy": deployment and deployment.deployed_accuracy,
    }


def sweep(
    model: nn.Module,
    data: DataSplits,
    recipes: Mapping[Any, RecipeLike],
    latency: LatencyConfig | None = None,
    progress: Callable[[float, str], None] | None = None,
    reference: Reference | None = None,
) -> pd.DataFrame:
    """One row per labelled recipe: its report's headline numbers and the recipe as JSON.

    `progress(fraction_done, label)` is called after each configuration (the app drives st.progress with it).
    Embedding data: the baseline's embeddings (`reference`) are computed once for all rows unless given.
    """
    if data.kind == "embedding" and reference is None:
        reference = fidelity_reference(model, data)
    rows = []
    for i, (label, recipe) in enumerate(recipes.items()):
        recipe = as_recipe(recipe)
        report = evaluate(compress(model, recipe, data), data, baseline=model, latency=latency, recipe=recipe.to_dict(),
                          reference=reference)
        rows.append({"label": label, **summary(report), "recipe": recipe.canonical_json()})
        if progress is not None:
            progress((i + 1) / len(recipes), str(label))
    return pd.DataFrame(rows)


def pareto_mask(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """True for points no other point dominates (at least as good in every objective, better in one).

    points: (n, k) objective values; maximize[j] says whether objective j is better high.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != len(maximize):
        raise ValueError(f"points of shape {points.shape} need one column per objective ({len(maximize)})")
    signs = np.where(np.asarray(maximize), -1.0, 1.0)  # turn every objective into "lower is better"
    costs = points * signs  # (n, k)
    no_worse = (costs[:, None, :] <= costs[None, :, :]).all(axis=2)  # [i, j]: i is no worse than j everywhere
    better = (costs[:, None, :] < costs[None, :, :]).any(axis=2)
    dominated = (no_worse & better).any(axis=0)
    return ~dominated


def pareto_front(frame: pd.DataFrame, objectives: Mapping[str, str]) -> pd.Series:
    """Boolean Series marking the rows of `frame` on the Pareto front of `objectives` ({column: "max" | "min"})."""
    for column, sense in objectives.items():
        if sense not in ("max", "min"):
            raise ValueError(f"objective {column!r} has sense {sense!r}; allowed: 'max', 'min'")
        if column not in frame.columns:
            raise ValueError(f"objective {column!r} is not a column; columns are: {', '.join(frame.columns)}")
    if frame.empty:
        return pd.Series([], dtype=bool, index=frame.index)
    mask = pareto_mask(frame[list(objectives)].to_numpy(), [sense == "max" for sense in objectives.values()])
    return pd.Series(mask, index=frame.index)
