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

    at.sidebar.select_slider(key="prune_amount").set_value(0.7).run()  # the star moves along the same curves
    moved = {t["name"]: t for t in chart(at, "prune_sweep_chart")["data"]}
    assert (moved["current"]["x"], moved["current"]["y"]) == ([0.7], [expected("digits-mlp", cz.Prune(amount=0.7)).accuracy])
    assert all(moved[c] == curves[c] for c in curves if c != "current")
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


# ---------------------------------------------------------------- recovery: fine-tuning, AGP, stopping


import ui.training  # noqa: E402

LR = ui.training.DEFAULT_LR


def expected_recipe(model: str, recipe: cz.Recipe) -> cz.Report:
    """The core's report of the full recipe (fine-tuning included), computed here independently of the page."""
    sample = cz.load_sample(model)
    return cz.evaluate(cz.compress(sample.model, recipe, sample.data), sample.data, baseline=sample.model, latency=None,
                       recipe=recipe.to_dict())


def agp(amount: float, epochs: int = 5, lr: float = LR) -> cz.Prune:
    """What the page's "gradual (AGP)" option means: one pruning step per epoch, the fine-tune's epochs in all."""
    return cz.Prune(amount=amount, schedule="agp", steps=epochs, epochs_per_step=1, lr=lr, batch_size=64, seed=0)


def comparison(at: AppTest) -> dict[str, dict]:
    table = next(d.value for d in at.dataframe if "vs one-shot" in d.value.columns)
    return {row["model"]: row for row in table.to_dict("records")}


def test_fine_tuning_shows_what_the_core_gives_for_the_same_recipe():
    at = open_page()
    at.toggle(key="prune_finetune").set_value(True).run()
    tuned = expected_recipe("digits-mlp", cz.Recipe((cz.Prune(amount=0.5), cz.Finetune(epochs=5, lr=LR))))
    assert_shows(at, tuned)
    rows = comparison(at)
    one_shot = expected("digits-mlp", cz.Prune(amount=0.5))
    assert rows["one-shot"]["accuracy"] == f"{one_shot.accuracy:.1%}"
    assert rows["fine-tuned"]["vs one-shot"] == f"{100 * (tuned.accuracy - one_shot.accuracy):+.1f} pts"
    at.select_slider(key="prune_amount").set_value(0.9)
    at.select_slider(key="prune_ft_epochs").set_value(3)
    at.select_slider(key="prune_ft_lr").set_value(1e-3).run()
    recipe = cz.Recipe((cz.Prune(amount=0.9), cz.Finetune(epochs=3, lr=1e-3)))
    tuned = expected_recipe("digits-mlp", recipe)
    assert_shows(at, tuned)
    assert tuned.accuracy > expected("digits-mlp", cz.Prune(amount=0.9)).accuracy + 0.1  # recovery is visible
    point = at.session_state[POINTS][("digits-mlp", recipe.to_json(indent=None))]
    assert point["page"] == "Pruning" and point["accuracy"] == tuned.accuracy and "fine-tuned" in point["label"]
    curves = {t["name"]: t for t in chart(at, "prune_ft_curves")["data"]}
    assert curves["fine-tuned (test)"]["x"] == [1.0, 2.0, 3.0]
    assert curves["fine-tuned (test)"]["y"][-1] == pytest.approx(tuned.accuracy)
    sweep = {t["name"]: t for t in chart(at, "prune_sweep_chart")["data"]}
    assert (sweep["fine-tuned"]["x"], sweep["fine-tuned"]["y"]) == ([0.9], [tuned.accuracy])
    at.toggle(key="prune_finetune").set_value(False).run()
    assert_shows(at, expected("digits-mlp", cz.Prune(amount=0.9)))
    assert not any("vs one-shot" in d.value.columns for d in at.dataframe)


def test_gradual_agp_is_offered_for_unstructured_pruning_and_compared_with_both():
    at = open_page()
    at.select_slider(key="prune_amount").set_value(0.9)
    at.toggle(key="prune_finetune").set_value(True).run()
    at.radio(key="prune_ft_schedule").set_value("gradual").run()
    gradual = expected_recipe("digits-mlp", cz.Recipe((agp(0.9),)))
    assert_shows(at, gradual)
    rows = comparison(at)
    assert list(rows) == ["one-shot", "fine-tuned", "gradual (AGP)"]
    assert rows["gradual (AGP)"]["accuracy"] == f"{gradual.accuracy:.1%}"
    tuned = expected_recipe("digits-mlp", cz.Recipe((cz.Prune(amount=0.9), cz.Finetune(epochs=5, lr=LR))))
    assert rows["fine-tuned"]["accuracy"] == f"{tuned.accuracy:.1%}"
    sparsity = next(t for t in chart(at, "prune_ft_curves")["data"] if t["name"] == "gradual (AGP) (test)")["text"]
    assert sparsity[0] != sparsity[-1] == "sparsity 90%"  # the schedule raises it step by step
    at.toggle(key="prune_structured").set_value(True).run()  # AGP is unstructured only: the option is disabled
    assert not at.exception and at.radio(key="prune_ft_schedule").disabled
    assert_shows(at, expected_recipe("digits-mlp", cz.Recipe((cz.Prune(amount=0.9, structured=True),
                                                              cz.Finetune(epochs=5, lr=LR)))))


def test_a_fine_tuned_sweep_is_asked_for_separately():
    at = open_page()
    at.toggle(key="prune_finetune").set_value(True).run()
    at.select_slider(key="prune_ft_epochs").set_value(2).run()
    assert "magnitude, fine-tuned" not in {t["name"] for t in chart(at, "prune_sweep_chart")["data"]}
    at.toggle(key="prune_ft_sweep").set_value(True).run()
    assert not at.exception
    curve = next(t for t in chart(at, "prune_sweep_chart")["data"] if t["name"] == "magnitude, fine-tuned")
    assert curve["x"] == [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    tuned = expected_recipe("digits-mlp", cz.Recipe((cz.Prune(amount=0.8), cz.Finetune(epochs=2, lr=LR))))
    assert curve["y"][6] == tuned.accuracy


def stop_clicked(at: AppTest) -> None:
    at.session_state["prune_ft_stop_clicked"] = True  # what the Stop button's on_click does


def test_stop_keeps_the_model_trained_so_far(interrupted_after_two_epochs):
    at = open_page()
    at.toggle(key="prune_finetune").set_value(True).run()  # this run is cut short after epoch 2
    assert interrupted_after_two_epochs and not at.exception
    stop_clicked(at)
    at.run()
    assert not at.exception and not at.error
    assert "stopped after 2 of 5 epochs" in at.warning[0].value
    partial = cz.Recipe((cz.Prune(amount=0.5), cz.Finetune(epochs=2, lr=LR)))  # the same batches, in the same order
    assert_shows(at, expected_recipe("digits-mlp", partial))
    assert comparison(at)["fine-tuned (stopped)"]["training"].startswith("2 of 5 epochs")
    full = cz.Recipe((cz.Prune(amount=0.5), cz.Finetune(epochs=5, lr=LR))).to_json(indent=None)
    assert ("digits-mlp", full) not in at.session_state[POINTS]  # a partial model is not a configuration
    at.run()  # any later rerun still shows the stopped result
    assert "stopped after 2" in at.warning[0].value
    at.button(key="prune_ft_again").click().run()
    assert not at.warning
    assert_shows(at, expected_recipe("digits-mlp", cz.Recipe.from_json(full)))
    assert ("digits-mlp", full) in at.session_state[POINTS]


def test_an_interrupt_by_another_widget_just_reruns_with_its_setting(interrupted_after_two_epochs):
    at = open_page()
    at.toggle(key="prune_finetune").set_value(True).run()
    assert interrupted_after_two_epochs
    at.select_slider(key="prune_amount").set_value(0.8).run()  # no Stop click: the partial run is dropped
    assert not at.exception and not at.warning
    assert_shows(at, expected_recipe("digits-mlp", cz.Recipe((cz.Prune(amount=0.8), cz.Finetune(epochs=5, lr=LR)))))
