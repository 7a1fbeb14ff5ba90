"""Does the per-layer search beat hand tuning? `python benchmarks/bench_search.py [--trials 200]` prints JSON
and writes benchmarks/results/bench_search.json.

For each sample: NSGA-II (seeded, population 20 unless --population) over per-layer pruning amount × bit width (fp32, 8, 6, 5, 4, 3,
2), objectives accuracy up and exported bytes down, against a uniform sparsity × bits grid with the SAME number
of evaluations (same quantizer, same per-layer magnitude pruning: the uniform policies go through the same code).
Reported: at each size of the uniform front, the best accuracy either finds within that size; the hypervolume of
both fronts with the same reference point (accuracy = baseline − 0.20, bytes = the fp32 model's 4 bytes per
parameter; the dominated area is normalised by the reference box, so 1.0 would be "baseline accuracy at 0 bytes");
and the wall time of the search (one process, one torch thread, cache of measured recipes included).
The machine is shared with other jobs: times are upper bounds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402

import compressor as cz  # noqa: E402
from compressor.policy import FP32, Evaluator  # noqa: E402
from compressor.search import SearchConfig, SearchSpace, front, hypervolume, run_search, trials_frame  # noqa: E402
from compressor.sensitivity import uniform_grid  # noqa: E402
from compressor.sweeps import pareto_mask  # noqa: E402

SAMPLES = ("digits-mlp", "digits-cnn")
BITS = (FP32, 8, 6, 5, 4, 3, 2)
AMOUNTS = (0.0, 0.95)  # both the search and the grid prune each layer by 0 to 95%
REFERENCE_DROP = 0.20
BUDGET_S = 60.0  # 200 trials on digits-mlp


def uniform_amounts(trials: int) -> list[float]:
    """Sparsity values so that len(amounts) × len(BITS) is the search's number of evaluations."""
    n = max(1, trials // len(BITS))
    return [round(float(a), 4) for a in np.linspace(0.0, AMOUNTS[1], n)]


def uniform_frame(evaluator: Evaluator, trials: int) -> list[dict]:
    rows = []
    for label, policy in uniform_grid(evaluator.layers, uniform_amounts(trials), BITS).items():
        m = evaluator(policy)
        rows.append({"label": label, "quality": m.quality, "bytes": m.bytes})
    return rows


def best_within(points: list[dict], size: int) -> float | None:
    inside = [p["quality"] for p in points if p["bytes"] <= size]
    return max(inside) if inside else None


def compare(name: str, trials: int, seed: int, population: int) -> dict:
    sample = cz.load_sample(name)
    fp32_bytes = 4 * sum(p.numel() for p in sample.model.parameters())
    config = SearchConfig(trials=trials, population=population, seed=seed, objectives=("quality", "bytes"))
    evaluator = Evaluator(sample.model, sample.data)
    start = time.perf_counter()
    study = run_search(evaluator, SearchSpace(amounts=AMOUNTS, bits=BITS), config)
    seconds = time.perf_counter() - start
    frame = trials_frame(study)
    found = front(frame, ("quality", "bytes"))
    searched = frame[["quality", "bytes"]].to_dict("records")

    uniform = uniform_frame(Evaluator(sample.model, sample.data), trials)
    u = np.array([[p["quality"], p["bytes"]] for p in uniform])
    u_front = sorted((uniform[i] for i in np.flatnonzero(pareto_mask(u, [True, False]))), key=lambda p: p["bytes"])

    baseline = frame["baseline_quality"].iloc[0]
    reference = (baseline - REFERENCE_DROP, fp32_bytes)
    box = REFERENCE_DROP * fp32_bytes
    at_size = [{"bytes": p["bytes"], "uniform": p["label"], "uniform_accuracy": p["quality"],
                "search_accuracy": best_within(searched, p["bytes"])} for p in u_front]
    wins = sum(r["search_accuracy"] is not None and r["search_accuracy"] >= r["uniform_accuracy"] for r in at_size)
    return {
        "model": name,
        "population": population,
        "baseline_accuracy": baseline,
        "fp32_bytes": fp32_bytes,
        "evaluations_each": trials,
        "uniform_grid": {"amounts": len(uniform_amounts(trials)), "bits": list(BITS), "evaluations": len(uniform)},
        "search_seconds": round(seconds, 2),
        "search_recipes_measured": evaluator.misses,
        "hypervolume_search": hypervolume(frame["quality"], frame["bytes"], reference) / box,
        "hypervolume_uniform": hypervolume(u[:, 0], u[:, 1], reference) / box,
        "reference_point": {"accuracy": reference[0], "bytes": reference[1]},
        "at_equal_size": at_size,
        "search_at_least_uniform": f"{wins} of {len(at_size)} uniform-front sizes",
        "search_front": found[["quality", "bytes", "generation"]].to_dict("records"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--population", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = {
        "machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0], "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads(), "optuna": optuna.__version__,
                    "note": "shared machine: other jobs were running; times are upper bounds"},
        "budget_seconds_digits_mlp": BUDGET_S,
        "samples": [compare(name, args.trials, args.seed, args.population) for name in SAMPLES],
    }
    mlp = results["samples"][0]
    results["within_budget"] = mlp["search_seconds"] <= BUDGET_S
    text = json.dumps(results, indent=2, default=float)
    out = Path(__file__).resolve().parent / "results" / "bench_search.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
