"""Multi-objective search of per-layer policies with Optuna's NSGA-II.

The genome is a `compressor.policy` policy: per layer an optional pruning amount, bit width (FP32 among the
choices) and rank ratio, each in a user-chosen range. Objectives: quality up, exported bytes down, effective
MACs (or a deploying evaluator's latency) down. Constraints go through `trial.set_constraint` (Optuna 5: the
samplers' `constraints_func` is deprecated); NSGA-II ranks a feasible trial above any infeasible one.

Optuna 5's default multi-objective sampler is TPE, so `NSGAIISampler` is chosen explicitly, seeded: one worker
with the same settings evaluates the same policies in the same order. What makes it beat a uniform grid of the same
budget (benchmarks/bench_search.py): the first generation is a spread of uniform policies (`enqueue_trial`, then
`join_generation` so NSGA-II breeds from them), bit widths are ordinal genes, and crossover and mutation are the
original NSGA-II's (SBX, polynomial), which keep children near good parents. Optionally (`SearchConfig.greedy_seeds`)
the first generation also holds greedy-by-sensitivity policies (AIMET's recipe, `greedy_params`), so the front starts
at least as good as greedy selection's and evolution can only improve on it. Layers inside one module (e.g. a
Transformer block's `attention`) may share one gene (`SearchSpace.share`) when a budget is too small for one each. Several workers (processes or machines)
share a study through an Optuna storage: `compressor.workers.open_storage` (journal file for one machine, PostgreSQL for
many) and `compressor.workers.work` (until the study holds exactly N complete trials, whatever the number of
workers).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from compressor.policy import (
    DEPLOYED_INT8, FP32, Evaluator, LayerChoice, Measures, bit_rank, describe_policy, gene_units, policy_recipe, policy_to_dict,
)
from compressor.recipe import MAX_AMOUNT
from compressor.sensitivity import SensitivityGrid, greedy_policy, sensitivity
from compressor.sweeps import pareto_mask
from compressor.validation import check_choice, check_fraction, check_int
from compressor.workers import complete_count, work

OBJECTIVES = {"quality": "maximize", "bytes": "minimize", "effective_macs": "minimize", "latency_ms": "minimize"}
OBJECTIVE_HELP = {  # what each objective is, in the words of the CLI's --objectives and the Search page
    "quality": "accuracy on held-out data (mean cosine to the fp32 embeddings for minilm-l6), up",
    "bytes": "size of the exported file, down",
    "effective_macs": "multiply-accumulates per example with zero weights skipped, down",
    "latency_ms": "deployed latency on ONNX Runtime (batch 32, one thread, timed against the fp32 graph), down; every "
                  "policy is deployed",
}
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
    share: tuple[str, ...] = ()  # module names (e.g. "attention"): the layers inside one such module share one gene

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
    warm_start: bool = True  # the first generation: uniform policies spread over the space (hand tuning's grid)
    greedy_seeds: int = 0  # first-generation slots for greedy-by-sensitivity policies, 0 to population (`greedy_params`)

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
        check_int("greedy_seeds", self.greedy_seeds, 0, self.population)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[name] for name in self.objectives]


SBX_ETA = 15.0  # simulated binary crossover's distribution index (Deb et al. use 15–20): children near parents
MUTATION_ETA = 20.0  # polynomial mutation's distribution index (the NSGA-II C code's default)


def sampler(config: SearchConfig) -> optuna.samplers.NSGAIISampler:
    """NSGA-II, seeded, with the population, crossover and mutation rates of `config`.

    The operators are the original NSGA-II's (Deb et al., 2002): simulated binary crossover and polynomial
    mutation, both of which move a gene to a value NEAR its parents' rather than anywhere in its range. Optuna's
    defaults (uniform crossover; mutation = a fresh random value) throw away what a good parent knew; measured on
    digits-mlp (benchmarks/bench_search.py) the local operators find the front's knee far more often.
    """
    with warnings.catch_warnings():  # both operators are marked experimental in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.NSGAIISampler(
            population_size=config.population, seed=config.seed, mutation_prob=config.mutation_prob,
            crossover_prob=config.crossover_prob, crossover=optuna.samplers.nsgaii.SBXCrossover(eta=SBX_ETA),
            mutation=optuna.samplers.nsgaii.PolynomialMutation(eta=MUTATION_ETA))


def bit_order(bits: Sequence[int | str]) -> list[int | str]:
    """Bit-width choices from most to least compressing: 1–8 bits, then deployed int8, then fp32."""
    return sorted(bits, key=bit_rank)


def suggest_bits(trial: optuna.Trial, name: str, bits: Sequence[int | str]) -> int | str:
    """A bit width. With three or more choices the gene is ordinal, its index in `bit_order(bits)` (0: fewest
    bits), so crossover and mutation move a layer to a neighbouring width; categorical, every change would be a
    jump to any width at random. Two choices (int8 or fp32) have no neighbours: a categorical gene, which
    mutation flips with probability 1/2 (a polynomial mutation of a 0/1 index would almost never flip it)."""
    order = bit_order(bits)
    if len(order) <= 2:
        return trial.suggest_categorical(name, order)
    return order[trial.suggest_int(name, 0, len(order) - 1)]


def bits_gene_value(bits: Sequence[int | str], choice: int | str) -> int | str:
    """What `suggest_bits` records for `choice` (its index when ordinal): how a queued trial names a bit width."""
    order = bit_order(bits)
    return choice if len(order) <= 2 else order.index(choice)


def suggest_policy(trial: optuna.Trial, space: SearchSpace, layers: Sequence[str],
                   factorizable: Sequence[str]) -> dict[str, LayerChoice]:
    """One policy drawn through the trial: parameters named "<gene>.amount", ".bits", ".rank_ratio", where a gene
    is a layer or a group of layers sharing one (`SearchSpace.share`).

    Bit widths: see `suggest_bits`.
    """
    policy = {}
    for unit, members in gene_units(layers, space.share):
        genes = {}
        if space.amounts is not None:
            genes["amount"] = trial.suggest_float(f"{unit}.amount", *space.amounts, step=space.amount_step)
        if space.bits is not None:
            genes["bits"] = suggest_bits(trial, f"{unit}.bits", space.bits)
        if space.rank_ratios is not None and all(name in factorizable for name in members):
            genes["rank_ratio"] = trial.suggest_float(f"{unit}.rank_ratio", *space.rank_ratios, step=space.rank_step)
        policy.update({name: LayerChoice(**genes) for name in members})
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
        join_generation(trial)
        policy = suggest_policy(trial, space, layers, factorizable)
        m = evaluator(policy)
        if config.max_drop is not None:
            trial.set_constraint("max_drop", m.drop - config.max_drop)
        if config.max_bytes is not None:
            trial.set_constraint("max_bytes", m.bytes - config.max_bytes)
        trial.set_user_attr("measures", {"quality": m.quality, "baseline_quality": m.baseline_quality,
                                         "bytes": m.bytes, "effective_macs": m.effective_macs,
                                         "metric": m.metric, "latency_ms": m.latency_ms,
                                         "baseline_latency_ms": m.baseline_latency_ms})
        trial.set_user_attr("recipe", policy_recipe(policy).to_json(indent=None))
        trial.set_user_attr("policy", policy_to_dict(policy))
        trial.set_user_attr("description", describe_policy(policy))
        return [objective_value(m, name) for name in config.objectives]

    return objective


def join_generation(trial: optuna.Trial) -> None:
    """Give a trial its generation now, as the genetic samplers do for trials they draw.

    Optuna's NSGA-II records a trial's generation when it draws the trial's parameters. A trial queued with
    `enqueue_trial` has every parameter fixed, so it is never drawn and would belong to no generation: never a
    parent. (Measured: without this, warm-start policies were evaluated but never bred from.)
    """
    sampler = trial.study.sampler
    if isinstance(sampler, optuna.samplers.BaseGASampler):
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        sampler.get_trial_generation(trial.study, frozen)


def deploys(space: SearchSpace, config: SearchConfig) -> bool:
    """Whether the search needs a deploying evaluator (`Evaluator.measure_deployed`): a deployed-latency objective or
    an int8-deployed bit width."""
    return "latency_ms" in config.objectives or DEPLOYED_INT8 in (space.bits or ())


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
    """Up to `count` uniform policies (every layer the same amount and bit width) spread over the space.

    Slot i takes bit width i mod B (fewest bits first, fp32 last: `bit_order`) and an amount that
    walks down from the top of the range, staggered by bit width so that the amounts interleave: the most
    compressed corner (top amount, fewest bits) comes first and every bit width is tried from heavy pruning to
    light. Every amount lies on the space's step, so each one is also a point of the sparsity × bits grid.
    Rank genes stay at the top of their range (1.0: not factorized).
    """
    bits = [bits_gene_value(space.bits, b) for b in bit_order(space.bits)] if space.bits is not None else [None]
    rounds = -(-count // len(bits))
    chosen: list[dict[str, float | int | str]] = []
    for i in range(count):
        b, r = bits[i % len(bits)], i // len(bits)
        params: dict[str, float | int | str] = {}
        for name, _ in gene_units(layers, space.share):
            if space.amounts is not None:
                params[f"{name}.amount"] = _staggered_amount(space, (r + (i % len(bits)) / len(bits)) / rounds)
            if b is not None:
                params[f"{name}.bits"] = b
            if space.rank_ratios is not None:
                params[f"{name}.rank_ratio"] = space.rank_ratios[1]
        if params not in chosen:
            chosen.append(params)
    return chosen


def _staggered_amount(space: SearchSpace, depth: float) -> float:
    """The amount a fraction `depth` (0: top, 1: bottom) down the range, snapped to the step."""
    low, high = space.amounts
    steps = round((high - low) / space.amount_step)
    return round(low + space.amount_step * round(steps * (1 - depth)), 6)


SEED_AMOUNTS = 2  # pruning amounts per unit that the greedy seeds' sensitivity run probes (the middle and the top)
SEED_RANKS = 4  # rank ratios per unit it probes
# Every probe is an evaluation taken from the search's budget. On digits at 200 evaluations (benchmarks/bench_search.py,
# seeds 0–4), 2 amounts did better than 3 or 6: the greedy ladder needs few rungs, and the trials need the evaluations.


def _spread(low: float, high: float, step: float, count: int) -> tuple[float, ...]:
    """Up to `count` values from `high` down towards `low` (excluded), evenly spaced, on the grid low + k·step."""
    steps = round((high - low) / step)
    ks = sorted({round(steps * (i + 1) / count) for i in range(count)} - {0})
    return tuple(round(low + step * k, 6) for k in ks)


def seed_grid(space: SearchSpace) -> SensitivityGrid:
    """What the greedy seeds' sensitivity run tries per unit: every bit width but the least compressing one, and up
    to SEED_AMOUNTS amounts and SEED_RANKS rank ratios spread over the space's ranges, on its steps. The
    uncompressed end of each range is left out: it is what an untouched unit already is."""
    amounts = _spread(*space.amounts, space.amount_step, SEED_AMOUNTS) if space.amounts is not None else ()
    bits = tuple(bit_order(space.bits)[:-1]) if space.bits is not None else ()
    ranks = ()
    if space.rank_ratios is not None:  # from the top (not factorized) down: low + high − the spread of amounts
        low, high = space.rank_ratios
        ranks = tuple(round(low + high - r, 6) for r in _spread(low, high, space.rank_step, SEED_RANKS))
    return SensitivityGrid(amounts=amounts, bits=bits, rank_ratios=ranks)


def unit_params(space: SearchSpace, layers: Sequence[str], factorizable: Sequence[str],
                choices: dict[str, LayerChoice]) -> dict[str, float | int | str]:
    """The trial parameters of per-unit choices (`compressor.sensitivity.greedy_policy`'s); a gene a unit has no
    choice for takes its least compressing value (lowest amount, fp32 or the widest bits, rank ratio at the top)."""
    params: dict[str, float | int | str] = {}
    for unit, members in gene_units(layers, space.share):
        c = choices.get(unit, LayerChoice())
        if space.amounts is not None:
            params[f"{unit}.amount"] = c.amount if c.amount is not None else space.amounts[0]
        if space.bits is not None:
            params[f"{unit}.bits"] = bits_gene_value(space.bits, c.bits if c.bits is not None else bit_order(space.bits)[-1])
        if space.rank_ratios is not None and all(name in factorizable for name in members):
            params[f"{unit}.rank_ratio"] = c.rank_ratio if c.rank_ratio is not None else space.rank_ratios[1]
    return params


def params_policy(params: dict, space: SearchSpace, layers: Sequence[str], factorizable: Sequence[str]) -> dict[str, LayerChoice]:
    """The policy a trial with these parameters evaluates (the same code path, so the same cache entry)."""
    return suggest_policy(optuna.trial.FixedTrial(params), space, layers, factorizable)


def greedy_ladder(table: pd.DataFrame, space: SearchSpace, layers: Sequence[str],
                  factorizable: Sequence[str]) -> list[dict[str, float | int | str]]:
    """The distinct greedy policies of a sensitivity table, as trial parameters, least to most compressing.

    The greedy policy for a target drop Δ changes only where Δ crosses a probe's own drop, so one policy per distinct
    measured drop is every policy greedy selection can give.
    """
    ladder: list[dict[str, float | int | str]] = []
    for target in sorted(set(table["drop"].clip(lower=0.0).round(12))):
        params = unit_params(space, layers, factorizable, greedy_policy(table, min(float(target), 1.0)))
        if params not in ladder:
            ladder.append(params)
    return ladder


def greedy_params(evaluator: Evaluator, space: SearchSpace, config: SearchConfig,
                  progress: Callable[[float, str], None] | None = None) -> tuple[list[dict[str, float | int | str]], int]:
    """Up to `config.greedy_seeds` greedy-by-sensitivity policies (trial parameters) and the policies measured.

    AIMET's recipe (per-layer sensitivity, then greedy per-layer selection) is a strong seed: first a sensitivity
    run over the search's own genes and units (`seed_grid`, `compressor.sensitivity.sensitivity`), then the ladder
    of greedy policies from least to most compressing (`greedy_ladder`). With a `max_drop` constraint, a bisection
    on the ladder measures which is the most compressing policy whose COMBINED drop holds it (layers' errors add up,
    so a policy's drop is measured, not summed; the drop grows along the ladder) and the seeds are that policy and
    its neighbours on the ladder; without one they are spread evenly along it. Every policy measured here is in the
    evaluator's cache: when the search evaluates a seed, it costs nothing more.
    """
    before = evaluator.misses
    layers, factorizable = search_layers(evaluator, space), evaluator.factorizable
    table = sensitivity(evaluator, seed_grid(space), layers, progress=progress, share=space.share)
    ladder = greedy_ladder(table, space, layers, factorizable)
    count = min(config.greedy_seeds, len(ladder))
    if config.max_drop is None:
        picks = sorted({round(i * (len(ladder) - 1) / max(count - 1, 1)) for i in range(count)})
    else:
        def holds(i: int) -> bool:
            return evaluator(params_policy(ladder[i], space, layers, factorizable)).drop <= config.max_drop

        best = _last_true(holds, len(ladder))
        picks = sorted(range(len(ladder)), key=lambda i: (abs(i - best), -i))[:count]
    return [ladder[i] for i in picks], evaluator.misses - before


def _last_true(holds: Callable[[int], bool], n: int) -> int:
    """Bisection: the largest i < n with holds(i), for holds true up to some index and false after (0 if none)."""
    low, high, best = 0, n - 1, 0
    while low <= high:
        mid = (low + high) // 2
        if holds(mid):
            best, low = mid, mid + 1
        else:
            high = mid - 1
    return best


def warm_start(study: optuna.Study, evaluator: Evaluator, space: SearchSpace, config: SearchConfig,
               progress: Callable[[float, str], None] | None = None) -> None:
    """Queue the first generation of a study that has no trials yet (`enqueue_trial`): `config.greedy_seeds`
    greedy-by-sensitivity policies (`greedy_params`; `progress(fraction, label)` during its sensitivity run), then
    uniform policies (`uniform_params`) in the remaining slots.

    Evolution then starts from what a sparsity × bits grid and AIMET's greedy selection would try, so its front
    begins at theirs and crossover mixes them into per-layer policies. How many policies the greedy seeds measured
    is kept as the study's user attribute "greedy_seed_evaluations" (the search's budget does not count them).
    """
    if study.get_trials(deepcopy=False):
        return
    queued: list[dict[str, float | int | str]] = []
    if config.greedy_seeds:
        queued, measured = greedy_params(evaluator, space, config, progress)
        study.set_user_attr("greedy_seed_evaluations", measured)
    if config.warm_start:
        queued += uniform_params(space, search_layers(evaluator, space), config.population - len(queued))
    for params in queued:
        study.enqueue_trial(params, skip_if_exists=True)


def continue_search(study: optuna.Study, evaluator: Evaluator, space: SearchSpace, config: SearchConfig,
                    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
                    progress: Callable[[float, str], None] | None = None) -> None:
    """Run the study until it holds `config.trials` complete trials: the first generation (`warm_start`;
    `progress(fraction, label)` during its greedy seeds' sensitivity run), then evolution. A callback that calls
    `study.stop()` ends it early; calling this again continues."""
    warm_start(study, evaluator, space, config, progress)
    work(study, make_objective(evaluator, space, config), config.trials, callbacks)


def run_search(evaluator: Evaluator, space: SearchSpace = SearchSpace(), config: SearchConfig = SearchConfig(),
               storage: optuna.storages.BaseStorage | str | None = None, study_name: str | None = None,
               callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()) -> optuna.Study:
    """Search until the study holds `config.trials` complete trials; returns the study.

    `callbacks(study, trial)` run after every trial (the app moves its progress bar and redraws the front);
    a callback may call `study.stop()` to end the search early.
    """
    study = create_study(config, storage, study_name)
    continue_search(study, evaluator, space, config, callbacks)
    return study


# ---------------------------------------------------------------- results as plain data


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per complete trial: number, generation, measures, feasibility, recipe JSON."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rows.append({"number": t.number, "generation": t.system_attrs.get(GENERATION_KEY, 0),
                     "baseline_latency_ms": None, **t.user_attrs["measures"],
                     "feasible": all(v <= 0 for v in t.constraints.values()),
                     "policy": t.user_attrs.get("description", ""), "recipe": t.user_attrs["recipe"]})
    columns = ["number", "generation", "quality", "baseline_quality", "bytes", "effective_macs", "metric",
               "latency_ms", "baseline_latency_ms", "feasible", "policy", "recipe"]
    return pd.DataFrame(rows, columns=columns)


def front(frame: pd.DataFrame, objectives: Sequence[str], up_to_generation: int | None = None) -> pd.DataFrame:
    """The feasible non-dominated rows (of generations ≤ `up_to_generation`, if given), smallest file first."""
    rows = frame if up_to_generation is None else frame[frame["generation"] <= up_to_generation]
    rows = rows[rows["feasible"]].drop_duplicates(["policy", "recipe"])  # int8-deployed layers are not in "recipe"
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
