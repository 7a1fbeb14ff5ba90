"""Does the per-layer search beat hand tuning? `python benchmarks/bench_search.py [--trials 200]` prints JSON
and writes benchmarks/results/bench_search.json.

For each sample: NSGA-II (seeded, population 20 unless --population; the first generation is 6 greedy-by-sensitivity
policies and uniform policies spread over the space) over per-layer pruning amount (0 to 95% in steps of 1%) × bit
width (fp32, 8, 6, 5, 4, 3, 2), objectives accuracy up and exported bytes down, against a uniform sparsity × bits grid
with the SAME number of evaluations (--trials, 200: the greedy seeds' sensitivity probes count, the trials are the
rest; same quantizer, same per-layer magnitude pruning: the uniform policies go through the same code, and
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
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_deploy import FFN_OUTPUT  # noqa: E402
from benchmarks.results_io import emit, load_results, results_path  # noqa: E402

import compressor as cz  # noqa: E402
from compressor import fidelity  # noqa: E402
from compressor.deploy import MixedInt8, session, session_encoder  # noqa: E402
from compressor.latency import LatencyConfig, time_calls  # noqa: E402
from compressor.policy import DEPLOYED_INT8, FP32, Evaluator, Int8Deployment  # noqa: E402
from compressor.search import (  # noqa: E402
    MUTATION_ETA, SBX_ETA, SearchConfig, SearchSpace, front, gene_units, greedy_params, hypervolume, run_search,
    seed_grid, trials_frame,
)
from compressor.sensitivity import probes, sensitivity, uniform_grid  # noqa: E402
from compressor.sweeps import pareto_mask  # noqa: E402

SAMPLES = ("digits-mlp", "digits-cnn")
BITS = (FP32, 8, 6, 5, 4, 3, 2)
AMOUNTS = (0.0, 0.95)  # both the search and the grid prune each layer by 0 to 95%
REFERENCE_DROP = 0.20
BUDGET_S = 60.0  # 200 trials on digits-mlp
MINILM_TRIALS = 48
DIGITS_GREEDY_SEEDS = 6  # of the population of 20; its sensitivity run's probes count against the evaluations


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


def searched(sample, evaluations: int, seed: int, population: int,
             greedy_seeds: int = DIGITS_GREEDY_SEEDS) -> tuple[object, float, int, int]:
    """One seeded search of `evaluations` in all: its trials table, wall time, recipes measured (a fresh cache: nothing
    shared) and how many of the evaluations its greedy seeds' sensitivity run took (the trials get the rest)."""
    space = SearchSpace(amounts=AMOUNTS, amount_step=AMOUNT_STEP, bits=BITS)
    evaluator = Evaluator(sample.model, sample.data)
    seeding = len(probes(evaluator, seed_grid(space))) if greedy_seeds else 0  # no max_drop: no bisection
    config = SearchConfig(trials=evaluations - seeding, population=population, seed=seed, objectives=("quality", "bytes"),
                          greedy_seeds=greedy_seeds)
    start = time.perf_counter()
    study = run_search(evaluator, space, config)
    assert study.user_attrs.get("greedy_seed_evaluations", 0) == seeding
    return trials_frame(study), time.perf_counter() - start, evaluator.misses, seeding


def at_equal_size(points: list[dict], u_front: list[dict],
                  reference: tuple[float, float]) -> tuple[list[dict], list[bool], list[bool]]:
    """Per grid-front point: the search's best accuracy within its size; wins overall and inside the reference box."""
    rows = []
    for p in u_front:
        best = best_within(points, p["bytes"])
        rows.append({"bytes": p["bytes"], "uniform": p["label"], "uniform_accuracy": p["quality"],
                     "search_accuracy": best, "search_minus_uniform_points":
                         None if best is None else round(100 * (best - p["quality"]), 2),
                     "in_reference_box": bool(p["quality"] >= reference[0])})
    wins = [r["search_accuracy"] is not None and r["search_accuracy"] >= r["uniform_accuracy"] for r in rows]
    return rows, wins, [w for w, r in zip(wins, rows) if r["in_reference_box"]]


def compare(name: str, trials: int, seed: int, population: int, other_seeds: int) -> dict:
    sample = cz.load_sample(name)
    fp32_bytes = 4 * sum(p.numel() for p in sample.model.parameters())
    frame, seconds, measured, seeding = searched(sample, trials, seed, population)
    found = front(frame, ("quality", "bytes"))

    uniform = uniform_frame(Evaluator(sample.model, sample.data), trials)
    u = np.array([[p["quality"], p["bytes"]] for p in uniform])
    u_front = sorted((uniform[i] for i in np.flatnonzero(pareto_mask(u, [True, False]))), key=lambda p: p["bytes"])

    baseline = float(frame["baseline_quality"].iloc[0])
    reference = (baseline - REFERENCE_DROP, fp32_bytes)
    box = REFERENCE_DROP * fp32_bytes
    rows, wins, boxed = at_equal_size(frame[["quality", "bytes"]].to_dict("records"), u_front, reference)
    seeds = []
    for other in range(seed + 1, seed + 1 + other_seeds):  # the same comparison for other seeds: how typical seed 0 is
        f, _, _, _ = searched(sample, trials, other, population)
        _, w, b = at_equal_size(f[["quality", "bytes"]].to_dict("records"), u_front, reference)
        seeds.append({"seed": other, "search_at_least_uniform_count": [sum(w), len(w)],
                      "in_reference_box_count": [sum(b), len(b)],
                      "hypervolume_search": hypervolume(f["quality"], f["bytes"], reference) / box})
    return {
        "model": name,
        "population": population,
        "seed": seed,
        "baseline_accuracy": baseline,
        "fp32_bytes": fp32_bytes,
        "evaluations_each": trials,
        "uniform_grid": {"amounts": len(uniform_amounts(trials)), "bits": list(BITS), "evaluations": len(uniform)},
        "search_evaluations": {"greedy_seed_sensitivity_probes": seeding, "trials": trials - seeding,
                               "total": trials},
        "search_seconds": round(seconds, 2),
        "search_recipes_measured": measured,
        "hypervolume_search": hypervolume(frame["quality"], frame["bytes"], reference) / box,
        "hypervolume_uniform": hypervolume(u[:, 0], u[:, 1], reference) / box,
        "reference_point": {"accuracy": reference[0], "bytes": reference[1]},
        "at_equal_size_definition": AT_EQUAL_SIZE,
        "at_equal_size": rows,
        "search_at_least_uniform": f"search ≥ grid at {sum(wins)} of {len(wins)} sizes",
        "search_at_least_uniform_count": [sum(wins), len(wins)],
        "search_at_least_uniform_in_reference_box": f"search ≥ grid at {sum(boxed)} of {len(boxed)} sizes whose grid "
                                                    f"accuracy is at least the reference {reference[0]:.4f}",
        "search_at_least_uniform_in_reference_box_count": [sum(boxed), len(boxed)],
        "other_seeds": seeds,
        "search_front": found[["quality", "bytes", "generation", "policy"]].to_dict("records"),
    }


# ---------------------------------------------------------------- minilm-l6: which Linear layers stay fp32


MINILM = "minilm-l6"
MIN_COSINE = 0.995  # the constraint: deployed mean cosine to the uncompressed embeddings
MINILM_POPULATION = 12
MINILM_GREEDY_SEEDS = 4  # the greedy answer and its 3 nearest neighbours on the greedy ladder
SHARE = ("attention",)  # a block's query, key, value and attention output share one gene: 18 genes, not 36
FINAL_RUNS = 40  # the closing interleaved timing run (every figure reported comes from it)


def greedy(evaluator: Evaluator, space: SearchSpace, config: SearchConfig, units: list[tuple[str, list[str]]]) -> dict:
    """The baseline, AIMET-style, by the core's own greedy (`compressor.search.greedy_params`, one policy): quantize
    ONE gene's layers to int8 (the rest fp32) and measure the cosine drop; then the greedy policies from least to
    most int8, and a bisection for the most int8 one whose measured mean cosine is at least MIN_COSINE."""
    (params,), measured = greedy_params(evaluator, space, replace(config, greedy_seeds=1))
    table = sensitivity(evaluator, seed_grid(space), share=space.share)  # from the cache: measured just now
    return {"sensitivity_cosine_drop": dict(zip(table["layer"], table["drop"])),
            "fp32_genes": [unit for unit, _ in units if params[f"{unit}.bits"] == FP32],
            "policies_measured": measured}


def fastest_feasible(frame, count: int = 3) -> list[dict]:
    """The search's feasible trials of largest speedup (ms relative to the fp32 graph timed in the same run)."""
    ok = frame[frame["feasible"]].drop_duplicates("policy").copy()
    ok["speedup"] = ok["baseline_latency_ms"] / ok["latency_ms"]
    return ok.sort_values("speedup", ascending=False).head(count).to_dict("records")


def final_run(sample, mixed: MixedInt8, candidates: dict[str, list[str]]) -> dict:
    """ONE interleaved timing run at batch 32, one thread: eager fp32, ORT fp32 and every candidate's deployment;
    fidelity of each deployed graph on the held-out sentences."""
    latency = LatencyConfig(batch_size=32, threads=1, warmup=5, runs=FINAL_RUNS)
    sessions = {label: session(mixed.graph(layers), 1) for label, layers in candidates.items()}
    feed = {k: v.numpy() for k, v in mixed.timed.items()}
    calls = {"eager fp32": lambda: sample.model(**mixed.timed), "ORT fp32": lambda: mixed.fp32_session.run(None, feed)}
    calls |= {label: (lambda s=s: s.run(None, feed)) for label, s in sessions.items()}
    torch.set_num_threads(1)
    flushed = torch.set_flush_denormal(True)
    with torch.inference_mode():
        timing = time_calls(calls, latency, flushed=flushed)
    eager, ort_fp32 = timing["eager fp32"].median_ms, timing["ORT fp32"].median_ms
    rows = {}
    for label, t in timing.items():
        row = {"latency_ms": round(t.median_ms, 2), "iqr_ms": round(t.spread_ms, 2),
               "speedup_vs_eager": round(eager / t.median_ms, 2), "speedup_vs_ort_fp32": round(ort_fp32 / t.median_ms, 2)}
        if label in sessions:
            found = fidelity.measure(session_encoder(sessions[label]), sample.data, mixed.reference)
            fp32_layers = [n for n in mixed.linear_layers if n not in candidates[label]]
            row |= {"mean_cosine": round(found.mean_cosine, 5), "worst_cosine": round(found.worst_cosine, 5),
                    "holds_constraint": found.mean_cosine >= MIN_COSINE, "fp32_layers": fp32_layers,
                    "onnx_bytes": sessions_bytes(mixed, candidates[label])}
        rows[label] = row
    return {"batch_size": 32, "sequence_length": int(mixed.timed["input_ids"].shape[1]), "threads": 1,
            "runs": FINAL_RUNS, "denormals_flushed": flushed, "rows": rows}


def sessions_bytes(mixed: MixedInt8, layers: list[str]) -> int:
    return mixed.graph(layers).ByteSize()


def minilm(trials: int, seed: int, population: int = MINILM_POPULATION, greedy_seeds: int = MINILM_GREEDY_SEEDS) -> dict:
    """Mixed precision on minilm-l6: the search (seeded with greedy policies) against greedy-by-sensitivity alone and
    the issue's hand choices."""
    sample = cz.load_sample(MINILM)
    deployment = Int8Deployment(sample.model, sample.data)
    start = time.perf_counter()
    mixed, _ = deployment.deployment(cz.Recipe(()))
    export_seconds = time.perf_counter() - start
    units = gene_units(mixed.linear_layers, SHARE)
    space = SearchSpace(amounts=None, bits=(DEPLOYED_INT8, FP32), share=SHARE)
    config = SearchConfig(trials=trials, population=population, seed=seed, objectives=("quality", "latency_ms"),
                          max_drop=round(1.0 - MIN_COSINE, 6), greedy_seeds=greedy_seeds)

    greedy_evaluator = Evaluator(sample.model, sample.data, measure_deployed=deployment)
    start = time.perf_counter()
    found_greedy = greedy(greedy_evaluator, space, config, units)
    greedy_seconds = time.perf_counter() - start

    # the search's seeds need the same sensitivity run and bisection: it starts from greedy's measured policies (a
    # copy of that cache) instead of measuring them twice; its count below includes them
    searched = Evaluator(sample.model, sample.data, measure_deployed=deployment, cache=dict(greedy_evaluator.cache))
    start = time.perf_counter()
    study = run_search(searched, space, config)
    search_seconds = time.perf_counter() - start + greedy_seconds
    frame = trials_frame(study)

    def int8_of(fp32_units: set[str]) -> list[str]:
        return [n for u, members in units if u not in fp32_units for n in members]

    best = fastest_feasible(frame)
    ffn_out = [n for n in mixed.linear_layers if FFN_OUTPUT.search(n)]
    candidates = {"all int8 (per channel)": mixed.linear_layers,
                  "hand: FFN output projections fp32": [n for n in mixed.linear_layers if n not in ffn_out],
                  "greedy by sensitivity": int8_of(set(found_greedy["fp32_genes"]))}
    same_as: dict[str, str] = {}  # a search pick that IS an earlier candidate is timed once, under that name
    for rank, row in enumerate(best, 1):
        layers = [n for n, c in study.trials[row["number"]].user_attrs["policy"].items() if c.get("bits") == DEPLOYED_INT8]
        earlier = next((label for label, int8 in candidates.items() if sorted(int8) == sorted(layers)), None)
        if earlier is None:
            candidates[f"search #{rank}"] = layers
        same_as[f"search #{rank}"] = earlier or f"search #{rank}"
    final = final_run(sample, mixed, candidates)
    feasible = {k: v for k, v in final["rows"].items() if v.get("holds_constraint")}
    search_rows = {pick: feasible[label] for pick, label in same_as.items() if label in feasible}
    search_best = max(search_rows, key=lambda k: search_rows[k]["speedup_vs_ort_fp32"]) if search_rows else None
    return {
        "machine": machine(),
        "model": MINILM,
        "constraint": f"deployed mean cosine ≥ {MIN_COSINE} (to the uncompressed model's embeddings, "
                      f"{len(sample.data.test.X)} held-out sentences)",
        "deployment": "ONNX Runtime dynamic int8 (MatMulInteger), symmetric per-channel weights, inputs quantized per "
                      "batch; fp32 layers keep MatMul. fp32 graph exported once; each policy re-quantized only",
        "genome": f"{len(units)} binary genes (int8 or fp32): per block one for the four attention projections, one "
                  "for the FFN input and one for the FFN output projection (36 Linear layers)",
        "export_seconds": round(export_seconds, 1),
        "search": {"sampler": "NSGAIISampler", "trials": trials, "population": population, "seed": seed,
                   "greedy_seeds": greedy_seeds,
                   "objectives": ["mean cosine up", "latency_ms down (batch 32, one thread, interleaved with ORT fp32)"],
                   "policies_measured": found_greedy["policies_measured"] + searched.misses,
                   "of_which_greedy_seeds": found_greedy["policies_measured"],
                   "seconds": round(search_seconds, 1),
                   "feasible_trials": int(frame["feasible"].sum()),
                   "fastest_feasible": [{**{k: r[k] for k in ("number", "generation", "quality", "latency_ms",
                                                             "baseline_latency_ms", "speedup")},
                                         "fp32_genes": [k.removesuffix(".bits") for k, v in
                                                        study.trials[r["number"]].params.items() if v == FP32],
                                         "timed_as": same_as[f"search #{rank}"]}
                                        for rank, r in enumerate(best, 1)]},
        "greedy": {**found_greedy, "seconds": round(greedy_seconds, 1)},
        "final_timing": final,
        "answer": {
            "search": search_best,
            "search_timed_as": same_as.get(search_best),
            "fastest_holding_constraint": max(feasible.items(), key=lambda kv: kv[1]["speedup_vs_ort_fp32"])[0]
            if feasible else None,
        },
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
                          "warm_start": f"first generation = {DIGITS_GREEDY_SEEDS} greedy-by-sensitivity policies spread "
                                        "along the greedy ladder, then uniform policies spread over the space "
                                        "(enqueue_trial); the sensitivity run's probes count as evaluations"},
               "samples": [compare(name, args.trials, args.seed, args.population, args.other_seeds) for name in SAMPLES]}
    results["within_budget"] = results["samples"][0]["search_seconds"] <= BUDGET_S
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--part", choices=("all", "digits", "minilm"), default="all",
                        help="run one part; the other part's last results are kept in the JSON")
    parser.add_argument("--other-seeds", type=int, default=4, help="digits: also count wins for this many other seeds")
    parser.add_argument("--minilm-trials", type=int, default=MINILM_TRIALS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fresh = {}
    if args.part in ("all", "digits"):
        fresh["digits"] = digits(args)
    if args.part in ("all", "minilm"):
        fresh["minilm_mixed_precision"] = minilm(args.minilm_trials, args.seed)
    previous = load_results("bench_search") if results_path("bench_search").exists() else {}  # read last: runs may overlap
    emit({part: fresh.get(part, previous.get(part)) for part in ("digits", "minilm_mixed_precision")}, __file__)


if __name__ == "__main__":
    main()
