"""Recipes are data: exact JSON round-trips, strict keys, validation that names the bad value."""
from __future__ import annotations

import dataclasses
import json
import math
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compressor.recipe import MAX_STEPS, STEP_TYPES, Finetune, LowRank, Prune, Quantize, Recipe, Step

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
        ({"type": "prune", "amount": 1.5}, "amount=1.5 is out of range; allowed: 0 to 0.99"),
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


# ---------------------------------------------------------------- identity: ==, hash and the cache key agree


def test_a_recipe_read_from_json_is_the_recipe_built_in_code():
    read = Recipe.from_json('{"steps":[{"type":"prune","amount":0.5}]}')
    built = Recipe((Prune(amount=0.5),))
    assert read == built and hash(read) == hash(built) and read.canonical_json() == built.canonical_json()
    assert read.to_json(indent=None) == '{"steps": [{"type": "prune", "amount": 0.5}]}'  # written back as written


def test_steps_with_overrides_hash_and_key_a_dict():
    step = Prune(overrides={"fc*": {"amount": 0.5}, "fc1": {"amount": 0.9}})
    assert hash(step) == hash(Prune(overrides={"fc*": {"amount": 0.5}, "fc1": {"amount": 0.9}}))
    assert {Recipe((step,)): 1}[Recipe.from_dict({"steps": [step.to_dict()]})] == 1
    assert step.overrides["fc1"]["amount"] == 0.9
    with pytest.raises(TypeError):
        step.overrides["fc1"] = {"amount": 0.1}  # immutable: a shared, cached step cannot change under its hash
    copied = pickle.loads(pickle.dumps(step))  # a session or disk cache may pickle steps
    assert copied.overrides._hash is None  # a hash of strings is not carried to another process
    assert copied == step and hash(copied) == hash(step)


def test_override_order_is_part_of_identity_because_later_globs_win():
    first = Prune(overrides={"fc*": {"amount": 0.5}, "fc1": {"amount": 0.9}})
    second = Prune(overrides={"fc1": {"amount": 0.9}, "fc*": {"amount": 0.5}})
    assert first != second and Recipe((first,)).canonical_json() != Recipe((second,)).canonical_json()


@pytest.mark.parametrize(("a", "b"), [
    (Prune(amount=0.5), Prune(amount=Fraction(1, 2))),
    (Prune(amount=0), Prune(amount=0.0)),
    (Prune(amount=-0.0), Prune(amount=0.0)),
    (Finetune(lr=1), Finetune(lr=1.0)),
    (Quantize(bits=np.int64(4)), Quantize(bits=4)),
    (Prune(schedule="agp"), Prune(schedule="agp", steps=5, epochs_per_step=1, initial_amount=0.0, lr=1e-3)),
    (Prune(layers=("fc2", "fc1", "fc1")), Prune(layers=["fc1", "fc2"])),
    (Prune(overrides={}), Prune()),
    (LowRank(rank=4, overrides={"fc1": {"energy": 1}}), LowRank(rank=4, overrides={"fc1": {"energy": 1.0}})),
])
def test_one_value_has_one_spelling(a, b):
    assert a == b and hash(a) == hash(b)
    assert Recipe((a,)).canonical_json() == Recipe((b,)).canonical_json()
    assert type(a.canonical_dict().get("amount", 0.0)) is float


def test_a_file_written_with_ints_for_floats_is_the_same_recipe_and_writes_back_as_written():
    text = '{"steps": [{"type": "finetune", "lr": 1, "epochs": 2}]}'
    recipe = Recipe.from_json(text)
    assert recipe == Recipe((Finetune(lr=1.0, epochs=2),))
    assert recipe.to_json(indent=None) == text
    edited = Recipe((dataclasses.replace(recipe.steps[0], epochs=4),))
    assert edited.to_dict() == {"steps": [{"type": "finetune", "lr": 1.0, "epochs": 4}]}  # given keys, current values


STEPS = st.one_of(
    st.builds(Prune, amount=st.floats(0, 0.99), criterion=st.sampled_from(["magnitude", "taylor", "random"]),
              scope=st.sampled_from(["layer", "global"]),
              overrides=st.none() | st.dictionaries(st.sampled_from(["fc1", "fc*", "conv?"]),
                                                    st.fixed_dictionaries({"amount": st.floats(0, 0.99)}), max_size=3)),
    st.builds(Prune, amount=st.floats(0.5, 0.99), schedule=st.just("agp"), steps=st.none() | st.integers(1, 100),
              lr=st.none() | st.floats(1e-6, 1), seed=st.none() | st.integers(0, 2**32 - 1)),
    st.builds(Quantize, bits=st.integers(1, 8), method=st.sampled_from(["uniform", "kmeans"]),
              layers=st.none() | st.lists(st.sampled_from(["fc1", "fc2", "conv*"]), min_size=1, max_size=3),
              overrides=st.none() | st.dictionaries(st.sampled_from(["fc1", "fc2"]),
                                                    st.fixed_dictionaries({"bits": st.integers(1, 8)}), max_size=2)),
    st.builds(LowRank, rank=st.integers(1, 65536)),
    st.builds(LowRank, energy=st.floats(1e-9, 1)),
    st.builds(Finetune, epochs=st.integers(1, 200), lr=st.floats(1e-9, 1), batch_size=st.integers(1, 65536)),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(STEPS, max_size=6))
def test_equal_recipes_hash_equal_and_the_canonical_form_round_trips(steps):
    recipe = Recipe(tuple(steps))
    canonical = recipe.canonical_json()
    again = Recipe.from_json(canonical)
    assert again == recipe and hash(again) == hash(recipe) and again.canonical_json() == canonical
    written = Recipe.from_json(recipe.to_json())
    assert written == recipe and hash(written) == hash(recipe)
    rebuilt = Recipe(tuple(type(s)(**{f.name: getattr(s, f.name) for f in dataclasses.fields(s)}) for s in steps))
    assert rebuilt == recipe and hash(rebuilt) == hash(recipe)  # a step rebuilt from its own canonical values


# ---------------------------------------------------------------- every number has a documented range


@pytest.mark.parametrize(("step", "message"), [
    ({"type": "finetune", "epochs": 1000000}, "epochs=1000000 is out of range; allowed: 1 to 200"),
    ({"type": "finetune", "epochs": 1e30}, "epochs=1e+30 must be a whole number from 1 to 200"),
    ({"type": "finetune", "epochs": 3.0}, "epochs=3.0 must be a whole number"),
    ({"type": "finetune", "epochs": True}, "epochs=True must be a whole number"),
    ({"type": "finetune", "lr": 1e308}, "lr=1e+308 is out of range; allowed: above 0 up to 1"),
    ({"type": "finetune", "lr": 0}, "lr=0 is out of range; allowed: above 0 up to 1"),
    ({"type": "finetune", "lr": float("nan")}, "lr=nan must be a finite number"),
    ({"type": "finetune", "lr": float("inf")}, "lr=inf must be a finite number"),
    ({"type": "finetune", "batch_size": 65537}, "batch_size=65537 is out of range; allowed: 1 to 65536"),
    ({"type": "finetune", "seed": -1}, "seed=-1 is out of range; allowed: 0 to 4294967295"),
    ({"type": "finetune", "seed": 2**32}, "seed=4294967296 is out of range"),
    ({"type": "prune", "schedule": "agp", "steps": 1000000000}, "steps=1000000000 is out of range; allowed: 1 to 100"),
    ({"type": "prune", "schedule": "agp", "epochs_per_step": 51}, "epochs_per_step=51 is out of range; allowed: 1 to 50"),
    ({"type": "prune", "schedule": "agp", "steps": 100, "epochs_per_step": 3}, "= 300 epochs; at most 200"),
    ({"type": "prune", "schedule": "agp", "amount": 0.5, "initial_amount": 0.6}, "initial_amount=0.6 is out of range"),
    ({"type": "prune", "amount": float("nan")}, "amount=nan must be a finite number"),
    ({"type": "prune", "amount": True}, "amount=True must be a number"),
    ({"type": "prune", "structured": True, "norm": True}, "norm=True is not allowed; choose one of 1, 2"),
    ({"type": "prune", "structured": True, "norm": 2.0}, "norm=2.0 is not allowed"),
    ({"type": "low_rank", "rank": 65537}, "rank=65537 is out of range; allowed: 1 to 65536"),
    ({"type": "low_rank", "energy": float("inf")}, "energy=inf must be a finite number"),
    ({"type": "quantize", "bits": True}, "bits=True must be a whole number"),
])
def test_absurd_values_are_refused_naming_the_value_and_the_range(step, message):
    with pytest.raises(ValueError) as err:
        Step.from_dict(step)
    assert message in str(err.value)


def test_every_numeric_setting_has_a_finite_documented_range_and_a_valid_default():
    for cls in STEP_TYPES.values():
        for name, spec in cls.specs().items():
            assert spec.help, f"{cls.type}.{name} has no help"
            if spec.choices is None and spec.kind is not bool:
                assert spec.kind in (int, float) and spec.low is not None and spec.high is not None, (cls, name)
                assert math.isfinite(spec.low) and math.isfinite(spec.high)
            assert spec.check(name, spec.default) == spec.default


def recipe_table() -> list[str]:
    """The README's table of recipe keys, one row per setting, generated from the step classes' specs."""
    rows = []
    for cls in STEP_TYPES.values():
        for name, spec in cls.specs().items():
            default = json.dumps(spec.default)
            if spec.optional:
                default = "left out" if spec.default is None else f"({default})"
            rows.append(f"| `{cls.type}` | `{name}` | {default} | {spec.allowed().replace('|', chr(92) + '|')} "
                        f"| {spec.help.replace('|', chr(92) + '|')} |")
    return rows


def test_the_readme_recipe_table_is_the_step_specs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [row for row in recipe_table() if row not in readme.splitlines()]
    assert not missing, "README's recipe table differs from the specs; expected rows:\n" + "\n".join(missing)


def test_specs_give_the_pages_their_vocabulary():
    spec = Prune.spec("amount")
    assert (spec.default, spec.low, spec.high) == (0.5, 0.0, 0.99)
    assert Prune.spec("criterion").choices == ("magnitude", "taylor", "random", "activation")
    assert Prune.spec("scope").label("layer") == "per layer"
    assert Quantize.spec("bits").allowed() == "1 to 8"
    assert Finetune.spec("lr").allowed() == "above 0 up to 1"
    with pytest.raises(ValueError, match="prune has no setting 'bits'"):
        Prune.spec("bits")


@pytest.mark.parametrize(("step", "words"), [
    (Prune(amount=0.9, scope="global"), "prune 90% magnitude, global"),
    (Prune(amount=0.945, structured=True, norm=1), "prune 94.5% magnitude, per layer, structured L1"),
    (Prune(amount=0.94, scope="global", schedule="agp", steps=8, epochs_per_step=3, lr=3e-3),
     "prune 94% magnitude, global, gradual (AGP 8 steps × 3 epochs, lr 0.003)"),
    (Quantize(bits=4, scheme="symmetric", granularity="channel", layers=("fc1",)),
     "quantize 4-bit symmetric, per channel on fc1"),
    (Quantize(bits=5, method="kmeans", activations=True), "quantize 5-bit k-means, 8-bit activations"),
    (LowRank(rank=4, overrides={"fc1": {"rank": 2}, "fc2": {"energy": 0.5}}), "low-rank rank 4 (+2 overrides)"),
    (Finetune(epochs=1, lr=3e-3, seed=7), "fine-tune 1 epoch, lr 0.003, batch 64, seed 7"),
])
def test_describe(step, words):
    assert step.describe() == words


# ---------------------------------------------------------------- parsing never ends in anything but a ValueError


@pytest.mark.parametrize(("text", "message"), [
    ('{"steps": [{"type": ["prune"]}]}', "step type ['prune'] is not allowed"),
    ('{"steps": [{"type": {"a": 1}}]}', "step type {'a': 1} is not allowed"),
    ('{"steps": [{"type": 3}]}', "step type 3 is not allowed"),
    ("[" * 100_000 + "]" * 100_000, "nests more than 16 levels deep"),
    ('{"steps": [{"type": "prune", "amount": ' + "[" * 900 + "]" * 900 + "}]}", "nests more than 16 levels deep"),
    ('{"steps": [' + ", ".join(['{"type": "finetune"}'] * 400) + "]}", "recipe has 400 steps; at most 64"),
    (" " * 1_000_001, "recipe is 1,000,001 characters long; at most 1,000,000"),
    ('{"steps": [{"type": "prune", "amount": NaN}]}', "amount=nan must be a finite number"),
    ('{"steps": [{"type": "finetune", "epochs": ' + "9" * 5000 + "}]}", "recipe is not valid JSON"),
    ('{"steps": [{"type": "finetune", "epochs": ' + "9" * 4000 + "}]}", "epochs=99999"),
    ('{"steps": [{"type": "finetune", "lr": 1e999}]}', "lr=inf must be a finite number"),
    ('{"steps": [{"type": "prune", "layers": ["fc1"], "overrides": {"fc1": 3}}]}', "override 'fc1' must be an object"),
    ('{"steps": [{"type": "prune", "layers": ["' + "a*" * 500 + '"]}]}', "1,000 characters long; at most 256"),
    ('{"steps": [{"type": "prune", "overrides": {"' + "x" * 300 + '": {"amount": 0.5}}}]}', "at most 256"),
])
def test_hostile_recipe_text_gives_one_clear_value_error(text, message):
    with pytest.raises(ValueError) as err:
        Recipe.from_json(text)
    assert message in str(err.value)


def test_errors_never_echo_a_huge_value():
    huge = "x" * 1_000_000
    for step in ({"type": "prune", "amount": huge}, {"type": huge}, {"type": "prune", huge: 1},
                 {"type": "prune", "overrides": {huge: {"amount": 2}}}, {"type": "prune", "layers": [huge, 5]}):
        with pytest.raises(ValueError) as err:
            Recipe.from_dict({"steps": [step]})
        assert len(str(err.value)) < 400, step


def test_sixty_four_steps_work_and_a_recipe_file_too_large_is_refused_before_reading(tmp_path):
    assert len(Recipe((Quantize(bits=8),) * MAX_STEPS)) == MAX_STEPS
    with pytest.raises(ValueError, match="at most 64"):
        Recipe((Quantize(bits=8),) * (MAX_STEPS + 1))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 5_000_000)
    with pytest.raises(ValueError, match="5,000,000 bytes"):
        Recipe.load(big)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not UTF-8"):
        Recipe.load(binary)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
KEYS = sorted({name for cls in STEP_TYPES.values() for name in cls.specs()} | {"layers", "overrides", "type"})
STEP_DATA = st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5).flatmap(
    lambda d: st.sampled_from([*STEP_TYPES, 3, None]).map(lambda kind: {**d, "type": kind}))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(STEP_DATA, max_size=3) | JSON)
def test_any_json_gives_a_recipe_or_one_value_error(steps):
    """Seeded fuzz over the keys a recipe knows and any JSON values: a valid recipe or a short ValueError, nothing else."""
    text = json.dumps({"steps": steps} if isinstance(steps, list) else steps)
    try:
        recipe = Recipe.from_json(text)
    except ValueError as err:
        assert len(str(err)) < 400
    else:
        assert Recipe.from_json(recipe.canonical_json()) == recipe
