"""The Quantization page: opens from the app and as a deep link; every control shows what the core reports."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import compressor as cz
import compressor.pipeline
from compressor.quantization import quantization_levels
from ui.display import format_bytes
from ui.session import POINTS

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/2_Quantization.py"


def open_page(model: str = "digits-mlp") -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    at.session_state["model_name"] = model
    return at.run()


def compressed(model: str, step: cz.Quantize):
    sample = cz.load_sample(model)
    return sample, cz.compress(sample.model, step, sample.data)


def expected(model: str, step: cz.Quantize) -> cz.Report:
    sample, quantized = compressed(model, step)
    return cz.evaluate(quantized, sample.data, baseline=sample.model, latency=None)


def assert_shows(at: AppTest, report: cz.Report) -> None:
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["Accuracy"] == f"{report.accuracy:.1%}"
    assert values["Size (exported file)"] == format_bytes(report.compressed_bytes)
    assert values["Non-zero params"] == f"{report.nonzero_params:,}"
    assert values["MACs / example"] == f"{report.macs:,}"


def chart(at: AppTest, key: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(key))


def drawn_levels(at: AppTest) -> list[float]:
    lines = chart(at, "quant_hist_chart")["data"][1]
    return sorted({x for x in lines["x"] if x is not None})


def test_opens_from_the_app():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.title[0].value == "🔢 Quantization"
    assert_shows(at, expected("digits-mlp", cz.Quantize(bits=4)))


def test_deep_link_shows_the_default_configuration_sweep_and_levels():
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60).run()
    report = expected("digits-mlp", cz.Quantize(bits=4))
    assert_shows(at, report)
    sweep = {t["name"]: t for t in chart(at, "quant_sweep_chart")["data"]}
    assert sweep["accuracy"]["x"] == list(range(1, 9))
    assert (sweep["current"]["x"], sweep["current"]["y"]) == ([4], [report.accuracy])
    _, quantized = compressed("digits-mlp", cz.Quantize(bits=4))
    np.testing.assert_allclose(drawn_levels(at), quantization_levels(quantized.fc1).numpy(), rtol=1e-6)
    assert any("simulated quantization" in i.value for i in at.info)  # the report says latency will not move
    assert any("computes in fp32" in m.value for m in at.markdown)


def test_every_control_shows_what_the_core_reports():
    at = open_page()
    at.slider(key="quant_bits").set_value(3).run()
    assert_shows(at, expected("digits-mlp", cz.Quantize(bits=3)))
    at.radio(key="quant_scheme").set_value("symmetric").run()
    assert_shows(at, expected("digits-mlp", cz.Quantize(bits=3, scheme="symmetric")))
    at.radio(key="quant_granularity").set_value("channel").run()
    assert_shows(at, expected("digits-mlp", cz.Quantize(bits=3, scheme="symmetric", granularity="channel")))
    at.toggle(key="quant_activations").set_value(True).run()
    step = cz.Quantize(bits=3, scheme="symmetric", granularity="channel", activations=True)
    assert_shows(at, expected("digits-mlp", step))
    at.radio(key="quant_method").set_value("kmeans").run()
    assert_shows(at, expected("digits-mlp", cz.Quantize(bits=3, method="kmeans", activations=True)))
    assert at.radio(key="quant_scheme").disabled and at.radio(key="quant_granularity").disabled


def test_per_channel_grids_are_drawn_for_the_chosen_channel():
    at = open_page("digits-cnn")
    at.radio(key="quant_granularity").set_value("channel").run()
    at.selectbox(key="quant_layer").set_value("conv2").run()
    at.number_input(key="quant_channel").set_value(12).run()
    assert not at.exception
    _, quantized = compressed("digits-cnn", cz.Quantize(bits=4, granularity="channel"))
    np.testing.assert_allclose(drawn_levels(at), quantization_levels(quantized.conv2, channel=12).numpy(), rtol=1e-6)
    at.selectbox(key="quant_layer").set_value("fc3").run()  # 10 channels: channel 12 does not exist there
    assert not at.exception
    assert at.number_input(key="quant_channel").value == 0


def test_error_bars_show_every_layer_of_a_cnn():
    at = open_page("digits-cnn")
    at.radio(key="quant_method").set_value("kmeans").run()
    assert_shows(at, expected("digits-cnn", cz.Quantize(bits=4, method="kmeans")))
    bars = chart(at, "quant_error_chart")["data"][0]
    assert bars["x"] == ["conv1", "conv2", "fc1", "fc2", "fc3"]


def test_each_configuration_becomes_a_tradeoff_point():
    at = open_page()
    at.slider(key="quant_bits").set_value(6).run()
    recipe = cz.Recipe((cz.Quantize(bits=6),)).to_json(indent=None)
    point = at.session_state[POINTS][("digits-mlp", recipe)]
    assert point["page"] == "Quantization" and point["label"] == "quantize 6-bit affine, per tensor"


def test_a_failing_configuration_shows_an_error_not_a_traceback(monkeypatch):
    def refuse(model, step, data):
        raise ValueError("bits=2 is not supported by this runtime")

    monkeypatch.setitem(compressor.pipeline.APPLY, cz.Quantize, refuse)
    at = open_page()
    at.slider(key="quant_bits").set_value(2)
    at.toggle(key="quant_activations").set_value(True).run()
    assert not at.exception
    assert "bits=2 is not supported" in at.error[0].value


# ---------------------------------------------------------------- recovery: quantization-aware training

import ui.training  # noqa: E402

LR = ui.training.DEFAULT_LR


def expected_recipe(model: str, recipe: cz.Recipe) -> cz.Report:
    """The core's report of the full recipe (QAT included), computed here independently of the page."""
    sample = cz.load_sample(model)
    return cz.evaluate(cz.compress(sample.model, recipe, sample.data), sample.data, baseline=sample.model, latency=None,
                       recipe=recipe.to_dict())


def test_qat_shows_what_the_core_gives_for_the_same_recipe():
    at = open_page()
    at.slider(key="quant_bits").set_value(2)
    at.radio(key="quant_scheme").set_value("symmetric")
    at.radio(key="quant_granularity").set_value("channel")
    at.toggle(key="quant_finetune").set_value(True).run()
    step = cz.Quantize(bits=2, scheme="symmetric", granularity="channel")
    qat = expected_recipe("digits-mlp", cz.Recipe((step, cz.Finetune(epochs=5, lr=LR))))
    assert_shows(at, qat)
    ptq = expected("digits-mlp", step)
    assert qat.accuracy > ptq.accuracy + 0.1  # 2-bit weights: QAT wins a lot back
    table = next(d.value for d in at.dataframe if "vs post-training" in d.value.columns)
    assert table["accuracy"].tolist() == [f"{ptq.accuracy:.1%}", f"{qat.accuracy:.1%}"]
    assert any("straight-through" in m.value for m in at.markdown)
    sweep = {t["name"]: t for t in chart(at, "quant_sweep_chart")["data"]}
    assert (sweep["QAT"]["x"], sweep["QAT"]["y"]) == ([2], [qat.accuracy])
    assert {m.label: m.value for m in at.metric}["Accuracy"] == f"{qat.accuracy:.1%}"
    curves = {t["name"]: t for t in chart(at, "quant_ft_curves")["data"]}
    assert curves["QAT (test)"]["y"][-1] == pytest.approx(qat.accuracy)
    point = at.session_state[POINTS][("digits-mlp", cz.Recipe((step, cz.Finetune(epochs=5, lr=LR))).to_json(indent=None))]
    assert point["label"] == "quantize 2-bit symmetric, per channel, QAT (5 epochs, lr 0.003)"


def test_qat_of_k_means_on_a_cnn_and_the_qat_sweep():
    at = open_page("digits-cnn")
    at.radio(key="quant_method").set_value("kmeans")
    at.slider(key="quant_bits").set_value(2)
    at.toggle(key="quant_finetune").set_value(True).run()
    at.select_slider(key="quant_ft_epochs").set_value(2).run()
    step = cz.Quantize(bits=2, method="kmeans")
    assert_shows(at, expected_recipe("digits-cnn", cz.Recipe((step, cz.Finetune(epochs=2, lr=LR)))))
    at.toggle(key="quant_ft_sweep").set_value(True).run()
    assert not at.exception
    curve = next(t for t in chart(at, "quant_sweep_chart")["data"] if t["name"] == "QAT curve")
    assert curve["x"] == list(range(1, 9))
    three = expected_recipe("digits-cnn", cz.Recipe((cz.Quantize(bits=3, method="kmeans"), cz.Finetune(epochs=2, lr=LR))))
    assert curve["y"][2] == three.accuracy
