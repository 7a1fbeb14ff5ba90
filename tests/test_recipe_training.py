"""Training in recipes: the finetune step and the AGP prune schedule as data (JSON round trips, validation),
the AGP formula against hand-computed values, and whole recipes run by compress() and exported."""
from __future__ import annotations

import json

import pytest
import torch

from compressor import Finetune, Prune, Quantize, Recipe, compress, compress_stages, encode, load, load_sample
from compressor.data import DataSplits, Split
from compressor.layers import eligible_layers
from compressor.recipe import Step
from compressor.schedules import agp_sparsity, agp_targets, gradual_prune
from compressor.state import recipe_of, weight_quant
from compressor.training import accuracy

DEEP_COMPRESSION = {
    "steps": [
        {"type": "prune", "amount": 0.9, "scope": "global", "schedule": "agp", "steps": 3, "epochs_per_step": 1,
         "lr": 0.003},
        {"type": "finetune", "epochs": 2, "lr": 0.003},
        {"type": "quantize", "bits": 4, "method": "kmeans"},
        {"type": "finetune", "epochs": 1, "lr": 0.001, "seed": 5},
    ]
}


@pytest.fixture(scope="module")
def mlp():
    return load_sample("digits-mlp")


def _zeros(model):
    return {name: layer.weight == 0 for name, layer in eligible_layers(model).items()}


def _equal_states(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- the AGP formula


@pytest.mark.parametrize("k, expected", [(0, 0.0), (1, 0.4392), (2, 0.7056), (3, 0.8424), (4, 0.8928), (5, 0.9)])
def test_agp_sparsity_matches_hand_computed_values(k, expected):
    # s_f = 0.9, s_i = 0, n = 5: 0.9 · (1 − (1 − k/5)³), e.g. k = 1: 0.9 · (1 − 0.512) = 0.4392
    assert agp_sparsity(k, 0.9, steps=5) == pytest.approx(expected, abs=1e-12)


def test_agp_sparsity_with_start_interval_and_initial_sparsity():
    # s_f = 0.8, s_i = 0.2, t0 = 10, Δt = 2, n = 4: t = 14 is halfway, 0.8 + (0.2 − 0.8) · 0.5³ = 0.725
    assert agp_sparsity(14, 0.8, 0.2, start=10, steps=4, interval=2) == pytest.approx(0.725)
    assert agp_sparsity(12, 0.8, 0.2, start=10, steps=4, interval=2) == pytest.approx(0.8 - 0.6 * 0.75**3)
    assert agp_sparsity(3, 0.8, 0.2, start=10, steps=4, interval=2) == 0.2  # before t0: s_i
    assert agp_sparsity(99, 0.8, 0.2, start=10, steps=4, interval=2) == 0.8  # after t0 + nΔt: s_f


def test_agp_targets_skip_the_event_that_prunes_nothing():
    assert agp_targets(0.9, 5) == pytest.approx([0.4392, 0.7056, 0.8424, 0.8928, 0.9])
    assert agp_targets(0.5, 2, initial=0.1) == pytest.approx([0.1, 0.5 - 0.4 * 0.125, 0.5])
    assert agp_targets(0.0, 3) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(final=1.2), "final=1.2 is out of range"), (dict(steps=0), "steps=0 is out of range"),
    (dict(interval=0), "interval=0 is out of range"), (dict(initial=-0.1), "initial=-0.1 is out of range"),
])
def test_agp_sparsity_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        agp_sparsity(1, **{"final": 0.5, **kwargs})


# ---------------------------------------------------------------- gradual pruning


def test_gradual_pruning_reaches_the_final_sparsity_through_the_schedule(mlp):
    before = {k: v.clone() for k, v in mlp.model.state_dict().items()}
    seen = []
    pruned, history = gradual_prune(mlp.model, 0.8, mlp.data.train, steps=3, epochs_per_step=1, lr=3e-3,
                                    test=mlp.data.test, progress=lambda f, h: seen.append((f, h[-1]["sparsity"])))
    assert all(torch.equal(v, mlp.model.state_dict()[k]) for k, v in before.items())
    targets = agp_targets(0.8, 3)
    assert [r["sparsity"] for r in history] == targets and [r["epoch"] for r in history] == [1.0, 2.0, 3.0]
    assert [f for f, _ in seen] == pytest.approx([1 / 3, 2 / 3, 1.0]) and [s for _, s in seen] == targets
    for layer in eligible_layers(pruned).values():  # layer scope: every layer at exactly round(0.8 · numel) zeros
        assert int((layer.weight == 0).sum()) == round(0.8 * layer.weight.numel())
    one_shot = compress(mlp.model, Prune(amount=0.8))
    assert accuracy(pruned, mlp.data.test) > accuracy(one_shot, mlp.data.test)
    assert recipe_of(pruned) == {"steps": [Prune(amount=0.8, schedule="agp", steps=3, epochs_per_step=1, initial_amount=0.0,
                                                 lr=3e-3, batch_size=64, seed=0).to_dict()]}


def test_gradual_pruning_scales_override_amounts_and_can_be_stopped(mlp):
    pruned, history = gradual_prune(mlp.model, 0.6, mlp.data.train, steps=2, overrides={"fc3": {"amount": 0.2}})
    assert int((pruned.fc3.weight == 0).sum()) == 200 and int((pruned.fc1.weight == 0).sum()) == round(0.6 * 19200)
    calls = iter(range(100))  # asked before each event and each batch: 1 + 20 for event 1, then 1 + 8 batches
    stopped, partial = gradual_prune(mlp.model, 0.6, mlp.data.train, steps=4, should_stop=lambda: next(calls) >= 30)
    assert len(partial) == 2 and partial[-1]["sparsity"] == agp_targets(0.6, 4)[1]
    assert partial[-1]["epoch"] == pytest.approx(1 + 8 / 20)
    assert (stopped.fc1.weight == 0).float().mean().item() == pytest.approx(agp_targets(0.6, 4)[1], abs=1e-4)


# ---------------------------------------------------------------- steps as data


def test_training_steps_round_trip_through_json():
    recipe = Recipe.from_json(json.dumps(DEEP_COMPRESSION))
    assert recipe.to_dict() == DEEP_COMPRESSION
    assert recipe.steps[1] == Finetune(epochs=2, lr=0.003)
    assert recipe.steps[0].agp_settings() == {"steps": 3, "epochs_per_step": 1, "initial_amount": 0.0, "lr": 0.003,
                                              "batch_size": 64, "seed": 0}
    built = Recipe((Prune(amount=0.9, schedule="agp", steps=4), Finetune(layers=("fc*",))))
    assert Recipe.from_json(built.to_json()) == built and hash(Recipe.from_json(built.to_json())) == hash(built)
    assert built.to_dict()["steps"][1] == {"type": "finetune", "layers": ["fc*"], "epochs": 3, "lr": 0.001,
                                           "batch_size": 64, "seed": 0}
    assert Prune(amount=0.5).to_dict() == {"type": "prune", "amount": 0.5, "criterion": "magnitude", "scope": "layer",
                                           "structured": False, "norm": 2}  # one-shot recipes are unchanged


@pytest.mark.parametrize("step, message", [
    ({"type": "finetune", "epochs": 0}, "epochs=0 is out of range"),
    ({"type": "finetune", "epochs": 1.5}, "epochs=1.5 must be a whole number"),
    ({"type": "finetune", "lr": 0}, "lr=0 is out of range"),
    ({"type": "finetune", "lr": "fast"}, "lr='fast' must be a number"),
    ({"type": "finetune", "batch_size": 0}, "batch_size=0 is out of range"),
    ({"type": "finetune", "seed": -1}, "seed=-1 is out of range"),
    ({"type": "finetune", "epoch": 3}, "unknown key(s) epoch"),
    ({"type": "finetune", "overrides": {"fc1": {"lr": 0.1}}}, "finetune has no per-layer settings"),
    ({"type": "prune", "schedule": "cubic"}, "schedule='cubic' is not allowed"),
    ({"type": "prune", "steps": 5}, "steps=5 applies to schedule='agp' only"),
    ({"type": "prune", "schedule": "agp", "steps": 0}, "steps=0 is out of range"),
    ({"type": "prune", "schedule": "agp", "epochs_per_step": 0}, "epochs_per_step=0 is out of range"),
    ({"type": "prune", "schedule": "agp", "amount": 0.5, "initial_amount": 0.6}, "initial_amount=0.6 is out of range"),
    ({"type": "prune", "schedule": "agp", "lr": -1}, "lr=-1 is out of range"),
    ({"type": "prune", "schedule": "agp", "structured": True}, "applies to unstructured pruning only"),
])
def test_bad_training_steps_raise_value_error_naming_the_value(step, message):
    with pytest.raises(ValueError) as err:
        Step.from_dict(step)
    assert message in str(err.value)


# ---------------------------------------------------------------- recipes run by compress


def test_deep_compression_recipe_runs_exports_and_keeps_its_zeros(mlp):
    recipe = Recipe.from_dict(DEEP_COMPRESSION)
    before = {k: v.clone() for k, v in mlp.model.state_dict().items()}
    stages = list(compress_stages(mlp.model, recipe, mlp.data))
    assert all(torch.equal(v, mlp.model.state_dict()[k]) for k, v in before.items())
    pruned, final = stages[0], stages[-1]
    zeros = _zeros(pruned)
    assert all(torch.equal(zeros[n], z) for n, z in _zeros(final).items())  # no weight revived by either fine-tune
    assert sum(int(z.sum()) for z in zeros.values()) == round(0.9 * sum(z.numel() for z in zeros.values()))
    assert all(weight_quant(layer).method == "kmeans" for layer in eligible_layers(final).values())
    assert recipe_of(final) == DEEP_COMPRESSION
    restored = load(encode(final).data)
    assert _equal_states(restored, final) and torch.equal(restored(mlp.data.test.X), final(mlp.data.test.X))
    assert accuracy(final, mlp.data.test) > accuracy(mlp.model, mlp.data.test) - 0.03
    again = compress(mlp.model, recipe, mlp.data)
    assert _equal_states(again, final)  # same recipe, same seed: the same weights


def test_finetune_after_one_shot_steps_beats_them(mlp):
    one_shot = Recipe((Prune(amount=0.9, scope="global"), Quantize(bits=2, scheme="symmetric", granularity="channel")))
    tuned = compress(mlp.model, Recipe(one_shot.steps + (Finetune(epochs=3, lr=3e-3),)), mlp.data)
    assert accuracy(tuned, mlp.data.test) > accuracy(compress(mlp.model, one_shot, mlp.data), mlp.data.test) + 0.1


def test_training_steps_need_labelled_training_data(mlp):
    with pytest.raises(ValueError, match="finetune trains on data.train; pass data"):
        compress(mlp.model, Finetune())
    with pytest.raises(ValueError, match="schedule='agp'.*pass data"):
        compress(mlp.model, Prune(amount=0.5, schedule="agp"))
    unlabelled = DataSplits.from_test(Split(mlp.data.test.X))
    with pytest.raises(ValueError, match="needs labels"):
        compress(mlp.model, Finetune(), unlabelled)


def test_finetune_layers_in_a_recipe_train_only_those(mlp):
    tuned = compress(mlp.model, Finetune(epochs=1, layers=("fc3",)), mlp.data)
    assert torch.equal(tuned.fc1.weight, mlp.model.fc1.weight) and not torch.equal(tuned.fc3.weight, mlp.model.fc3.weight)
