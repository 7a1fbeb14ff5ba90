"""Does the per-layer search beat hand tuning? `python benchmarks/bench_search.py [--trials 200]` prints JSON
and writes benchmarks/results/bench_search.json.

For each sample: NSGA-II (seeded, population 20 unless --population; the first generation is uniform policies
spread over the space) over per-layer pruning amount (0 to 95% in steps of 1%) × bit width (fp32, 8, 6, 5, 4, 3, 2),
objectives accuracy up and exported bytes down, against a uniform sparsity × bits grid with the SAME number of
evaluations (same quantizer, same per-layer magnitude pruning: the uniform policies go through the same code, and
every grid point is a policy the search's genome can express: its amounts lie on the search's 1% step).
Reported: at each size of the uniform grid's front, the best accuracy either finds within that size; the hypervolume of
both fronts with the same reference point (accuracy = baseline − 0.20, bytes = the fp32 model's 4 bytes per
parameter; the dominated area is normalised by the reference box, so 1.0 would be "baseline accuracy at 0 bytes");
and the wall time of the search (one process, one torch thread, cache of measured recipes included).
The machine is shared with other jobs: times are upper bounds.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402

from benchmarks.results_io import emit, load_results, results_path  # noqa: E402

import compressor as cz  # noqa: E402
from compressor.policy import FP32, Evaluator  # noqa: E402
from compressor.search import (  # noqa: E402
    MUTATION_ETA, SBX_ETA, SearchConfig, SearchSpace, front, hypervolume, run_search, trials_frame,
)
from compressor.sensitivity import uniform_grid  # noqa: E402
from compressor.sweeps import pareto_mask  # noqa: E402

SAMPLES = ("digits-mlp", "digits-cnn")
BITS = (FP32, 8, 6, 5, 4, 3, 2)
AMOUNTS = (0.0, 0.95)  # both the search and the grid prune each layer by 0 to 95%
REFERENCE_DROP = 0.20
BUDGET_S = 60.0  # 200 trials on digits-mlp
MINILM_TRIALS = 60


AMOUNT_STEP = 0.01  # the search's amount gene and the grid's amounts share this step
AT_EQUAL_SIZE = ("for each point of the uniform grid's Pareto front (accuracy up, bytes down): the best accuracy among "
                 "ALL the search's measured trials whose exported file is at most that grid point's bytes; search ≥ grid "
                 "there when that accuracy is at least the grid point's (no search trial that small counts as a loss)")


def uniform_amounts(trials: int) -> list[float]:
    """Sparsity values so that len(amounts) × len(BITS) is the search's number of evaluations, on the search's step."""
    n = max(1, trials // len(BITS))
    return [round(round(float(a) / AMOUNT_STEP) * AMOUNT_STEP, 4) for a in np.linspace(0.0, AMOUNTS[1], n)]


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
    study = run_search(evaluator, SearchSpace(amounts=AMOUNTS, amount_step=AMOUNT_STEP, bits=BITS), config)
    seconds = time.perf_counter() - start
    frame = trials_frame(study)
    found = front(frame, ("quality", "bytes"))
    searched = frame[["quality", "bytes"]].to_dict("records")

    uniform = uniform_frame(Evaluator(sample.model, sample.data), trials)
    u = np.array([[p["quality"], p["bytes"]] for p in uniform])
    u_front = sorted((uniform[i] for i in np.flatnonzero(pareto_mask(u, [True, False]))), key=lambda p: p["bytes"])

    baseline = float(frame["baseline_quality"].iloc[0])
    reference = (baseline - REFERENCE_DROP, fp32_bytes)
    box = REFERENCE_DROP * fp32_bytes
    at_size = []
    for p in u_front:
        best = best_within(searched, p["bytes"])
        at_size.append({"bytes": p["bytes"], "uniform": p["label"], "uniform_accuracy": p["quality"],
                        "search_accuracy": best, "search_minus_uniform_points":
                            None if best is None else round(100 * (best - p["quality"]), 2),
                        "in_reference_box": bool(p["quality"] >= reference[0])})
    wins = [r["search_accuracy"] is not None and r["search_accuracy"] >= r["uniform_accuracy"] for r in at_size]
    boxed = [w for w, r in zip(wins, at_size) if r["in_reference_box"]]
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
        "at_equal_size_definition": AT_EQUAL_SIZE,
        "at_equal_size": at_size,
        "search_at_least_uniform": f"search ≥ grid at {sum(wins)} of {len(wins)} sizes",
        "search_at_least_uniform_count": [sum(wins), len(wins)],
        "search_at_least_uniform_in_reference_box": f"search ≥ grid at {sum(boxed)} of {len(boxed)} sizes whose grid "
                                                    f"accuracy is at least the reference {reference[0]:.4f}",
        "search_at_least_uniform_in_reference_box_count": [sum(boxed), len(boxed)],
        "search_front": found[["quality", "bytes", "generation", "policy"]].to_dict("records"),
    }


def machine() -> dict:
    return {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(), "optuna": optuna.__version__, "onnxruntime": ort.__version__,
            "note": "shared machine: other jobs were running (load average stated); times are upper bounds"}


def digits(args: argparse.Namespace) -> dict:
    """The per-layer search against the uniform grid on digits-mlp and digits-cnn."""
    results = {"machine": machine(), "budget_seconds_digits_mlp": BUDGET_S,
               "search": {"sampler": "NSGAIISampler", "crossover": f"SBX (eta {SBX_ETA:g})",
                          "mutation": f"polynomial (eta {MUTATION_ETA:g})", "bit_width_gene": "ordinal (index in bit order)",
                          "warm_start": "first generation = uniform policies spread over the space (enqueue_trial)"},
               "samples": [compare(name, args.trials, args.seed, args.population) for name in SAMPLES]}
    results["within_budget"] = results["samples"][0]["search_seconds"] <= BUDGET_S
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--part", choices=("all", "digits", "minilm"), default="all",
                        help="run one part; the other part's last results are kept in the JSON")
    parser.add_argument("--minilm-trials", type=int, default=MINILM_TRIALS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    previous = load_results("bench_search") if results_path("bench_search").exists() else {}
    results = {"digits": previous.get("digits"), "minilm_mixed_precision": previous.get("minilm_mixed_precision")}
    if args.part in ("all", "digits"):
        results["digits"] = digits(args)
    if args.part in ("all", "minilm"):
        results["minilm_mixed_precision"] = minilm(args.minilm_trials, args.seed)
    emit(results, __file__)


if __name__ == "__main__":
    main()
