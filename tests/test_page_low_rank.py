"""The Low-rank page: opens from the app and as a deep link; every control shows what the core reports."""
from __future__ import annotations

import base64
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import compressor as cz
from ui.display import format_bytes

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/3_Low-rank.py"


@cache
def expected(name: str, recipe: cz.Recipe) -> cz.Report:
    """The core's report for the recipe (latency not timed: the page's timing is its own measurement)."""
    s = cz.load_sample(name)
    return cz.evaluate(cz.compress(s.model, recipe, s.data), s.data, baseline=s.model, latency=None,
                       recipe=recipe.to_dict())


def shown(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def assert_shows(at: AppTest, name: str, recipe: cz.Recipe) -> None:
    assert not at.exception
    report = expected(name, recipe)
    metrics = shown(at)
    assert metrics["Accuracy"] == f"{report.accuracy:.1%}"
    assert metrics["Size (exported file)"] == format_bytes(report.compressed_bytes)
    assert metrics["Non-zero params"] == f"{report.nonzero_params:,}"
    assert metrics["MACs / example"] == f"{report.macs:,}"


def low_rank(**setting) -> cz.Recipe:
    return cz.Recipe((cz.LowRank(**setting),))


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    at.run()
    return at


def test_opens_from_the_app_with_the_default_setting():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(PAGE).run()
    assert at.title[0].value.endswith("Low-rank factorization")
    assert_shows(at, "digits-mlp", low_rank(rank_ratio=0.5))
    assert at.latex, "the page teaches the formula"


def test_deep_link_opens_without_the_entry_page(page):
    assert_shows(page, "digits-mlp", low_rank(rank_ratio=0.5))


@pytest.mark.parametrize("ratio", [0.2, 0.75])
def test_rank_ratio_slider_shows_the_core_report(page, ratio):
    page.slider(key="lowrank_ratio").set_value(ratio).run()
    assert_shows(page, "digits-mlp", low_rank(rank_ratio=ratio))


def test_energy_rule_and_slider_show_the_core_report(page):
    page.radio(key="lowrank_rule").set_value("energy").run()
    assert_shows(page, "digits-mlp", low_rank(energy=0.9))
    page.slider(key="lowrank_energy").set_value(0.97).run()
    assert_shows(page, "digits-mlp", low_rank(energy=0.97))


def test_layer_choice_on_the_cnn_factorizes_only_those_layers(page):
    page.selectbox(key="_model_picker").set_value("digits-cnn").run()
    layers = page.multiselect(key="lowrank_layers_digits-cnn")
    assert layers.options == ["conv1 (6×9)", "conv2 (16×54)", "fc1 (120×64)", "fc2 (84×120)", "fc3 (10×84)"]  # m×n
    assert_shows(page, "digits-cnn", low_rank(rank_ratio=0.5))
    layers.set_value(["conv2", "fc1"]).run()
    assert_shows(page, "digits-cnn", low_rank(rank_ratio=0.5, layers=("conv2", "fc1")))
    plan = page.dataframe[0].value
    assert list(plan["layer"]) == ["conv2", "fc1"]
    assert list(plan["params before"]) == [16 * 6 * 9 + 16, 120 * 64 + 120]
    assert list(plan["params after"]) == [(16 + 54) * 8 + 16, (120 + 64) * 32 + 120]  # r = round(0.5·min(m, n))


def test_no_layer_chosen_asks_for_one(page):
    page.multiselect(key="lowrank_layers_digits-mlp").set_value([]).run()
    assert not page.exception
    assert "at least one layer" in page.warning[0].value
    assert not page.metric


def test_says_when_a_factorization_stores_more_than_the_dense_layer(page):
    assert not page.warning  # rank ratio 0.5 saves in every MLP layer: (m + n)·r < m·n
    page.slider(key="lowrank_ratio").set_value(1.0).run()
    # full rank: fc1 (300+64)·64 = 23,296 ≥ 19,200; fc2 (100+300)·100 ≥ 30,000; fc3 (10+100)·10 ≥ 1,000
    warnings = [w.value for w in page.warning]
    assert len(warnings) == 3
    assert "fc1" in warnings[0] and "23,596" in warnings[0] and "19,500" in warnings[0]  # with the 300 biases
    assert_shows(page, "digits-mlp", low_rank(rank_ratio=1.0))


def values(array) -> list:
    """A trace's x or y from a chart spec: a plain list, or plotly's base64 typed array."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return array


def chart(at: AppTest, key: str) -> dict:
    charts = [element for element in at.get("plotly_chart") if element.proto.id.endswith(key)]
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def test_figures_mark_the_current_setting(page):
    page.slider(key="lowrank_ratio").set_value(0.3).run()
    report = expected("digits-mlp", low_rank(rank_ratio=0.3))
    sweep = {trace["name"]: trace for trace in chart(page, "lowrank_sweep")["data"]}
    assert set(sweep) >= {"rank ratio", "energy", "uncompressed", "this setting (rank ratio 0.3)"}
    assert values(sweep["this setting (rank ratio 0.3)"]["x"]) == [report.params]
    assert values(sweep["this setting (rank ratio 0.3)"]["y"]) == [pytest.approx(report.accuracy)]
    assert len(values(sweep["rank ratio"]["x"])) == 9 and len(values(sweep["energy"]["x"])) == 8
    assert report.params in values(sweep["rank ratio"]["x"])  # 0.3 is on the sweep grid
    cuts = [t for t in chart(page, "lowrank_spectra")["data"] if t["name"].endswith(": cut")]
    assert [values(t["x"]) for t in cuts] == [[19], [30], [3]]  # round(0.3 · 64), round(0.3 · 100), round(0.3 · 10)


def test_the_setting_becomes_a_trade_off_point(page):
    recipe_json = cz.Recipe((cz.LowRank(rank_ratio=0.5),)).to_json(indent=None)
    assert ("digits-mlp", recipe_json) in page.session_state["tradeoff_points"]
