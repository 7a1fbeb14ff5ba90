"""Evaluate a compressed model against its baseline. Every number is measured, none estimated:
accuracy on held-out data, size as the bytes of the exported file, latency timed on this machine."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from compressor import fidelity
from compressor.costs import layer_costs, totals
from compressor.data import DataSplits, Split
from compressor.artifact import encode
from compressor.inference import macro_f1, predictions, score  # noqa: F401 (score, macro_f1: re-exported)
from compressor.latency import LatencyConfig, measure_latency
from compressor.sparse_kernel import SparseTiming
from compressor.state import recipe_of


@dataclass(frozen=True)
class Deployment:
    """The compressed model deployed on ONNX Runtime, next to the fp32 baseline deployed the same way."""

    kernel: str  # "fp32" | "int8" | "int4" | "simulated" (no native kernel: runs in fp32)
    kernel_detail: str  # which operators, granularity, why
    simulated: bool  # True: the file is real, the deployed latency is fp32's
    runtime: str  # "onnxruntime"
    runtime_version: str
    execution_provider: str
    op_types: list[str]  # operators of the deployed graph (before ORT's own fusions)
    deployed_bytes: int  # the deployed .onnx file
    baseline_bytes: int  # the fp32 baseline's .onnx file
    deployed_accuracy: float  # of the deployed model itself
    simulated_accuracy: float  # of the PyTorch model (the report's accuracy)
    baseline_accuracy: float  # of the deployed fp32 baseline
    deployed_latency_ms: float  # median per batch
    deployed_latency_spread_ms: float  # interquartile range
    deployed_baseline_latency_ms: float
    deployed_speedup: float  # deployed_baseline_latency_ms / deployed_latency_ms
    batch_size: int
    sequence_length: int | None  # tokens per input for sequence models; None for fixed-size inputs
    threads: int
    runs: int
    denormals_flushed: bool  # ORT flushes subnormal floats to zero (FTZ/DAZ) in these sessions
    cpu_flags: list[str]
    sparse: SparseTiming | None = None  # unstructured zeros: dense vs CSR kernel at batch 1 (eager, SciPy CSR)
    notes: list[str] = field(default_factory=list)
    metric: str = "accuracy"  # what the *_accuracy fields hold: "accuracy", or "cosine" (embedding models: mean
    #                           cosine similarity to the uncompressed model's embeddings, see compressor.fidelity)
    deployed_worst_cosine: float | None = None  # embedding models: the deployed model's worst cosine


@dataclass(frozen=True)
class Report:
    """A compressed model next to its baseline. Accuracy values are fractions (0.97 = 97%)."""

    metric: str  # "accuracy" (labelled data), "agreement" (share of the baseline's predictions kept) or "cosine"
    # (embedding models: accuracy is then the mean cosine similarity to the baseline's embeddings, see `fidelity`)
    accuracy: float
    baseline_accuracy: float
    accuracy_drop: float  # baseline_accuracy − accuracy
    macro_f1: float
    baseline_macro_f1: float
    params: int
    baseline_params: int
    nonzero_params: int
    dense_bytes: int  # 4 bytes per parameter of this model
    baseline_dense_bytes: int  # 4 bytes per parameter of the baseline: the fp32 model
    compressed_bytes: int  # size of the exported file
    compression_ratio: float  # baseline_dense_bytes / compressed_bytes
    macs: int  # multiply-accumulates per example, as the layers run
    baseline_macs: int
    effective_macs: int  # zero weights skipped: what a sparse kernel could save
    latency_ms: float | None  # median per batch; None when latency was not timed
    latency_spread_ms: float | None  # interquartile range
    baseline_latency_ms: float | None
    baseline_latency_spread_ms: float | None
    speedup: float | None  # baseline_latency_ms / latency_ms; None when not timed or the model is the baseline
    batch_size: int | None
    threads: int | None
    latency_runs: int | None
    denormals_flushed: bool | None  # subnormal floats treated as zero while timing, as deployment runtimes do
    subnormal_params: int  # parameters holding a subnormal float (non-zero, |x| < 1.18e-38)
    baseline_subnormal_params: int
    test_examples: int
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # plain-language caveats: where a technique gives no speedup
    recipe: dict[str, Any] | None = None
    fidelity: dict[str, Any] | None = None  # embedding models: compressor.fidelity.Fidelity as a dict, else None
    deployment: Deployment | None = None  # ONNX Runtime measurement (compressor.deploy.with_deployment), if taken

    @property
    def deployed_latency_ms(self) -> float | None:
        return self.deployment and self.deployment.deployed_latency_ms

    @property
    def deployed_baseline_latency_ms(self) -> float | None:
        return self.deployment and self.deployment.deployed_baseline_latency_ms

    @property
    def deployed_speedup(self) -> float | None:
        return self.deployment and self.deployment.deployed_speedup

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_frame(self) -> pd.DataFrame:
        """The per-layer table."""
        return pd.DataFrame(self.layers)

    def summary_frame(self) -> pd.DataFrame:
        """Baseline and compressed side by side, one row per measure."""
        rows = [
            (self.metric, self.baseline_accuracy, self.accuracy),
            ("macro-F1", self.baseline_macro_f1, self.macro_f1),
            *self._fidelity_rows(),
            ("parameters", self.baseline_params, self.params),
            ("non-zero parameters", self.baseline_params, self.nonzero_params),
            ("size (bytes)", self.baseline_dense_bytes, self.compressed_bytes),
            ("MACs per example", self.baseline_macs, self.macs),
            ("effective MACs", self.baseline_macs, self.effective_macs),
            ("latency (ms per batch)", self.baseline_latency_ms, self.latency_ms),
        ]
        if self.deployment is not None:
            rows += [
                (f"{self.metric} deployed", self.deployment.baseline_accuracy, self.deployment.deployed_accuracy),
                ("deployed latency (ms per batch)", self.deployed_baseline_latency_ms, self.deployed_latency_ms),
            ]
        return pd.DataFrame(rows, columns=["measure", "baseline", "compressed"]).set_index("measure")

    def _fidelity_rows(self) -> list[tuple[str, float, float]]:
        """Embedding models: worst cosine, top-k neighbour agreement and topic accuracy (macro-F1 is the topics')."""
        if self.fidelity is None:
            return []
        f = self.fidelity
        return [
            ("worst cosine", 1.0, f["worst_cosine"]),
            (f"top-{f['neighbours']} neighbour agreement", 1.0, f["neighbour_agreement"]),
            ("topic accuracy", f["baseline_topic_accuracy"], f["topic_accuracy"]),
        ]


def evaluate(
    model: nn.Module,
    data: DataSplits,
    baseline: nn.Module | None = None,
    latency: LatencyConfig | None = LatencyConfig(),
    recipe: dict[str, Any] | None = None,
    reference: fidelity.Reference | None = None,
) -> Report:
    """Measure `model` against `baseline` (default: itself) on the held-out split.

    With labels, accuracy is against them; without, "agreement" is the share of the baseline's predictions
    the model reproduces. latency=None skips timing (the report's latency fields are then None). A model
    against itself or an unchanged copy is timed once and gets no speedup: there is no ratio to state.
    Timing flushes denormals (see `latency.py`); the notes say so when either model holds subnormal weights.
    The models are switched to eval mode for the measurement and left in their own modes afterwards.
    recipe=None takes the recipe the model carries from `compress`, as `export` does, so sizes agree.
    Embedding data (`data.kind == "embedding"`): metric "cosine", accuracy the mean cosine similarity to the
    baseline's embeddings, macro-F1 the topics' (nearest centroid), all measures in `fidelity`;
    `reference` (from `compressor.fidelity.reference(baseline, data)`) skips re-embedding with the baseline.
    """
    recipe = recipe if recipe is not None else recipe_of(model)
    baseline = model if baseline is None else baseline
    with _eval_mode(model, baseline):
        return _measure(model, data, baseline, latency, recipe, reference)


def _measure(
    model: nn.Module, data: DataSplits, baseline: nn.Module, latency: LatencyConfig | None, recipe: dict[str, Any] | None,
    reference: fidelity.Reference | None,
) -> Report:
    test: Split = data.test
    if data.kind == "embedding":
        found = fidelity.measure(model, data, reference if reference is not None else fidelity.reference(baseline, data))
        metric, accuracy, base_accuracy, f1, base_f1 = (
            "cosine", found.mean_cosine, 1.0, found.topic_macro_f1, found.baseline_topic_macro_f1)
    else:
        found = None
        metric, accuracy, base_accuracy, f1, base_f1 = _classification(model, baseline, test)

    costs = layer_costs(model, data.example_input)
    base_totals = totals(layer_costs(baseline, data.example_input)) if baseline is not model else totals(costs)
    artifact = encode(model, recipe=recipe)
    table = _layer_table(costs, artifact.layer_bytes)
    own = totals(costs)

    lat = base_lat = None
    if latency is not None:
        same = same_model(model, baseline)  # timed once: a model against itself has no ratio
        timing = measure_latency({"model": model} if same else {"model": model, "baseline": baseline}, test.X, latency)
        lat = timing["model"]
        base_lat = lat if same else timing["baseline"]
    speedup = None if lat is None or lat is base_lat else base_lat.median_ms / lat.median_ms
    subnormal, base_subnormal = subnormal_count(model), subnormal_count(baseline)
    return Report(
        metric=metric,
        accuracy=accuracy,
        baseline_accuracy=base_accuracy,
        accuracy_drop=base_accuracy - accuracy,
        macro_f1=f1,
        baseline_macro_f1=base_f1,
        params=own["params"],
        baseline_params=base_totals["params"],
        nonzero_params=own["nonzero_params"],
        dense_bytes=own["dense_bytes"],
        baseline_dense_bytes=base_totals["dense_bytes"],
        compressed_bytes=artifact.size,
        compression_ratio=base_totals["dense_bytes"] / artifact.size,
        macs=own["macs"],
        baseline_macs=base_totals["macs"],
        effective_macs=own["effective_macs"],
        latency_ms=lat and lat.median_ms,
        latency_spread_ms=lat and lat.spread_ms,
        baseline_latency_ms=base_lat and base_lat.median_ms,
        baseline_latency_spread_ms=base_lat and base_lat.spread_ms,
        speedup=speedup,
        batch_size=lat and lat.batch_size,
        threads=lat and lat.threads,
        latency_runs=lat and lat.runs,
        denormals_flushed=lat and lat.denormals_flushed,
        subnormal_params=subnormal,
        baseline_subnormal_params=base_subnormal,
        test_examples=len(test),
        layers=table,
        notes=_notes(table, own, base_totals, speedup) + _subnormal_notes(subnormal, base_subnormal, lat),
        recipe=recipe,
        fidelity=None if found is None else found.to_dict(),
    )


@contextmanager
def _eval_mode(*models: nn.Module) -> Iterator[None]:
    """Every module of `models` in eval mode inside the block, and back in its own train/eval mode after."""
    modes = [(module, module.training) for model in models for module in model.modules()]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def same_model(a: nn.Module, b: nn.Module) -> bool:
    """True when `a` is `b` or an unchanged copy of it: same architecture and equal parameters and buffers."""
    if a is b:
        return True
    if repr(a) != repr(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa
    )


def subnormal_count(model: nn.Module) -> int:
    """Floating-point parameters holding a subnormal value: non-zero and smaller in magnitude than finfo.tiny."""
    count = 0
    for p in model.parameters():
        if p.is_floating_point():
            count += int(((p != 0) & (p.abs() < torch.finfo(p.dtype).tiny)).sum())
    return count


def _classification(model: nn.Module, baseline: nn.Module, test: Split) -> tuple[str, float, float, float, float]:
    """Metric name, accuracy, baseline accuracy, macro-F1 and baseline macro-F1 of a classifier."""
    reference = predictions(baseline, test.X)
    pred = reference if model is baseline else predictions(model, test.X)
    target, metric = (test.y, "accuracy") if test.y is not None else (reference, "agreement")
    accuracy, f1 = score(pred, target)
    base_accuracy, base_f1 = score(reference, target)
    return metric, accuracy, base_accuracy, f1, base_f1


def _layer_table(costs, layer_bytes: dict[str, int]) -> list[dict[str, Any]]:
    rows = []
    for cost in costs:
        row = asdict(cost)
        row["shape"] = "×".join(map(str, cost.shape)) if cost.shape else ""
        row["sparsity"] = 1 - cost.nonzero / cost.params if cost.params else 0.0
        row["bytes"] = layer_bytes.get(cost.name, 0)
        rows.append(row)
    return rows


def _notes(table: list[dict[str, Any]], own: dict, base: dict, speedup: float | None) -> list[str]:
    """What the numbers mean: in particular, where a saving on paper is not a saving in time."""
    notes = []
    weighted = [row for row in table if row["macs"]]
    if any(row["sparsity"] > 0.01 for row in weighted):
        how = "pruned or rounded to zero by quantization" if any(row["bits"] < 32 for row in weighted) else "zero"
        notes.append(
            f"{1 - own['nonzero_params'] / own['params']:.0%} of the parameters are {how}, but PyTorch runs them "
            f"through dense kernels: effective MACs ({own['effective_macs']:,}) are what a sparse kernel could "
            f"skip, not what this runtime skips. Zeros shrink the file, not the latency."
        )
    if any(row["bits"] < 32 for row in weighted):
        notes.append(
            "Quantized weights are stored at their bit width in the exported file, but the model computes in fp32 "
            "(simulated quantization): no latency gain is expected on this runtime."
        )
    if own["macs"] < base["macs"]:
        notes.append(
            f"The computation really got smaller: {base['macs']:,} → {own['macs']:,} MACs per example "
            "(fewer channels, factorized layers or a smaller network change the dense work itself)."
        )
    if speedup is not None:
        notes.append(f"Measured speedup on this machine: {speedup:.2f}× (below 1 means slower).")
    return notes


def _subnormal_notes(own: int, base: int, lat) -> list[str]:
    """Say so when weights hold subnormal floats: on many CPUs they slow dense kernels down tenfold."""
    if not own and not base:
        return []
    counts = f"this model {own:,}, the baseline {base:,}"
    timing = "" if lat is None else (
        " Latency was timed with denormals flushed to zero, as deployment runtimes do, so they do not inflate it."
        if lat.denormals_flushed else " This CPU cannot flush denormals: they may inflate the latency measured here.")
    return [
        f"Subnormal weights (non-zero values below 1.2e-38, typically dead channels after weight decay): {counts}. "
        f"Many CPUs compute on them about ten times slower unless denormals are flushed to zero.{timing}"
    ]
