"""The Pipeline page: build a recipe step by step; every change shows what the core reports for that recipe."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import compressor as cz
from ui.display import format_bytes

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/4_Pipeline.py"
DEEP_COMPRESSION = cz.Recipe((cz.Prune(amount=0.9, scope="global"), cz.Quantize(bits=5, method="kmeans")))


@cache
def expected(name: str, recipe: cz.Recipe) -> cz.Report:
    """The core's report for the recipe (latency not timed: the page's timing is its own measurement)."""
    s = cz.load_sample(name)
    return cz.evaluate(cz.compress(s.model, recipe, s.data), s.data, baseline=s.model, latency=None,
                       recipe=recipe.canonical_dict())  # as the app keys and exports it


def assert_shows(at: AppTest, name: str, recipe: cz.Recipe) -> None:
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    report = expected(name, recipe)
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Accuracy"] == f"{report.accuracy:.1%}"
    assert metrics["Size (exported file)"] == format_bytes(report.compressed_bytes)
    assert metrics["Non-zero params"] == f"{report.nonzero_params:,}"
    assert metrics["MACs / example"] == f"{report.macs:,}"
    stages = at.dataframe[0].value
    assert list(stages["stage"]) == ["fp32", "packed"] + [f"{i} · {s.type}" for i, s in enumerate(recipe.steps, 1)]
    assert stages["size"].iloc[-1] == format_bytes(report.compressed_bytes)  # the last stage is the whole recipe


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    at.run()
    return at


def test_opens_from_the_app_with_the_deep_compression_preset():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(PAGE).run()
    assert at.title[0].value.endswith("Pipeline")
    assert_shows(at, "digits-mlp", DEEP_COMPRESSION)
    assert at.latex


def test_deep_link_opens_without_the_entry_page(page):
    assert_shows(page, "digits-mlp", DEEP_COMPRESSION)
    assert page.code[0].value == DEEP_COMPRESSION.to_json()  # the recipe to save


def test_the_amount_moves_in_stops_of_five_percent_and_keeps_a_loaded_value(page):
    amount = page.select_slider(key="pipeline_0_amount")
    assert list(amount.options) == [f"{5 * i}%" for i in range(20)] + ["99%"]  # 21 configurations, not 100
    page.text_area(key="pipeline_json").set_value('{"steps": [{"type": "prune", "amount": 0.94, "scope": "global"}]}')
    page.button(key="pipeline_load_json").click().run()
    loaded = next(s for s in page.select_slider if s.label == "Amount removed")
    assert loaded.value == 0.94 and "94%" in loaded.options  # between stops: shown and kept as loaded
    assert_shows(page, "digits-mlp", cz.Recipe((cz.Prune(amount=0.94, scope="global"),)))


def test_each_step_control_shows_the_core_report(page):
    page.select_slider(key="pipeline_0_amount").set_value(0.6).run()
    assert_shows(page, "digits-mlp", cz.Recipe((cz.Prune(amount=0.6, scope="global"), DEEP_COMPRESSION.steps[1])))
    page.radio(key="pipeline_0_scope").set_value("layer").run()
    page.selectbox(key="pipeline_0_criterion").set_value("random").run()
    prune = cz.Prune(amount=0.6, criterion="random")
    assert_shows(page, "digits-mlp", cz.Recipe((prune, DEEP_COMPRESSION.steps[1])))
    page.radio(key="pipeline_1_method").set_value("uniform").run()
    page.slider(key="pipeline_1_bits").set_value(3).run()
    page.selectbox(key="pipeline_1_scheme").set_value("symmetric").run()
    page.selectbox(key="pipeline_1_granularity").set_value("channel").run()
    assert_shows(page, "digits-mlp", cz.Recipe((prune, cz.Quantize(bits=3, scheme="symmetric", granularity="channel"))))


def test_add_move_and_remove_steps(page):
    page.selectbox(key="pipeline_add_kind").set_value("low_rank").run()
    page.button(key="pipeline_add").click().run()
    prune, quantize = DEEP_COMPRESSION.steps
    low_rank = cz.LowRank(rank_ratio=0.5)
    assert_shows(page, "digits-mlp", cz.Recipe((prune, quantize, low_rank)))
    page.button(key="pipeline_up_2").click().run()  # the low-rank step (id 2) moves above quantize
    assert_shows(page, "digits-mlp", cz.Recipe((prune, low_rank, quantize)))
    page.slider(key="pipeline_2_rank_ratio").set_value(0.25).run()  # its widgets moved with it
    low_rank = cz.LowRank(rank_ratio=0.25)
    assert_shows(page, "digits-mlp", cz.Recipe((prune, low_rank, quantize)))
    page.button(key="pipeline_down_0").click().run()
    assert_shows(page, "digits-mlp", cz.Recipe((low_rank, prune, quantize)))
    page.button(key="pipeline_remove_1").click().run()  # quantize goes
    assert_shows(page, "digits-mlp", cz.Recipe((low_rank, prune)))


def test_presets_load_and_follow_the_model_picker(page):
    page.selectbox(key="_model_picker").set_value("digits-cnn").run()
    assert_shows(page, "digits-cnn", DEEP_COMPRESSION)
    page.selectbox(key="pipeline_preset").set_value("Structured 50% → 8-bit").run()
    page.button(key="pipeline_load_preset").click().run()
    assert_shows(page, "digits-cnn", cz.Recipe((cz.Prune(amount=0.5, structured=True), cz.Quantize(bits=8))))
    page.selectbox(key="pipeline_preset").set_value("Empty: the uncompressed model").run()
    page.button(key="pipeline_load_preset").click().run()
    assert_shows(page, "digits-cnn", cz.Recipe())
    assert "No steps" in page.info[0].value


def test_a_pasted_recipe_replaces_the_steps(page):
    text = '{"steps": [{"type": "low_rank", "energy": 0.9, "layers": ["fc1"]}, {"type": "quantize", "bits": 4}]}'
    page.text_area(key="pipeline_json").input(text)
    page.button(key="pipeline_load_json").click().run()
    recipe = cz.Recipe.from_json(text)
    assert_shows(page, "digits-mlp", recipe)
    assert page.code[0].value == recipe.to_json()  # a loaded recipe saves back as it was written
    assert any("on fc1" in m.value for m in page.markdown)  # the step header names its layers


def test_an_uploaded_recipe_replaces_the_steps(page):
    recipe = cz.Recipe((cz.Prune(amount=0.8), cz.Quantize(bits=6, granularity="channel")))
    page.file_uploader(key="pipeline_upload").upload("recipe.json", recipe.to_json().encode(), "application/json")
    page.run()
    assert_shows(page, "digits-mlp", recipe)


@pytest.mark.parametrize("text, message", [
    ('{"steps": [', "not valid JSON"),
    ('{"steps": [{"type": "prune", "amout": 0.5}]}', "unknown key(s) amout"),
    ('{"steps": [{"type": "quantize", "bits": 9}]}', "bits=9"),
    ('{"steps": [{"type": "distill"}]}', "step type 'distill' is not allowed"),
    ('[]', 'one key, "steps"'),
])
def test_a_bad_recipe_shows_the_core_message_and_keeps_the_steps(page, text, message):
    page.text_area(key="pipeline_json").input(text)
    page.button(key="pipeline_load_json").click().run()
    assert not page.exception
    assert message in page.error[0].value
    assert_metrics_only(page, DEEP_COMPRESSION)


def test_a_binary_upload_is_an_error_not_a_traceback(page):
    page.file_uploader(key="pipeline_upload").upload("recipe.json", b"\x89\xff\x00", "application/json")
    page.run()
    assert not page.exception
    assert "not a UTF-8 text file" in page.error[0].value


def assert_metrics_only(at: AppTest, recipe: cz.Recipe) -> None:
    report = expected("digits-mlp", recipe)
    assert {m.label: m.value for m in at.metric}["Accuracy"] == f"{report.accuracy:.1%}"


def test_a_recipe_the_model_cannot_take_shows_an_error(page):
    page.selectbox(key="_model_picker").set_value("digits-cnn").run()
    page.text_area(key="pipeline_json").input('{"steps": [{"type": "low_rank", "rank": 20}]}')
    page.button(key="pipeline_load_json").click().run()
    assert not page.exception
    assert "rank=20 is out of range for layer 'conv1'" in page.error[0].value


def test_the_recipe_becomes_a_trade_off_point(page):
    point = page.session_state["tradeoff_points"][("digits-mlp", DEEP_COMPRESSION.to_json(indent=None))]
    assert point["page"] == "Pipeline"
    assert point["label"] == "prune 90% magnitude, global → quantize 5-bit k-means"


def test_every_step_type_of_the_core_has_an_editor_form():
    from compressor.recipe import STEP_TYPES
    from ui.pipeline_editor import STEP_KINDS

    assert set(STEP_TYPES) <= set(STEP_KINDS), f"no editor for {sorted(set(STEP_TYPES) - set(STEP_KINDS))}"


# ---------------------------------------------------------------- training steps: fine-tune and gradual pruning


def test_a_finetune_step_can_be_added_and_edited(page):
    page.selectbox(key="pipeline_add_kind").set_value("finetune").run()
    page.button(key="pipeline_add").click().run()
    prune, quantize = DEEP_COMPRESSION.steps
    assert_shows(page, "digits-mlp", cz.Recipe((prune, quantize, cz.Finetune(epochs=5, lr=3e-3))))
    page.slider(key="pipeline_2_epochs").set_value(2).run()
    page.select_slider(key="pipeline_2_lr").set_value(1e-3).run()
    page.selectbox(key="pipeline_2_batch_size").set_value(32).run()
    tuned = cz.Finetune(epochs=2, lr=1e-3, batch_size=32)
    assert_shows(page, "digits-mlp", cz.Recipe((prune, quantize, tuned)))
    assert any("fine-tune 2 epochs, lr 0.001, batch 32" in m.value for m in page.markdown)
    page.button(key="pipeline_up_2").click().run()  # fine-tune between pruning and k-means
    assert_shows(page, "digits-mlp", cz.Recipe((prune, tuned, quantize)))


def test_a_prune_step_can_be_made_gradual(page):
    page.radio(key="pipeline_0_schedule").set_value("agp").run()
    page.number_input(key="pipeline_0_agp_steps").set_value(3).run()
    page.number_input(key="pipeline_0_agp_epochs").set_value(2).run()
    gradual = cz.Prune(amount=0.9, scope="global", schedule="agp", steps=3, epochs_per_step=2, lr=3e-3)
    assert_shows(page, "digits-mlp", cz.Recipe((gradual, DEEP_COMPRESSION.steps[1])))
    page.toggle(key="pipeline_0_structured").set_value(True).run()  # AGP is unstructured only: back to one shot
    assert page.radio(key="pipeline_0_schedule").disabled
    structured = cz.Prune(amount=0.9, scope="global", structured=True)
    assert_shows(page, "digits-mlp", cz.Recipe((structured, DEEP_COMPRESSION.steps[1])))


def test_a_loaded_training_recipe_saves_back_as_written(page):
    text = '{"steps": [{"type": "prune", "amount": 0.8, "schedule": "agp", "steps": 2}, {"type": "finetune", "lr": 0.002}]}'
    page.text_area(key="pipeline_json").input(text)
    page.button(key="pipeline_load_json").click().run()
    assert_shows(page, "digits-mlp", cz.Recipe.from_json(text))
    assert page.code[0].value == cz.Recipe.from_json(text).to_json()
    lr = next(w for w in page.select_slider if w.key.endswith("_lr") and "agp" not in w.key)
    assert lr.value == 0.002  # a value outside the offered ones is kept


def test_the_deep_compression_with_fine_tuning_preset_is_30x_smaller_within_a_point(page):
    preset = next(p for p in page.selectbox(key="pipeline_preset").options if "with fine-tuning" in p)
    page.selectbox(key="pipeline_preset").set_value(preset).run()
    page.button(key="pipeline_load_preset").click().run()
    recipe = cz.Recipe((
        cz.Prune(amount=0.94, scope="global", schedule="agp", steps=8, epochs_per_step=3, lr=3e-3, seed=0),
        cz.Finetune(epochs=10, lr=3e-3, seed=0), cz.Quantize(bits=4, method="kmeans"), cz.Finetune(epochs=5, lr=1e-3, seed=0),
    ))  # benchmarks/bench_recovery.py's deep_compression_recipe(0.94, 4, seed=0)
    assert_shows(page, "digits-mlp", recipe)
    report = expected("digits-mlp", recipe)
    assert report.baseline_dense_bytes / report.compressed_bytes >= 30
    assert report.accuracy_drop <= 0.01


def load(at: AppTest, text: str) -> AppTest:
    at.text_area(key="pipeline_json").input(text)
    return at.button(key="pipeline_load_json").click().run()


def test_after_a_run_time_error_the_page_still_loads_a_corrected_recipe(page):
    page.selectbox(key="_model_picker").set_value("digits-cnn").run()
    load(page, '{"steps": [{"type": "low_rank", "rank": 20}]}')
    assert "rank=20 is out of range" in page.error[0].value
    assert "pipeline_load_json" in [b.key for b in page.button]  # the controls that fix it are still there
    load(page, '{"steps": [{"type": "low_rank", "rank": 2}]}')
    assert not page.exception and not page.error
    assert_shows(page, "digits-cnn", cz.Recipe((cz.LowRank(rank=2),)))


def test_any_valid_loaded_value_is_shown_by_its_control_and_kept(page):
    """The controls span each setting's whole documented range, so a loaded AGP steps 60 or rank 5000 shows as it is."""
    text = ('{"steps": [{"type": "prune", "amount": 0.5, "schedule": "agp", "steps": 60, "epochs_per_step": 1}, '
            '{"type": "low_rank", "rank": 5000}]}')
    recipe = cz.Recipe.from_json(text)
    load(page, text)
    assert not page.exception
    shown = {w.key: w.value for w in page.number_input if w.key}
    assert [v for k, v in shown.items() if k.endswith("_agp_steps")] == [60]
    assert [v for k, v in shown.items() if k.endswith("_rank")] == [5000]
    assert page.code[0].value == recipe.to_json()  # kept as loaded


def test_a_long_recipe_is_listed_not_drawn_as_forms_and_a_too_long_one_is_refused(page):
    steps = [{"type": "quantize", "bits": 8}] * 64  # the most a recipe may hold; past the 30 drawn as forms
    load(page, json.dumps({"steps": steps}))
    assert not page.exception and not page.error
    assert "64 steps, too many to edit" in page.warning[0].value
    assert not [k for k in (w.key for w in page.slider) if k and k.startswith("pipeline_")]  # no forms
    assert {m.label: m.value for m in page.metric}["Accuracy"]
    load(page, json.dumps({"steps": [{"type": "quantize", "bits": 8}] * 400}))
    assert not page.exception
    assert any("64" in e.value and "steps" in e.value for e in page.error)  # one clear line, the page still works


def test_a_megabyte_of_pasted_text_is_not_echoed_back_in_full(page):
    for size in (900_000, 1_000_000):  # a huge value inside the size limit, and a text past it
        load(page, '{"steps": [{"type": "' + "x" * size + '"}]}')
        assert not page.exception
        message = page.error[0].value
        assert len(message) < 1_000 and "xxxxxxxxxx" * 20 not in message
