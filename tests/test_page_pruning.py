"""The Pruning page: opens from the app and as a deep link; every control shows what the core reports."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import compressor as cz
from compressor.sweeps import sweep
import ui.layers
from ui.display import format_bytes
from ui.session import POINTS

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/1_Pruning.py"


def open_page(model: str = "digits-mlp") -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    at.session_state["model_name"] = model
    return at.run()


def expected(model: str, step: cz.Prune) -> cz.Report:
    sample = cz.load_sample(model)
    pruned = cz.compress(sample.model, step, sample.data)
    return cz.evaluate(pruned, sample.data, baseline=sample.model, latency=None)


def shown(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def assert_shows(at: AppTest, report: cz.Report) -> None:
    assert not at.exception
    values = shown(at)
    assert values["Accuracy"] == f"{report.accuracy:.1%}"
    assert values["Size (exported file)"] == format_bytes(report.compressed_bytes)
    assert values["Non-zero params"] == f"{report.nonzero_params:,}"
    assert values["MACs / example"] == f"{report.macs:,}"


def chart(at: AppTest, key: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(key))


def test_opens_from_the_app_with_the_model_picked_there():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.sidebar.selectbox(key="_model_picker").set_value("digits-cnn").run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.title[0].value == "✂️ Pruning"
    assert at.sidebar.selectbox(key="_model_picker").value == "digits-cnn"
    assert_shows(at, expected("digits-cnn", cz.Prune(amount=0.5)))


def test_deep_link_shows_the_default_configuration_and_its_sweep():
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60).run()  # a fresh session: the model picker's default
    report = expected("digits-mlp", cz.Prune(amount=0.5))
    assert_shows(at, report)
    curves = {t["name"]: t for t in chart(at, "prune_sweep_chart")["data"]}
    assert {"magnitude", "taylor", "random", "current"} <= set(curves)
    assert (curves["current"]["x"], curves["current"]["y"]) == ([0.5], [report.accuracy])
    sample = cz.load_sample("digits-mlp")
    amounts = curves["magnitude"]["x"]
    reference = sweep(sample.model, sample.data, {a: cz.Prune(amount=a) for a in amounts})
    assert 0.5 in amounts and curves["magnitude"]["y"] == reference["accuracy"].tolist()
    assert any("no speedup" in m.value for m in at.markdown)
    assert any("dense kernels" in i.value for i in at.info)  # the report's note that zeros do not speed it up


def test_every_control_shows_what_the_core_reports():
    at = open_page()
    at.select_slider(key="prune_amount").set_value(0.8).run()
    assert_shows(at, expected("digits-mlp", cz.Prune(amount=0.8)))
    at.radio(key="prune_criterion").set_value("taylor").run()
    assert_shows(at, expected("digits-mlp", cz.Prune(amount=0.8, criterion="taylor")))
    at.radio(key="prune_scope").set_value("global").run()
    assert_shows(at, expected("digits-mlp", cz.Prune(amount=0.8, criterion="taylor", scope="global")))
    at.toggle(key="prune_structured").set_value(True).run()
    step = cz.Prune(amount=0.8, criterion="taylor", scope="global", structured=True)
    assert_shows(at, expected("digits-mlp", step))
    at.radio(key="prune_norm").set_value(1).run()
    assert_shows(at, expected("digits-mlp", cz.Prune(amount=0.8, criterion="taylor", scope="global", structured=True, norm=1)))


def test_structured_pruning_of_a_cnn_shows_removed_channels_and_fewer_macs():
    at = open_page("digits-cnn")
    at.toggle(key="prune_structured").set_value(True).run()
    at.selectbox(key="prune_layer").set_value("conv2").run()
    report = expected("digits-cnn", cz.Prune(amount=0.5, structured=True))
    assert_shows(at, report)
    assert report.macs < report.baseline_macs
    assert any("really got smaller" in i.value for i in at.info)
    mask = chart(at, "prune_mask_chart")
    assert mask["data"][0]["colorbar"]["ticktext"] == ["kept", "removed output channel", "removed input (upstream channel)"]


def test_each_configuration_becomes_a_tradeoff_point():
    at = open_page()
    at.select_slider(key="prune_amount").set_value(0.3).run()
    points = at.session_state[POINTS]
    recipe = cz.Recipe((cz.Prune(amount=0.3),)).to_json(indent=None)
    assert points[("digits-mlp", recipe)]["page"] == "Pruning"
    assert points[("digits-mlp", recipe)]["accuracy"] == expected("digits-mlp", cz.Prune(amount=0.3)).accuracy


def test_structured_pruning_where_no_channel_can_go_shows_an_error(monkeypatch):
    monkeypatch.setattr(ui.layers, "channel_prunable_layers", lambda model, example_input: [])
    ui.layers.channel_prunable.clear()
    try:
        at = open_page()
        at.toggle(key="prune_structured").set_value(True).run()
        assert not at.exception
        assert "no layer whose output channels can be removed" in at.error[0].value
    finally:
        ui.layers.channel_prunable.clear()


@pytest.mark.parametrize("model", ["digits-mlp", "digits-cnn"])
def test_every_layer_can_be_inspected(model):
    at = open_page(model)
    for layer in at.selectbox(key="prune_layer").options:
        at.selectbox(key="prune_layer").set_value(layer).run()
        assert not at.exception
        assert chart(at, "prune_hist_chart")["layout"]["title"]["text"].startswith(f"Weights of {layer}")
