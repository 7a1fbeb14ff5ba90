"""Latency of digits-cnn under three techniques, printed as JSON: `python benchmarks/bench_latency.py`.

The speedups issue 7 found faked by subnormal weights: 50% unstructured magnitude pruning, simulated 8-bit
quantization and 50% structured channel pruning, each timed against the dense model (batch 256, one thread,
models interleaved run by run, median of many runs). Dense CPU kernels slow down on subnormal floats, so a
technique that merely zeroes them looks fast; the harness times with denormals flushed, as deployment
runtimes do. The machine is shared: the milliseconds are upper bounds, the ratios are what to compare.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import compressor as cz  # noqa: E402
from benchmarks.results_io import emit  # noqa: E402
from compressor.latency import measure_latency  # noqa: E402
from compressor.report import subnormal_count  # noqa: E402
from compressor.training import accuracy  # noqa: E402

BATCH, THREADS, RUNS, ROUNDS = 256, 1, 60, 5  # ROUNDS whole measurements per technique: preemption on a loaded
# machine can skew one; the table gives the round with the median speedup, the JSON every round's speedup and
# the ratio of the fastest runs (the least disturbed by other processes)
TECHNIQUES = {
    "prune 50% unstructured magnitude": cz.Prune(amount=0.5),
    "quantize 8-bit (simulated)": cz.Quantize(bits=8),
    "prune 50% structured channels": cz.Prune(amount=0.5, structured=True),
}


def main() -> None:
    torch.set_num_threads(THREADS)
    sample = cz.load_sample("digits-cnn")
    config = cz.LatencyConfig(batch_size=BATCH, threads=THREADS, runs=RUNS)
    rows = {}
    for label, step in TECHNIQUES.items():
        small = cz.compress(sample.model, step, sample.data)
        rounds = sorted((measure_latency({"baseline": sample.model, "model": small}, sample.data.test.X, config)
                         for _ in range(ROUNDS)), key=lambda t: t["baseline"].median_ms / t["model"].median_ms)
        timing = rounds[len(rounds) // 2]
        base, own = timing["baseline"], timing["model"]
        rows[label] = {
            "baseline_ms": round(base.median_ms, 3), "ms": round(own.median_ms, 3),
            "speedup": round(base.median_ms / own.median_ms, 2),
            "speedup_every_round": [round(t["baseline"].median_ms / t["model"].median_ms, 2) for t in rounds],
            "speedup_fastest_runs": round(min(t["baseline"].min_ms for t in rounds) / min(t["model"].min_ms for t in rounds), 2),
            "accuracy": round(100 * accuracy(small, sample.data.test), 2),
            "denormals_flushed": own.denormals_flushed,
        }
    results = {
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "load_average_1min": round(os.getloadavg()[0], 2)},
        "model": "digits-cnn",
        "subnormal_parameters": subnormal_count(sample.model),
        "parameters": sum(p.numel() for p in sample.model.parameters()),
        "batch_size": BATCH, "threads": THREADS, "runs": RUNS, "rounds": ROUNDS,
        "denormals_flushed": all(row["denormals_flushed"] for row in rows.values()),
        "digits_cnn": rows,
    }
    emit(results, __file__)


if __name__ == "__main__":
    main()
