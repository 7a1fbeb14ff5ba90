"""The Distillation page: opens from the app and as a deep link; the students it shows are the core's, for the
same settings; they join the Trade-offs points; Stop keeps the partial students (the app's one live-training path,
ui/training.py); bad settings show an error."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import compressor as cz
from compressor.distillation import parameter_count
import ui.training
from tests.conftest import interrupt_after_two_epochs
from ui import distillation_cache as students
from ui.display import format_bytes
from ui.session import POINTS

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/7_Distillation.py"


@cache
def core_students(model: str, settings: students.Settings) -> tuple[cz.Report, list, cz.Report, list]:
    """What the core gives for these settings: (KD report, KD history, scratch report, scratch history)."""
    sample = cz.load_sample(model)
    student = cz.make_student(sample.model, settings.width, seed=settings.seed)
    common = dict(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size, seed=settings.seed,
                  test=sample.data.test)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the page trains (ui.session.model_picker): sums are then reduced in the same order
    try:
        kd, kd_history = cz.distill(sample.model, student, sample.data.train, temperature=settings.temperature,
                                    alpha=settings.alpha, **common)
        scratch, scratch_history = cz.train_scratch(student, sample.data.train, **common)
    finally:
        torch.set_num_threads(threads)
    report = lambda m: cz.evaluate(m, sample.data, baseline=sample.model, latency=None)  # noqa: E731
    return report(kd), kd_history, report(scratch), scratch_history


def open_page(model: str = "digits-mlp") -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    at.session_state["model_name"] = model
    return at.run()


def metrics(at: AppTest, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]


def chart(at: AppTest, key: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(key))


def assert_shows_core_students(at: AppTest, model: str, settings: students.Settings) -> None:
    assert not at.exception
    if not metrics(at, "Accuracy") and "distill_train" in [b.key for b in at.button]:
        at.button(key="distill_train").click().run()  # earlier runs on this (loaded) machine took > AUTO_TRAIN_S
    kd, kd_history, scratch, scratch_history = core_students(model, settings)
    assert metrics(at, "Accuracy") == [f"{kd.accuracy:.1%}", f"{scratch.accuracy:.1%}"]
    assert metrics(at, "Size (exported file)") == [format_bytes(kd.compressed_bytes), format_bytes(scratch.compressed_bytes)]
    assert metrics(at, "Non-zero params") == [f"{kd.nonzero_params:,}"] * 2
    curves = {t["name"]: t["y"] for t in chart(at, "distill_ft_curves")["data"]}
    assert curves["KD student"] == [r["test_accuracy"] for r in kd_history]
    assert curves["scratch student"] == [r["test_accuracy"] for r in scratch_history]


def student_params(model: str, width: float) -> str:
    return f"{parameter_count(cz.make_student(cz.load_sample(model).model, width)):,}"


def test_opens_from_the_apps_tour_with_the_model_picked_there():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert "Distillation" in [link.proto.page for link in at.get("page_link")]  # on the tour
    at.sidebar.selectbox(key="_model_picker").set_value("digits-cnn").run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.title[0].value == "🎓 Distillation"
    assert metrics(at, "Student parameters") == [student_params("digits-cnn", 0.5)]  # about a quarter of 19,754
    assert_shows_core_students(at, "digits-cnn", students.Settings(width=0.5))


def test_deep_link_trains_the_default_students_and_records_both_as_points():
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60).run()  # a fresh session: digits-mlp
    settings = students.Settings()
    assert metrics(at, "Student parameters") == ["13,050"] == [student_params("digits-mlp", 0.4)]
    assert_shows_core_students(at, "digits-mlp", settings)
    assert at.latex and "T^2" in at.latex[0].value
    soft = {t["name"]: t for t in chart(at, "distill_soft_chart")["data"]}
    assert {"T = 1", "T = 4"} <= set(soft)
    kd, _, scratch, _ = core_students("digits-mlp", settings)
    recorded = {row["label"]: row for row in at.session_state[POINTS].values()}
    kd_point = recorded["KD student w=0.4 (T=4, α=0.9, 20 epochs)"]
    scratch_point = recorded["scratch student w=0.4 (20 epochs)"]
    assert (kd_point["page"], kd_point["model"], kd_point["accuracy"]) == ("Distillation", "digits-mlp", kd.accuracy)
    assert scratch_point["accuracy"] == scratch.accuracy
    assert kd_point["compressed_bytes"] == kd.compressed_bytes
    assert json.loads(kd_point["recipe"])["student"] == "digits-mlp@width=0.4"


def test_moving_the_width_shows_the_students_parameter_count():
    at = open_page()
    for width in (0.2, 1.0):
        at.select_slider(key="distill_width_digits-mlp").set_value(width).run()
        assert metrics(at, "Student parameters") == [student_params("digits-mlp", width)]
    assert_shows_core_students(at, "digits-mlp", students.Settings(width=1.0))


def test_temperature_alpha_and_epochs_give_the_cores_students():
    at = open_page()
    at.select_slider(key="distill_T").set_value(2.0)
    at.select_slider(key="distill_alpha").set_value(0.5)
    at.slider(key="distill_epochs").set_value(5).run()
    settings = students.Settings(temperature=2.0, alpha=0.5, epochs=5)
    assert_shows_core_students(at, "digits-mlp", settings)
    assert {"T = 1", "T = 2"} <= {t["name"] for t in chart(at, "distill_soft_chart")["data"]}


def test_a_zero_learning_rate_shows_the_cores_error():
    at = open_page()
    points_before = len(at.session_state[POINTS])
    at.number_input(key="distill_lr").set_value(0.0).run()
    assert not at.exception
    assert at.error and "lr=0" in at.error[0].value
    assert "distill_stop" not in [b.key for b in at.button] and not at.get("progress")  # the live view is cleared
    assert len(at.session_state[POINTS]) == points_before


@pytest.fixture
def kd_interrupted_after_two_epochs(monkeypatch):
    """The run store is kept: the page's auto-train estimate comes from the runs finished before."""
    return interrupt_after_two_epochs(monkeypatch)


def test_stop_keeps_the_partial_kd_student_and_waits_for_train_again(kd_interrupted_after_two_epochs):
    settings = students.Settings(epochs=6, seed=11)
    at = open_page()
    at.number_input(key="distill_seed").set_value(11)
    at.slider(key="distill_epochs").set_value(6).run()  # this run is cut short after epoch 2 of the KD student
    assert kd_interrupted_after_two_epochs and not at.exception
    at.session_state["distill_ft_stop_clicked"] = True  # what the Stop button's on_click does
    at.run()  # the next run finds the interrupted run's handover: the KD student trained for two epochs
    assert not at.exception
    assert any("KD student" in w.value and "stopped after 2 of 6 epochs" in w.value for w in at.warning)
    assert "scratch student" in " ".join(c.value for c in at.caption)  # not trained after the stop
    stopped = at.session_state["distill_ft_stopped"]
    sample = cz.load_sample("digits-mlp")
    partial = cz.evaluate(stopped.model, sample.data, baseline=sample.model, latency=None)
    assert metrics(at, "Accuracy") == [f"{partial.accuracy:.1%}"]  # the partial student's numbers are shown
    assert [r["epoch"] for r in stopped.history] == [1.0, 2.0]
    curves = {t["name"]: t["y"] for t in chart(at, "distill_ft_curves")["data"]}
    assert curves["KD student"] == [r["test_accuracy"] for r in stopped.history]
    assert ui.training.finished_runs().get("digits-mlp", students.point_json("digits-mlp", settings, "distill")) is None
    assert all(row["page"] != "Distillation" or "seed\": 11" not in row["recipe"]
               for row in at.session_state[POINTS].values())  # a partial student is not a point


def test_a_long_training_waits_for_the_button(monkeypatch):
    at = open_page()
    monkeypatch.setitem(students.speeds(), ("digits-mlp", 0.4), 5.0)  # as if this server were slow
    at.number_input(key="distill_seed").set_value(3).run()
    assert not at.exception
    assert "about 100.0 s" in at.button(key="distill_train").label
    assert metrics(at, "Accuracy") == [] and at.info
    at.slider(key="distill_epochs").set_value(2).run()
    at.button(key="distill_train").click().run()
    assert_shows_core_students(at, "digits-mlp", students.Settings(epochs=2, seed=3))


@pytest.mark.parametrize("model", ["digits-mlp", "digits-cnn"])
def test_cached_students_render_without_retraining(model):
    at = open_page(model)  # trained in an earlier test (or now)
    settings = students.Settings(width=0.4 if model == "digits-mlp" else 0.5)
    before = ui.training.stored(students.jobs(model, settings))
    assert set(before) == {students.KD, students.SCRATCH}
    at.run()
    after = ui.training.stored(students.jobs(model, settings))
    assert not at.exception and all(after[label] is before[label] for label in before)
