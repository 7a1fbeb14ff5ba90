"""Gradual pruning: raise sparsity step by step and fine-tune in between (Zhu & Gupta, 2017, "To prune, or not").

Automated gradual pruning (AGP) moves the sparsity from an initial s_i to the final s_f over n pruning
steps, Δt apart, starting at t0:

    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (n Δt))³        for t = t0, t0 + Δt, …, t0 + n Δt

The cubic prunes fast while many redundant weights remain and slowly near the end, when each weight counts,
and the network recovers by training between the steps. Here one step is one pruning event followed by
`epochs_per_step` epochs of fine-tuning (t counts pruning events, Δt = 1, t0 = 0): event k prunes every layer to
s_k (masks only grow, see `pruning.py`), then the model trains with its masks held (see `training.py`).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn

from compressor.data import Split
from compressor.pruning import MAX_AMOUNT, prune
from compressor.recipe import Prune
from compressor.state import recipe_of, tag_recipe
from compressor.training import History, Progress, StopCheck, finetune
from compressor.validation import check_fraction, check_int, check_positive


def agp_sparsity(t: float, final: float, initial: float = 0.0, start: float = 0.0, steps: int = 1,
                 interval: float = 1.0) -> float:
    """Zhu & Gupta's sparsity at time t: s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³, s_i before t0, s_f after t0 + nΔt."""
    final = check_fraction("final", final, 0.0, 1.0)
    initial = check_fraction("initial", initial, 0.0, 1.0)
    steps = check_int("steps", steps, 1)
    interval = check_positive("interval", interval)
    if t <= start:
        return initial
    if t >= start + steps * interval:
        return final
    return final + (initial - final) * (1.0 - (t - start) / (steps * interval)) ** 3


def agp_targets(final: float, steps: int, initial: float = 0.0) -> list[float]:
    """The sparsity of each pruning event k = 0, 1, …, n that prunes anything (with s_i = 0, event 0 does not)."""
    targets = [agp_sparsity(k, final, initial, steps=steps) for k in range(steps + 1)]
    return [s for s in targets if s > 0]


def _stage_overrides(overrides: Mapping[str, Mapping[str, Any]] | None, k: int, steps: int,
                     initial: float) -> dict[str, dict[str, Any]] | None:
    """Per-layer amounts follow the same schedule towards their own final amount (s_i capped at it)."""
    if overrides is None:
        return None
    staged = {}
    for pattern, values in overrides.items():
        values = dict(values)
        if "amount" in values:
            final = check_fraction(f"amount of override {pattern!r}", values["amount"], 0.0, MAX_AMOUNT)
            values["amount"] = agp_sparsity(k, final, min(initial, final), steps=steps)
        staged[pattern] = values
    return staged


def gradual_prune(
    model: nn.Module,
    amount: float,
    data: Split,
    *,
    steps: int = 5,
    epochs_per_step: int = 1,
    initial_amount: float = 0.0,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    calibration: Split | None = None,
    test: Split | None = None,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
    **prune_options: Any,
) -> tuple[nn.Module, History]:
    """A copy of `model` pruned to `amount` by AGP: prune to s_k, fine-tune `epochs_per_step` epochs, for k = 0 … n.

    s_k = amount + (initial_amount − amount)(1 − k/steps)³ (`agp_sparsity`); events that prune nothing are skipped,
    so with initial_amount = 0 there are `steps` events and steps · epochs_per_step epochs in all. Fine-tuning
    is `finetune` on labelled `data` (lr, batch_size; event k shuffles with seed + k). `prune_options` go to
    `prune` at every event (criterion, scope, layers, overrides — whose amounts follow the schedule too);
    `calibration` is the data of the Taylor criterion and `seed` also seeds the random criterion.
    Returns (model, history): the fine-tuning records with epochs counted across events and the event's
    "sparsity" target. should_stop() ends the schedule early, at the sparsity reached so far. The model's recipe
    tag (`state.recipe_of`) gains this prune step, with the settings asked for (the tag is None when a recipe
    cannot express them).
    """
    amount = check_fraction("amount", amount, 0.0, MAX_AMOUNT)
    initial_amount = check_fraction("initial_amount", initial_amount, 0.0, amount)
    steps = check_int("steps", steps, 1)
    epochs_per_step = check_int("epochs_per_step", epochs_per_step, 1)
    lr = check_positive("lr", lr)
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    overrides = prune_options.pop("overrides", None)
    recipe = _recipe_after(model, dict(amount=amount, schedule="agp", steps=steps, epochs_per_step=epochs_per_step,
                                       initial_amount=initial_amount, lr=lr, batch_size=batch_size, seed=seed,
                                       overrides=overrides, **prune_options))
    targets = agp_targets(amount, steps, initial_amount)
    first = steps + 1 - len(targets)  # index k of the first event that prunes
    history: History = []
    current = model
    for i, target in enumerate(targets):
        if should_stop is not None and should_stop():
            break
        k = first + i
        staged = _stage_overrides(overrides, k, steps, initial_amount)
        current = prune(current, target, overrides=staged, data=calibration, seed=seed, **prune_options)

        def stage_progress(fraction: float, stage: History, i: int = i) -> None:
            progress((i + fraction) / len(targets), history + _numbered(stage, i * epochs_per_step, target))

        current, stage = finetune(current, data, epochs=epochs_per_step, lr=lr, batch_size=batch_size, seed=seed + k,
                                  test=test, progress=None if progress is None else stage_progress, should_stop=should_stop)
        history += _numbered(stage, i * epochs_per_step, target)
    result = (copy.deepcopy(model) if current is model else current).eval()
    return tag_recipe(result, recipe), history


def _recipe_after(model: nn.Module, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The model's recipe tag plus this schedule as a prune step; None (unknown) if a recipe cannot express it."""
    try:
        step = Prune(**settings).to_dict()
    except (TypeError, ValueError):  # e.g. a per-layer criterion, which prune() takes and a recipe step does not
        return None
    return {"steps": [*(recipe_of(model) or {"steps": []})["steps"], step]}


def _numbered(stage: History, offset: int, sparsity: float) -> History:
    """A stage's records with epochs counted from the start of the schedule and its sparsity target."""
    return [{**record, "epoch": offset + record["epoch"], "sparsity": sparsity} for record in stage]
