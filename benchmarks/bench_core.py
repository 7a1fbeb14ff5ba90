"""Speed budgets of the core, printed as JSON: `python benchmarks/bench_core.py`.

- median time to apply-and-evaluate (without latency timing) each technique on both samples;
- wall time of a 30-configuration (sparsity × bits) grid on digits-mlp;
- compression ratio and accuracy drop of digits-mlp at 90% global magnitude sparsity + 4-bit per-channel symmetric.
Budgets on a 2-core machine: ≤ 50 ms per configuration on digits-mlp, ≤ 200 ms on digits-cnn.
"""
from __future__ import annotations

import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import compressor as cz  # noqa: E402
from benchmarks.results_io import emit  # noqa: E402
from compressor.sweeps import sweep  # noqa: E402

BUDGET_MS = {"digits-mlp": 50.0, "digits-cnn": 200.0}
REPEATS = 15
TECHNIQUES = {
    "prune magnitude layer 50%": cz.Prune(amount=0.5),
    "prune magnitude global 90%": cz.Prune(amount=0.9, scope="global"),
    "prune taylor 50%": cz.Prune(amount=0.5, criterion="taylor"),
    "prune random 50%": cz.Prune(amount=0.5, criterion="random"),
    "prune structured L2 50%": cz.Prune(amount=0.5, structured=True),
    "quantize 8-bit affine tensor": cz.Quantize(bits=8),
    "quantize 4-bit symmetric channel": cz.Quantize(bits=4, scheme="symmetric", granularity="channel"),
    "quantize 4-bit k-means": cz.Quantize(bits=4, method="kmeans"),
    "quantize 8-bit + activations": cz.Quantize(bits=8, activations=True),
    "low-rank ratio 25%": cz.LowRank(rank_ratio=0.25),
    "low-rank energy 90%": cz.LowRank(energy=0.9),
}


def apply_and_evaluate(sample: cz.Sample, step) -> float:
    """Milliseconds to compress and evaluate once (accuracy, F1, costs, exported size; no latency timing)."""
    start = time.perf_counter()
    small = cz.compress(sample.model, step, sample.data)
    cz.evaluate(small, sample.data, baseline=sample.model, latency=None)
    return (time.perf_counter() - start) * 1000


def technique_times(sample: cz.Sample) -> dict[str, float]:
    times = {}
    for label, step in TECHNIQUES.items():
        apply_and_evaluate(sample, step)  # warm-up
        times[label] = round(statistics.median(apply_and_evaluate(sample, step) for _ in range(REPEATS)), 2)
    return times


def grid(sample: cz.Sample) -> dict:
    configs = {
        f"{s:.0%} sparsity, {b}-bit": [cz.Prune(amount=s, scope="global"), cz.Quantize(bits=b, scheme="symmetric", granularity="channel")]
        for s, b in itertools.product((0.0, 0.5, 0.7, 0.8, 0.9, 0.95), (8, 6, 4, 3, 2))
    }
    start = time.perf_counter()
    table = sweep(sample.model, sample.data, configs)
    wall = time.perf_counter() - start
    return {"configurations": len(table), "wall_s": round(wall, 3), "per_configuration_ms": round(wall * 1000 / len(table), 2)}


def headline(sample: cz.Sample) -> dict:
    recipe = cz.Recipe((cz.Prune(amount=0.9, scope="global"), cz.Quantize(bits=4, scheme="symmetric", granularity="channel")))
    report = cz.evaluate(cz.compress(sample.model, recipe, sample.data), sample.data, baseline=sample.model, latency=None,
                         recipe=recipe.to_dict())
    return {
        "recipe": recipe.to_dict(),
        "baseline_accuracy": round(report.baseline_accuracy, 4),
        "accuracy": round(report.accuracy, 4),
        "accuracy_drop_points": round(report.accuracy_drop * 100, 2),
        "fp32_bytes": report.baseline_dense_bytes,
        "compressed_bytes": report.compressed_bytes,
        "compression_ratio": round(report.compression_ratio, 2),
    }


def main() -> None:
    torch.set_num_threads(1)
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "apply_and_evaluate_median_ms": {},
        "budget_ms": BUDGET_MS,
    }
    for name in ("digits-mlp", "digits-cnn"):
        sample = cz.load_sample(name)
        times = technique_times(sample)
        results["apply_and_evaluate_median_ms"][name] = times
        results.setdefault("within_budget", {})[name] = max(times.values()) <= BUDGET_MS[name]
    mlp = cz.load_sample("digits-mlp")
    results["grid_digits_mlp"] = grid(mlp)
    results["grid_within_budget"] = results["grid_digits_mlp"]["per_configuration_ms"] <= BUDGET_MS["digits-mlp"]
    results["digits_mlp_90pct_global_4bit_channel_symmetric"] = headline(mlp)
    emit(results, __file__)


if __name__ == "__main__":
    main()
