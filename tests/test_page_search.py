"""The Sensitivity and Search pages: what they show equals what the core computes for the same settings."""
from __future__ import annotations

from pathlib import Path

import optuna
from streamlit.testing.v1 import AppTest

import compressor as cz
from compressor.policy import DEPLOYED_INT8, FP32, Evaluator, Int8Deployment
from compressor.search import SearchConfig, SearchSpace, front, greedy_params, run_search, trials_frame
from compressor.sensitivity import SensitivityGrid, greedy_vs_uniform, sensitivity
from ui.pipeline_editor import STEPS

ROOT = Path(__file__).resolve().parents[1]


def open_page(path: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page(path).run()
    return at


def steps_of(at: AppTest) -> cz.Recipe:
    return cz.Recipe(tuple(entry["step"] for entry in at.session_state[STEPS]))


def test_sensitivity_page_shows_the_cores_greedy_and_uniform_recipes_and_applies_one():
    at = open_page("pages/8_Sensitivity.py")
    at.multiselect(key="sens_amounts").set_value([0.8, 0.95])
    at.multiselect(key="sens_bits").set_value([4, 2])
    at.multiselect(key="sens_ranks").set_value([]).run()
    assert not at.exception
    s = cz.load_sample("digits-mlp")
    evaluator = Evaluator(s.model, s.data)
    table = sensitivity(evaluator, SensitivityGrid((0.8, 0.95), (4, 2), ()))
    expected = greedy_vs_uniform(evaluator, table, 0.01)
    shown = at.dataframe[0].value
    assert shown["recipe"].tolist() == expected["recipe"].tolist()
    assert shown["accuracy"].tolist() == expected["quality"].map("{:.2%}".format).tolist()
    at.button(key="sens_apply").click().run()
    assert steps_of(at) == cz.Recipe.from_json(expected["recipe_json"].iloc[0])
    assert len(at.session_state["tradeoff_points"]) >= 2


def test_search_page_finds_the_cores_front_for_the_same_seed_and_applies_a_point():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    at = open_page("pages/9_Search.py")
    at.number_input(key="search_trials").set_value(12)
    at.number_input(key="search_population").set_value(4).run()
    at.button(key="search_run").click().run()
    assert not at.exception
    s = cz.load_sample("digits-mlp")
    config = SearchConfig(trials=12, population=4, seed=0, objectives=("quality", "bytes"), max_drop=0.02)
    core = front(trials_frame(run_search(Evaluator(s.model, s.data), SearchSpace(bits=(FP32, 8, 6, 5, 4, 3, 2)), config)),
                 config.objectives)
    shown = at.dataframe[0].value
    assert shown["number"].tolist() == core["number"].tolist()
    assert shown["policy"].tolist() == core["policy"].tolist()
    at.slider(key="search_generation").set_value(0).run()
    assert not at.exception
    at.button(key="search_apply").click().run()
    assert steps_of(at) == cz.Recipe.from_json(core["recipe"].iloc[0])
    points = at.session_state["tradeoff_points"]
    assert {("digits-mlp", r) for r in core["recipe"]} <= set(points)


def test_search_page_deploys_int8_with_a_latency_objective_and_greedy_seeds():
    """The deployed choices where the model deploys (digits-mlp: Linear layers only), in the CLI's words; the page's
    greedy seeds are the core's for the same settings; a mixed policy is not applied as a recipe."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    at = open_page("pages/9_Search.py")
    assert "int8-deployed" in at.multiselect(key="search_bits").options
    assert "latency_ms" in at.selectbox(key="search_cost").options
    assert at.toggle(key="search_share_digits-mlp").disabled  # no attention blocks to share a gene
    at.toggle(key="search_use_prune").set_value(False)
    at.multiselect(key="search_bits").set_value([DEPLOYED_INT8, FP32])
    at.selectbox(key="search_cost").set_value("latency_ms")
    at.number_input(key="search_greedy_seeds").set_value(2)
    at.number_input(key="search_trials").set_value(10)
    at.number_input(key="search_population").set_value(4).run()
    at.button(key="search_run").click().run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert {"latency_ms", "speedup"} <= set(shown.columns) and (shown["latency_ms"] > 0).all()
    study = at.session_state["search_study"][1]
    assert len(trials_frame(study)) == 10
    s = cz.load_sample("digits-mlp")
    core = Evaluator(s.model, s.data, measure_deployed=Int8Deployment(s.model, s.data))
    config = SearchConfig(trials=10, population=4, objectives=("quality", "bytes", "latency_ms"), max_drop=0.02,
                          greedy_seeds=2)
    seeds, measured = greedy_params(core, SearchSpace(amounts=None, bits=(DEPLOYED_INT8, FP32)), config)
    assert seeds and [t.params for t in study.trials[:len(seeds)]] == seeds  # the first generation starts with them
    assert any(f"measured {measured} policies" in c.value for c in at.caption)
    if DEPLOYED_INT8 in shown["policy"].iloc[0]:
        assert at.button(key="search_apply").disabled


def test_search_page_offers_no_int8_deployment_for_a_convolutional_model():
    at = open_page("pages/9_Search.py")
    at.sidebar.selectbox(key="_model_picker").set_value("digits-cnn").run()
    assert not at.exception
    assert "int8-deployed" not in at.multiselect(key="search_bits").options
    assert "latency_ms" not in at.selectbox(key="search_cost").options
