"""Multi-objective search of per-layer policies with Optuna's NSGA-II.

The genome is a `compressor.policy` policy: per layer an optional pruning amount, bit width (FP32 among the
choices) and rank ratio, each in a user-chosen range. Objectives: quality up, exported bytes down, effective
MACs (or a deploying evaluator's latency) down. Constraints go through `trial.set_constraint` (Optuna 5: the
samplers' `constraints_func` is deprecated); NSGA-II ranks a feasible trial above any infeasible one.

Optuna 5's default multi-objective sampler is TPE, so `NSGAIISampler` is chosen explicitly, seeded: one worker
with the same settings evaluates the same policies in the same order. Several workers (processes or machines)
share a study through an Optuna storage: `compressor.workers.open_storage` (journal file for one machine, PostgreSQL for
many) and `compressor.workers.work` (until the study holds exactly N complete trials, whatever the number of
workers).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from compressor.policy import FP32, Evaluator, LayerChoice, Measures, describe_policy, policy_recipe, policy_to_dict
from compressor.recipe import MAX_AMOUNT
from compressor.sweeps import pareto_mask
from compressor.validation import check_choice, check_fraction, check_int
from compressor.workers import complete_count, work

OBJECTIVES = {"quality": "maximize", "bytes": "minimize", "effective_macs": "minimize", "latency_ms": "minimize"}
GENERATION_KEY = "NSGAIISampler:generation"  # where NSGAIISampler records a trial's generation (system attr)


@dataclass(frozen=True)
class SearchSpace:
    """Which genes exist and their ranges; None leaves a technique out of the search."""

    amounts: tuple[float, float] | None = (0.0, 0.95)  # pruned fraction per layer, low to high
    amount_step: float = 0.05  # a grid, so the same policy recurs and its measures come from the cache
    bits: tuple[int | str, ...] | None = (FP32, 8, 6, 5, 4, 3, 2)  # choices per layer; FP32 keeps fp32
    rank_ratios: tuple[float, float] | None = None  # kept singular values, low to 1.0 (1.0: not factorized)
    rank_step: float = 0.05
    layers: tuple[str, ...] | None = None  # None: every Linear/Conv layer

    def __post_init__(self) -> None:
        if self.amounts is not None:
            low, high = self.amounts
            check_fraction("amount (low)", low, 0.0, MAX_AMOUNT)
            check_fraction("amount (high)", high, low, MAX_AMOUNT)
        if self.bits is not None:
            if not self.bits:
                raise ValueError("bits=() offers no choice; give at least one bit width or leave bits out (None)")
            for b in self.bits:
                LayerChoice(bits=b)
        if self.rank_ratios is not None:
            low, high = self.rank_ratios
            LayerChoice(rank_ratio=low), LayerChoice(rank_ratio=high)
            check_fraction("rank ratio (high)", high, low, 1.0)
        check_fraction("amount_step", self.amount_step, 0.01, 0.5)
        check_fraction("rank_step", self.rank_step, 0.01, 0.5)
        if self.amounts is None and self.bits is None and self.rank_ratios is None:
            raise ValueError("the search space is empty: allow at least one of pruning, bit width, rank ratio")


@dataclass(frozen=True)
class SearchConfig:
    """How the search runs."""

    trials: int = 200  # complete trials the study ends with, 1 to 100,000
    population: int = 20  # NSGA-II population size per generation, 2 to 1,000
    seed: int = 0
    objectives: tuple[str, ...] = ("quality", "bytes", "effective_macs")  # from OBJECTIVES
    max_drop: float | None = None  # constraint: quality drop at most this (fraction; 0.01 = 1 point)
    max_bytes: int | None = None  # constraint: exported file at most this many bytes
    mutation_prob: float | None = None  # None: Optuna's 1 / number of genes
    crossover_prob: float = 0.9
    warm_start: bool = True  # half the first generation: uniform policies spread over the space (hand tuning's grid)

    def __post_init__(self) -> None:
        check_int("trials", self.trials, 1, 100_000)
        check_int("population", self.population, 2, 1000)
        check_int("seed", self.seed, 0)
        if not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives={self.objectives!r} must name distinct objectives from {', '.join(OBJECTIVES)}")
        for name in self.objectives:
            check_choice("objective", name, tuple(OBJECTIVES))
        if "quality" not in self.objectives:
            raise ValueError("objectives must include 'quality': a smaller model is only worth its quality")
        if self.max_drop is not None:
            check_fraction("max_drop", self.max_drop, 0.0, 1.0)
        if self.max_bytes is not None:
            check_int("max_bytes", self.max_bytes, 1)
        if self.mutation_prob is not None:
            check_fraction("mutation_prob", self.mutation_prob, 0.0, 1.0)
        check_fraction("crossover_prob", self.crossover_prob, 0.0, 1.0)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[name] for name in self.objectives]


def sampler(config: SearchConfig) -> optuna.samplers.NSGAIISampler:
    """NSGA-II, seeded, with the population, crossover and mutation rates of `config`."""
    return optuna.samplers.NSGAIISampler(population_size=config.population, seed=config.seed,
                                         mutation_prob=config.mutation_prob, crossover_prob=config.crossover_prob)


def suggest_policy(trial: optuna.Trial, space: SearchSpace, layers: Sequence[str],
                   factorizable: Sequence[str]) -> dict[str, LayerChoice]:
    """One policy drawn through the trial: parameters named "<layer>.amount", ".bits", ".rank_ratio"."""
    policy = {}
    for name in layers:
        genes = {}
        if space.amounts is not None:
            genes["amount"] = trial.suggest_float(f"{name}.amount", *space.amounts, step=space.amount_step)
        if space.bits is not None:
            genes["bits"] = trial.suggest_categorical(f"{name}.bits", list(space.bits))
        if space.rank_ratios is not None and name in factorizable:
            genes["rank_ratio"] = trial.suggest_float(f"{name}.rank_ratio", *space.rank_ratios, step=space.rank_step)
        policy[name] = LayerChoice(**genes)
    return policy


def search_layers(evaluator: Evaluator, space: SearchSpace) -> list[str]:
    layers = evaluator.layers
    if space.layers is None:
        return layers
    unknown = sorted(set(space.layers) - set(layers))
    if unknown:
        raise ValueError(f"layer(s) {', '.join(unknown)} not in the model; layers are: {', '.join(layers)}")
    return [name for name in layers if name in space.layers]


def make_objective(evaluator: Evaluator, space: SearchSpace, config: SearchConfig) -> Callable[[optuna.Trial], list[float]]:
    """The function Optuna optimizes: policy → measures (cached) → objective values, constraints, attributes."""
    layers, factorizable = search_layers(evaluator, space), evaluator.factorizable

    def objective(trial: optuna.Trial) -> list[float]:
        policy = suggest_policy(trial, space, layers, factorizable)
        m = evaluator(policy)
        if config.max_drop is not None:
            trial.set_constraint("max_drop", m.drop - config.max_drop)
        if config.max_bytes is not None:
            trial.set_constraint("max_bytes", m.bytes - config.max_bytes)
        trial.set_user_attr("measures", {"quality": m.quality, "baseline_quality": m.baseline_quality,
                                         "bytes": m.bytes, "effective_macs": m.effective_macs,
                                         "metric": m.metric, "latency_ms": m.latency_ms})
        trial.set_user_attr("recipe", policy_recipe(policy).to_json(indent=None))
        trial.set_user_attr("policy", policy_to_dict(policy))
        trial.set_user_attr("description", describe_policy(policy))
        return [objective_value(m, name) for name in config.objectives]

    return objective


def objective_value(m: Measures, name: str) -> float:
    value = getattr(m, name)
    if value is None:
        raise ValueError(f"objective {name!r} was not measured by this evaluator (it needs a deploying evaluator)")
    return float(value)


def create_study(config: SearchConfig, storage: optuna.storages.BaseStorage | str | None = None,
                 study_name: str | None = None) -> optuna.Study:
    """A new study, or the existing one of that name (its directions must match the objectives)."""
    study = optuna.create_study(directions=config.directions, sampler=sampler(config), storage=storage,
                                study_name=study_name, load_if_exists=True)
    if [d.name.lower() for d in study.directions] != config.directions:
        raise ValueError(f"study {study_name!r} optimizes {[d.name.lower() for d in study.directions]}, "
                         f"not {config.directions} ({', '.join(config.objectives)}); use another --study")
    return study


def uniform_params(space: SearchSpace, layers: Sequence[str], count: int) -> list[dict[str, float | int | str]]:
    """Up to `count` uniform policies (every layer the same) spread over the space, as trial parameters.

    They seed the first generation, so evolution starts from what a sparsity × bits grid would try and the
    front can only improve on it. Rank genes stay at 1.0 (not factorized).
    """
    bits = [b for b in space.bits or [None] if b != FP32] or list(space.bits or [None])
    amounts: list[float | None] = [None] * count
    if space.amounts is not None:  # from the middle of the range to its top: where compression starts to cost
        low, high = space.amounts
        steps = round((high - low) / space.amount_step)
        amounts = [low + space.amount_step * round(steps * (0.5 + 0.5 * i / max(count - 1, 1))) for i in range(count)]
    chosen = []
    for i, a in enumerate(amounts):
        b = bits[i % len(bits)]
        params: dict[str, float | int | str] = {}
        for name in layers:
            if a is not None:
                params[f"{name}.amount"] = round(a, 6)
            if b is not None:
                params[f"{name}.bits"] = b
            if space.rank_ratios is not None:
                params[f"{name}.rank_ratio"] = space.rank_ratios[1]
        if params not in chosen:
            chosen.append(params)
    return chosen[:count]


def warm_start(study: optuna.Study, evaluator: Evaluator, space: SearchSpace, config: SearchConfig) -> None:
    """Queue uniform policies as half the first generation of a study that has no trials yet."""
    if config.warm_start and not study.get_trials(deepcopy=False):
        for params in uniform_params(space, search_layers(evaluator, space), config.population // 2):
            study.enqueue_trial(params, skip_if_exists=True)


def run_search(evaluator: Evaluator, space: SearchSpace = SearchSpace(), config: SearchConfig = SearchConfig(),
               storage: optuna.storages.BaseStorage | str | None = None, study_name: str | None = None,
               callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()) -> optuna.Study:
    """Search until the study holds `config.trials` complete trials; returns the study.

    `callbacks(study, trial)` run after every trial (the app moves its progress bar and redraws the front);
    a callback may call `study.stop()` to end the search early.
    """
    study = create_study(config, storage, study_name)
    warm_start(study, evaluator, space, config)
    work(study, make_objective(evaluator, space, config), config.trials, callbacks)
    return study


# ---------------------------------------------------------------- results as plain data


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per complete trial: number, generation, measures, feasibility, recipe JSON."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rows.append({"number": t.number, "generation": t.system_attrs.get(GENERATION_KEY, 0),
                     **t.user_attrs["measures"], "feasible": all(v <= 0 for v in t.constraints.values()),
                     "policy": t.user_attrs.get("description", ""), "recipe": t.user_attrs["recipe"]})
    columns = ["number", "generation", "quality", "baseline_quality", "bytes", "effective_macs", "metric",
               "latency_ms", "feasible", "policy", "recipe"]
    return pd.DataFrame(rows, columns=columns)


def front(frame: pd.DataFrame, objectives: Sequence[str], up_to_generation: int | None = None) -> pd.DataFrame:
    """The feasible non-dominated rows (of generations ≤ `up_to_generation`, if given), smallest file first."""
    rows = frame if up_to_generation is None else frame[frame["generation"] <= up_to_generation]
    rows = rows[rows["feasible"]].drop_duplicates("recipe")
    if rows.empty:
        return rows
    mask = pareto_mask(rows[list(objectives)].to_numpy(float), [OBJECTIVES[o] == "maximize" for o in objectives])
    return rows[mask].sort_values("bytes").reset_index(drop=True)


def hypervolume(quality: np.ndarray, size: np.ndarray, reference: tuple[float, float]) -> float:
    """Area dominated by points (quality up, size down) and bounded by `reference` = (quality, size).

    Optuna's `compute_hypervolume` on losses (−quality, size); points beyond the reference count nothing.
    """
    from optuna._hypervolume import compute_hypervolume

    losses = np.column_stack([-np.asarray(quality, float), np.asarray(size, float)])
    ref = np.array([-reference[0], reference[1]], float)
    losses = losses[(losses < ref).all(axis=1)]
    return float(compute_hypervolume(losses, ref)) if len(losses) else 0.0


@dataclass
class GenerationLog:
    """A callback that remembers which generations have finished (the app redraws the front at each)."""

    population: int
    on_generation: Callable[[int], None] | None = None
    finished: list[int] = field(default_factory=list)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = complete_count(study)
        if done and done % self.population == 0:
            generation = done // self.population - 1
            self.finished.append(generation)
            if self.on_generation is not None:
                self.on_generation(generation)
