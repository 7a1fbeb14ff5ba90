"""`compress(model, recipe, data)`: run a recipe's steps in order, each on a fresh copy."""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator

from torch import nn

from compressor.data import DataSplits
from compressor.embedding_training import finetune_embeddings
from compressor.heads import attention_blocks, prune_transformer
from compressor.low_rank import low_rank
from compressor.pruning import prune
from compressor.quantization import quantize
from compressor.recipe import Finetune, LowRank, Prune, Quantize, Recipe, Step
from compressor.schedules import gradual_prune
from compressor.state import recipe_of, tag_recipe
from compressor.structured import prune_channels
from compressor.training import finetune

RecipeLike = Recipe | Step | Iterable[Step]


def as_recipe(recipe: RecipeLike) -> Recipe:
    """Accept a Recipe, a single step or a list of steps."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Step):
        return Recipe((recipe,))
    return Recipe(tuple(recipe))


def _calibration(step: Step, data: DataSplits | None):
    return None if data is None else data.calibration


def _training_data(data: DataSplits | None, why: str) -> DataSplits:
    if data is None:
        raise ValueError(f"{why} trains on data.train; pass data (DataSplits with a labelled train split)")
    return data


def _apply_prune(model: nn.Module, step: Prune, data: DataSplits | None) -> nn.Module:
    if step.criterion == "taylor" and data is not None and data.kind == "embedding":
        raise ValueError("criterion='taylor' needs a classification loss, but this model outputs embeddings; "
                         "use criterion 'activation', 'magnitude' or 'random'")
    if step.schedule == "agp" and data is not None and data.kind == "embedding":
        raise ValueError("schedule='agp' fine-tunes on a classification loss, but this model outputs embeddings; "
                         "prune in one shot, then add a finetune step (it distils the uncompressed embeddings)")
    if step.schedule == "agp":
        data = _training_data(data, "prune with schedule='agp' (gradual pruning)")
        pruned, _ = gradual_prune(model, step.amount, data.train, **step.agp_settings(), calibration=data.calibration,
                                  criterion=step.criterion, scope=step.scope, layers=step.layers, overrides=step.overrides)
        return pruned
    common = dict(amount=step.amount, criterion=step.criterion, scope=step.scope, layers=step.layers,
                  overrides=step.overrides, data=_calibration(step, data))
    if not step.structured:
        return prune(model, **common)
    if data is None:
        raise ValueError("structured pruning needs an example input to trace layer shapes; pass data")
    if attention_blocks(model):
        return prune_transformer(model, example_input=data.example_input, norm=step.norm, **common)
    return prune_channels(model, example_input=data.example_input, norm=step.norm, **common)


def _apply_quantize(model: nn.Module, step: Quantize, data: DataSplits | None) -> nn.Module:
    return quantize(model, **step.settings(), layers=step.layers, overrides=step.overrides,
                    data=_calibration(step, data))


def _apply_low_rank(model: nn.Module, step: LowRank, data: DataSplits | None) -> nn.Module:
    return low_rank(model, **step.settings(), layers=step.layers, overrides=step.overrides)


def _apply_finetune(model: nn.Module, step: Finetune, data: DataSplits | None) -> nn.Module:
    data = _training_data(data, "finetune")
    if data.kind == "embedding":  # distil the uncompressed model's embeddings (embedding_training.py)
        tuned, _ = finetune_embeddings(model, data.train, **step.settings(), layers=step.layers)
        return tuned
    tuned, _ = finetune(model, data.train, **step.settings(), layers=step.layers)
    return tuned


APPLY: dict[type[Step], Callable[[nn.Module, Step, DataSplits | None], nn.Module]] = {
    Prune: _apply_prune,
    Quantize: _apply_quantize,
    LowRank: _apply_low_rank,
    Finetune: _apply_finetune,
}


def apply_step(model: nn.Module, step: Step, data: DataSplits | None = None) -> nn.Module:
    """One step on a copy of `model`."""
    return APPLY[type(step)](model, step, data)


def compress_stages(model: nn.Module, recipe: RecipeLike, data: DataSplits | None = None) -> Iterator[nn.Module]:
    """The model after each step in turn (for size waterfalls and stage-by-stage reports).

    Each stage carries the recipe that made it from the source model (earlier recipes of `model` included).
    """
    steps = list((recipe_of(model) or {"steps": []})["steps"])
    for step in as_recipe(recipe).steps:
        model = apply_step(model, step, data)
        steps.append(step.to_dict())
        yield tag_recipe(model, {"steps": list(steps)})


def compress(model: nn.Module, recipe: RecipeLike, data: DataSplits | None = None) -> nn.Module:
    """A compressed copy of `model`; the input is never changed. An empty recipe gives an equal copy."""
    result = model
    for result in compress_stages(model, recipe, data):  # every step returns a new model
        pass
    return copy.deepcopy(model).eval() if result is model else result
