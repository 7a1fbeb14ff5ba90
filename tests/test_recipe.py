"""Recipes are data: exact JSON round-trips, strict keys, validation that names the bad value."""
from __future__ import annotations

import json

import pytest

from compressor.recipe import LowRank, Prune, Quantize, Recipe, Step

ISSUE_EXAMPLE = {
    "steps": [
        {"type": "prune", "amount": 0.9, "criterion": "magnitude", "scope": "global"},
        {"type": "quantize", "bits": 4, "scheme": "symmetric", "granularity": "channel"},
        {"type": "low_rank", "rank_ratio": 0.25, "layers": ["fc*"], "overrides": {"fc1": {"rank_ratio": 0.5}}},
    ]
}


def test_hand_written_recipe_round_trips_unchanged():
    text = json.dumps(ISSUE_EXAMPLE, indent=2)
    recipe = Recipe.from_json(text)
    assert recipe.to_dict() == ISSUE_EXAMPLE
    assert json.loads(recipe.to_json()) == ISSUE_EXAMPLE
    assert recipe.steps[0] == Prune(amount=0.9, criterion="magnitude", scope="global")
    assert recipe.steps[2].layers == ("fc*",)


def test_recipe_built_in_code_writes_every_setting_and_reads_back_equal(tmp_path):
    recipe = Recipe((Prune(amount=0.8, structured=True, norm=1), Quantize(bits=3, method="kmeans"), LowRank(energy=0.9)))
    path = tmp_path / "r.json"
    recipe.save(path)
    assert Recipe.load(path) == recipe
    saved = json.loads(path.read_text())
    assert saved["steps"][0] == {
        "type": "prune", "amount": 0.8, "criterion": "magnitude", "scope": "layer", "structured": True, "norm": 1
    }
    assert saved["steps"][2] == {"type": "low_rank", "energy": 0.9}


def test_equal_recipes_hash_equal_so_they_can_key_a_cache():
    a = Recipe.from_dict(ISSUE_EXAMPLE)
    b = Recipe.from_json(json.dumps(ISSUE_EXAMPLE))
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert Recipe((Prune(amount=0.5),)) != Recipe((Prune(amount=0.6),))


@pytest.mark.parametrize(
    "step, message",
    [
        ({"type": "prune", "amount": 1.5}, "amount=1.5 is out of range; allowed: 0.0 to 0.99"),
        ({"type": "prune", "amount": "lots"}, "amount='lots' must be a number"),
        ({"type": "prune", "criterion": "size"}, "criterion='size' is not allowed"),
        ({"type": "prune", "scope": "model"}, "scope='model' is not allowed"),
        ({"type": "prune", "norm": 1}, "norm=1 applies to structured pruning only"),
        ({"type": "prune", "structured": "yes"}, "structured='yes' must be true or false"),
        ({"type": "prune", "amont": 0.5}, "unknown key(s) amont"),
        ({"type": "quantize", "bits": 0}, "bits=0 is out of range; allowed: 1 to 8"),
        ({"type": "quantize", "bits": 9}, "bits=9 is out of range; allowed: 1 to 8"),
        ({"type": "quantize", "bits": 4.0}, "bits=4.0 must be a whole number"),
        ({"type": "quantize", "scheme": "log"}, "scheme='log' is not allowed"),
        ({"type": "quantize", "granularity": "row"}, "granularity='row' is not allowed"),
        ({"type": "low_rank"}, "exactly one of rank, rank_ratio, energy; got none"),
        ({"type": "low_rank", "rank": 4, "energy": 0.9}, "got rank, energy"),
        ({"type": "low_rank", "rank": 0}, "rank=0 is out of range"),
        ({"type": "low_rank", "energy": 0}, "energy=0 is out of range"),
        ({"type": "low_rank", "rank_ratio": 1.2}, "rank_ratio=1.2 is out of range"),
        ({"type": "distill"}, "step type 'distill' is not allowed"),
        ({"type": "prune", "layers": []}, "must be a non-empty list"),
        ({"type": "prune", "layers": 5}, "layers=5 must be a list of layer names"),
        ({"type": "prune", "layers": [3]}, "must be a non-empty list of layer names"),
        ({"type": "prune", "overrides": {"fc1": {"amount": 2}}}, "amount=2 is out of range"),
        ({"type": "prune", "overrides": {"fc1": {"bits": 2}}}, "override 'fc1' has unknown key(s) bits"),
        ({"type": "quantize", "overrides": {"conv*": {"bits": 0}}}, "bits=0 is out of range"),
        ({"type": "low_rank", "rank": 3, "overrides": {"fc1": {"rank": 2, "energy": 0.5}}}, "got rank, energy"),
    ],
)
def test_bad_steps_raise_value_error_naming_the_value(step, message):
    with pytest.raises(ValueError) as err:
        Step.from_dict(step)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"step": []}, 'one key, "steps"'),
        ({"steps": [], "name": "x"}, 'one key, "steps"'),
        ({"steps": {}}, 'one key, "steps"'),
        ({"steps": [3]}, "a step must be an object"),
    ],
)
def test_bad_recipes_raise(data, message):
    with pytest.raises(ValueError, match=message):
        Recipe.from_dict(data)


def test_invalid_json_and_missing_file_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        Recipe.from_json("{steps: ")
    with pytest.raises(ValueError, match="does not exist"):
        Recipe.load(tmp_path / "missing.json")


def test_settings_are_the_technique_arguments():
    assert Quantize(bits=2, layers=("fc1",)).settings() == {
        "bits": 2, "scheme": "affine", "granularity": "tensor", "method": "uniform", "activations": False
    }
