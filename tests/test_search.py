"""Policies, sensitivity and the NSGA-II search on digits-mlp, with tiny trial counts."""
from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

import compressor as cz
from compressor.policy import DEPLOYED_INT8, FP32, Evaluator, LayerChoice, Measures, policy_recipe, uniform_policy
from compressor.search import (
    GENERATION_KEY, SearchConfig, SearchSpace, bit_order, front, gene_units, hypervolume, run_search, trials_frame,
    uniform_params,
)
from compressor.sensitivity import SensitivityGrid, greedy_policy, greedy_vs_uniform, matched_uniform, sensitivity

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def sample():
    return cz.load_sample("digits-mlp")


@pytest.fixture
def evaluator(sample):
    return Evaluator(sample.model, sample.data)


def test_policy_is_an_ordinary_recipe_applied_per_layer(sample):
    policy = {"fc1": LayerChoice(amount=0.8, bits=4), "fc2": LayerChoice(bits=FP32), "fc3": LayerChoice(rank_ratio=0.5)}
    recipe = policy_recipe(policy)
    assert cz.Recipe.from_json(recipe.to_json()) == recipe
    model = cz.compress(sample.model, recipe, sample.data)
    w1 = model.fc1.weight.detach()
    assert (w1 == 0).float().mean().item() == pytest.approx(0.8, abs=0.01)
    assert all(len(torch.unique(row)) <= 16 for row in w1)  # 4 bits per output channel
    assert torch.equal(model.fc2.weight, sample.model.fc2.weight)  # fp32 kept, untouched
    assert isinstance(model.fc3, torch.nn.Sequential) and model.fc3[0].out_features == 5  # rank 0.5 · min(100, 10)


def test_evaluator_caches_a_policy_seen_before(evaluator):
    policy = uniform_policy(evaluator.layers, 0.5, 4)
    first = evaluator(policy)
    assert evaluator(dict(policy)) is first and evaluator.misses == 1
    report = cz.evaluate(cz.compress(evaluator.model, policy_recipe(policy), evaluator.data), evaluator.data,
                         baseline=evaluator.model, latency=None)
    assert (first.quality, first.bytes) == (report.accuracy, report.compressed_bytes)


def test_deployed_int8_needs_a_deploying_evaluator(evaluator):
    with pytest.raises(ValueError, match="int8-deployed"):
        evaluator({"fc1": LayerChoice(bits=DEPLOYED_INT8)})
    with pytest.raises(ValueError, match="bits=9"):
        LayerChoice(bits=9)


def test_sensitivity_varies_one_layer_at_a_time(evaluator):
    grid = SensitivityGrid(amounts=(0.5, 0.95), bits=(8, 1), rank_ratios=())
    table = sensitivity(evaluator, grid, layers=["fc1", "fc3"])
    assert len(table) == 2 * 4
    row = table[(table.layer == "fc1") & (table.kind == "prune") & (table.setting == 0.95)].iloc[0]
    alone = cz.Recipe((cz.Prune(amount=0.95, layers=("fc1",)),))
    report = cz.evaluate(cz.compress(evaluator.model, alone, evaluator.data), evaluator.data,
                         baseline=evaluator.model, latency=None)
    assert row.quality == report.accuracy
    assert table[table.setting == 1]["drop"].min() > 0.3  # 1-bit weights hurt every layer


def test_sensitivity_stops_and_keeps_what_it_measured(evaluator):
    calls = []
    table = sensitivity(evaluator, SensitivityGrid(rank_ratios=()), progress=lambda f, label: calls.append(f),
                        should_stop=lambda: len(calls) >= 3)
    assert len(table) == 3 and calls[-1] < 1


def test_greedy_takes_the_most_compression_each_layer_tolerates():
    import pandas as pd

    table = pd.DataFrame([
        {"layer": "a", "kind": "prune", "setting": 0.5, "drop": 0.0}, {"layer": "a", "kind": "prune", "setting": 0.9, "drop": 0.05},
        {"layer": "a", "kind": "quantize", "setting": 4.0, "drop": 0.001}, {"layer": "a", "kind": "quantize", "setting": 2.0, "drop": 0.2},
        {"layer": "b", "kind": "prune", "setting": 0.5, "drop": 0.3}, {"layer": "b", "kind": "quantize", "setting": 8.0, "drop": 0.0},
    ])
    policy = greedy_policy(table, 0.01)
    assert policy == {"a": LayerChoice(amount=0.5, bits=4), "b": LayerChoice(bits=8)}
    assert isinstance(policy["a"].bits, int)


def test_greedy_next_to_uniform_of_the_same_size(evaluator):
    table = sensitivity(evaluator, SensitivityGrid(amounts=(0.5, 0.8, 0.9), bits=(8, 4, 2), rank_ratios=()))
    compared = greedy_vs_uniform(evaluator, table, 0.01)
    greedy, uniform = compared.iloc[0], compared.iloc[1]
    assert abs(uniform.bytes - greedy.bytes) <= 0.05 * greedy.bytes
    label, policy, m = matched_uniform(evaluator, int(greedy.bytes))
    assert m.bytes == uniform.bytes and len({(c.amount, c.bits) for c in policy.values()}) == 1


def test_search_is_seeded_reproducible_and_constrained(evaluator, sample):
    config = SearchConfig(trials=12, population=4, seed=3, objectives=("quality", "bytes"), max_drop=0.05)
    frames = [trials_frame(run_search(Evaluator(sample.model, sample.data), SearchSpace(), config)) for _ in range(2)]
    assert len(frames[0]) == 12
    assert frames[0]["recipe"].tolist() == frames[1]["recipe"].tolist()
    f = frames[0]
    assert (f["feasible"] == (f["baseline_quality"] - f["quality"] <= 0.05)).all()
    assert set(f["generation"]) == {0, 1, 2}
    best = front(f, ("quality", "bytes"))
    assert best["feasible"].all() and best["bytes"].is_monotonic_increasing


def test_search_uses_the_real_optuna_api(evaluator):
    study = run_search(evaluator, SearchSpace(bits=(FP32, 4), amounts=None),
                       SearchConfig(trials=4, population=2, objectives=("quality", "bytes"), max_bytes=20_000))
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    assert all(set(t.constraints) == {"max_bytes"} for t in study.trials)
    assert all(set(t.params) == {"fc1.bits", "fc2.bits", "fc3.bits"} for t in study.trials)


def test_hypervolume_matches_a_hand_computed_area():
    # points (quality, size): (0.9, 2) and (0.5, 1); reference (0, 4): 0.9·2 + 0.5·1 = 2.3
    assert hypervolume(np.array([0.9, 0.5]), np.array([2, 1]), (0.0, 4.0)) == pytest.approx(2.3)
    assert hypervolume(np.array([0.9]), np.array([5]), (0.0, 4.0)) == 0.0


@pytest.mark.parametrize("bad, message", [
    (dict(trials=0), "trials=0"), (dict(population=1), "population=1"), (dict(objectives=("bytes",)), "quality"),
    (dict(objectives=("quality", "speed")), "objective='speed'"), (dict(max_drop=2.0), "max_drop=2.0"),
])
def test_config_mistakes_name_the_value(bad, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**bad)


def test_space_mistakes_name_the_value():
    with pytest.raises(ValueError, match="amount"):
        SearchSpace(amounts=(0.5, 1.5))
    with pytest.raises(ValueError, match="empty"):
        SearchSpace(amounts=None, bits=None)


def test_warm_start_enqueues_uniform_policies_as_the_first_generation(evaluator):
    space, config = SearchSpace(amount_step=0.01), SearchConfig(trials=8, population=4, objectives=("quality", "bytes"))
    study = run_search(evaluator, space, config)
    queued = uniform_params(space, evaluator.layers, 4)
    assert [t.params for t in study.trials[:4]] == queued  # enqueued, then run as trials 0-3
    for params in queued:  # every layer the same amount and bit width; the most compressed corner first
        assert len({v for k, v in params.items() if k.endswith(".amount")}) == 1
        assert len({v for k, v in params.items() if k.endswith(".bits")}) == 1
    assert queued[0] == {f"{n}.{g}": v for n in evaluator.layers for g, v in (("amount", 0.95), ("bits", 0))}
    assert bit_order(space.bits)[0] == 2
    # they ARE generation 0 (NSGA-II's parents of generation 1), not trials outside every generation
    assert [t.system_attrs[GENERATION_KEY] for t in study.trials] == [0] * 4 + [1] * 4


def test_bit_widths_are_ordinal_genes_unless_there_are_two(evaluator):
    study = run_search(evaluator, SearchSpace(amounts=None, bits=(FP32, 4, 2)),
                       SearchConfig(trials=3, population=2, objectives=("quality", "bytes"), warm_start=False))
    assert all(isinstance(v, int) and 0 <= v <= 2 for t in study.trials for v in t.params.values())
    described = trials_frame(study)["policy"].tolist()
    for t, text in zip(study.trials, described):  # index 0 → 2 bits, 1 → 4 bits, 2 → fp32
        assert text.split(" · ")[0] == "fc1 " + ("2b", "4b", "fp32")[t.params["fc1.bits"]]
    assert uniform_params(SearchSpace(amounts=None, bits=(DEPLOYED_INT8, FP32)), ["fc1"], 4) == [
        {"fc1.bits": DEPLOYED_INT8}, {"fc1.bits": FP32}]


def test_layers_inside_a_shared_module_share_one_gene():
    layers = ["enc.0.attention.q", "enc.0.attention.out.dense", "enc.0.ffn", "enc.1.attention.q"]
    assert gene_units(layers, ("attention",)) == [
        ("enc.0.attention", ["enc.0.attention.q", "enc.0.attention.out.dense"]), ("enc.0.ffn", ["enc.0.ffn"]),
        ("enc.1.attention", ["enc.1.attention.q"])]
    assert gene_units(layers) == [(n, [n]) for n in layers]


def test_deployed_int8_plugs_in_through_measure_deployed(sample):
    calls = []

    def deployed(recipe, int8_layers):  # stands in for an ONNX Runtime int8 deployment (issue 8)
        calls.append((recipe, int8_layers))
        return Measures(0.9, 0.99, 1000, 10, latency_ms=0.5)

    evaluator = Evaluator(sample.model, sample.data, measure_deployed=deployed)
    policy = {"fc1": LayerChoice(bits=DEPLOYED_INT8), "fc2": LayerChoice(bits=4), "fc3": LayerChoice(bits=FP32)}
    assert evaluator(policy).latency_ms == 0.5 and evaluator(policy).latency_ms == 0.5
    (recipe, layers), = calls  # measured once, then cached
    assert layers == ["fc1"] and recipe.steps[-1].layers == ("fc2",)  # fc1 left for the runtime to quantize
    config = SearchConfig(trials=3, population=2, objectives=("quality", "bytes", "latency_ms"))
    study = run_search(evaluator, SearchSpace(amounts=(0.0, 0.5), bits=(DEPLOYED_INT8,)), config)
    assert [t.values[2] for t in study.trials] == [0.5] * 3  # the deployed latency is the third objective


def test_greedy_seeds_put_the_greedy_policy_on_the_front():
    """Hand-made mixed precision: 3 blocks (attention with 2 layers sharing one gene, and an FFN layer); each unit's
    int8 drop is known and drops add up; latency counts 1 per int8 layer and 3 per fp32 one. AIMET's greedy, done by
    hand (from all int8, keep the most sensitive unit fp32 until the drop holds), is a seed of the first
    generation, and the seeded search's front holds a policy at least as good in both objectives."""

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
            self.ffn = torch.nn.Linear(4, 4)

    drop = {"0.attention": 0.0010, "0.ffn": 0.0040, "1.attention": 0.0002, "1.ffn": 0.0030,
            "2.attention": 0.0005, "2.ffn": 0.0001}
    unit_of = lambda layer: layer.rsplit(".", 1)[0] if "attention" in layer else layer  # noqa: E731
    probed = []

    def deployed(recipe, int8):
        probed.append(tuple(int8))
        units = {unit_of(name) for name in int8}
        latency = sum(1.0 if name in int8 else 3.0 for name in evaluator.layers)
        return Measures(1.0 - sum(drop[u] for u in units), 1.0, 1000, 10, "mean cosine", latency, 27.0)

    evaluator = Evaluator(torch.nn.Sequential(Block(), Block(), Block()), measure_deployed=deployed)
    max_drop = 0.005
    fp32: list[str] = []  # the greedy answer, by hand
    while sum(d for u, d in drop.items() if u not in fp32) > max_drop:
        fp32.append(max((u for u in drop if u not in fp32), key=drop.get))
    assert fp32 == ["0.ffn"]
    greedy = {f"{u}.bits": FP32 if u in fp32 else DEPLOYED_INT8 for u in drop}

    space = SearchSpace(amounts=None, bits=(DEPLOYED_INT8, FP32), share=("attention",))
    config = SearchConfig(trials=12, population=4, objectives=("quality", "latency_ms"), max_drop=max_drop, greedy_seeds=2)
    study = run_search(evaluator, space, config)
    assert study.trials[0].params == greedy  # the bisection's answer comes first
    assert probed[:6] == [tuple(n for n in evaluator.layers if unit_of(n) == u) for u in drop]  # one probe per unit
    assert 6 < study.user_attrs["greedy_seed_evaluations"] <= 6 + 3  # probes + a bisection of the 6-step ladder
    best = front(trials_frame(study), config.objectives)
    g = study.trials[0].values
    assert ((best["quality"] >= g[0]) & (best["latency_ms"] <= g[1])).any()
    with pytest.raises(ValueError, match="greedy_seeds=5"):
        SearchConfig(population=4, greedy_seeds=5)
